//! Deciding at publication: a publish decides its indicators for every identity the
//! dispatcher serves at that moment and stores those decisions in the publish's own
//! transaction, so that the dispatcher can hand the events out as soon as they are committed
//! (no decision-log write of its own between the commit and the send).
//!
//! The decisions are the ones the dispatcher would make a moment later (the same policy, the
//! same indicator), logged before the commit that makes the event visible: a release is still
//! sent only after its decision is durable. An identity that starts listening between the
//! decision and the commit is decided for by the dispatcher, as before; one that stops
//! listening has a logged decision that was never acted on, as a stream that ends mid-page.

use std::sync::Arc;

use cordon_proto::v1::{Event, Indicator, Published, event};

use super::GatewayState;
use super::dispatch::{Delivered, Predecided};
use crate::clock::timestamp_from_micros;
use crate::identity::Identity;
use crate::release::{DecisionRecord, Prepared, Releaser, channel_for};

/// Above this many decisions (indicators × identities) a publish decides off the async
/// workers; below it, inline (a blocking task's hand-off costs more than a few cached
/// decisions).
const INLINE_DECISIONS: usize = 256;

/// How one indicator was released to each of some recipients: the distinct forms (events
/// without their sequence yet), and for each recipient the index of its form, if released.
pub(super) struct Forms {
    pub events: Vec<Event>,
    pub of_recipient: Vec<Option<usize>>,
}

impl Forms {
    /// The events, shared by every recipient of the same form, as of `sequence`.
    pub(super) fn delivered(self, sequence: u64) -> Vec<Option<Arc<Delivered>>> {
        let shared: Vec<Arc<Delivered>> = self
            .events
            .into_iter()
            .map(|mut event| {
                event.sequence = sequence;
                Arc::new(Delivered { event })
            })
            .collect();
        self.of_recipient
            .into_iter()
            .map(|form| form.map(|index| shared[index].clone()))
            .collect()
    }
}

/// Decides `indicator` (created at `at_micros`) for each of `recipients`, appending every
/// decision to `records` (each is counted in the releaser's metrics).
pub(super) fn decide_published(
    releaser: &Releaser,
    member: &str,
    recipients: &[Identity],
    indicator: &Indicator,
    at_micros: i64,
    now: &str,
    records: &mut Vec<DecisionRecord>,
) -> Forms {
    let mut prepared = Prepared::new(indicator);
    let at = Some(timestamp_from_micros(at_micros));
    // Each form released (the whole indicator, or it without some paths), made once for
    // everyone it goes to in that form.
    let mut paths: Vec<Vec<String>> = Vec::new();
    let mut forms = Forms {
        events: Vec::new(),
        of_recipient: Vec::with_capacity(recipients.len()),
    };
    for recipient in recipients {
        let channel = channel_for(&indicator.originator, recipient, member);
        let release = releaser.release_prepared(&mut prepared, recipient, channel, now);
        releaser.record(&release.record);
        let form = release.indicator.as_ref().map(|visible| {
            // The same indicator less the same paths: the same event.
            match paths
                .iter()
                .position(|redact| *redact == release.record.redact)
            {
                Some(index) => index,
                None => {
                    paths.push(release.record.redact.clone());
                    forms.events.push(Event {
                        sequence: 0,
                        at,
                        body: Some(event::Body::Published(Published {
                            indicator: Some(visible.clone()),
                            redacted: release.withheld(),
                        })),
                    });
                    forms.events.len() - 1
                }
            }
        });
        forms.of_recipient.push(form);
        records.push(release.record);
    }
    forms
}

/// A publish's decisions, to store with it, and what to hand the dispatcher on commit.
pub(super) struct Decided {
    pub records: Vec<DecisionRecord>,
    pub on_commit: cordon_storage::OnCommit,
}

impl GatewayState {
    /// Decides the signed `indicators` (created at `at_micros`) for every identity the
    /// dispatcher serves, or `None` if it serves none.
    pub(super) async fn predecide(
        &self,
        indicators: Vec<Indicator>,
        at_micros: i64,
    ) -> Result<Option<Decided>, tonic::Status> {
        let recipients = self.dispatcher.listeners();
        if recipients.is_empty() || indicators.is_empty() {
            return Ok(None);
        }
        let releaser = self.releaser.clone();
        let member = self.member.clone();
        let keys: Arc<[String]> = recipients.iter().map(Identity::to_string).collect();
        let inline = indicators.len() * recipients.len() <= INLINE_DECISIONS;
        let decide = move || {
            let now = crate::clock::now_rfc3339();
            let mut records = Vec::with_capacity(indicators.len() * recipients.len());
            let forms: Vec<Forms> = indicators
                .iter()
                .map(|indicator| {
                    decide_published(
                        &releaser,
                        &member,
                        &recipients,
                        indicator,
                        at_micros,
                        &now,
                        &mut records,
                    )
                })
                .collect();
            (records, forms)
        };
        let (records, forms) = if inline {
            decide()
        } else {
            tokio::task::spawn_blocking(decide)
                .await
                .map_err(|error| tonic::Status::internal(format!("release task failed: {error}")))?
        };
        // The revision of each indicator's decisions (one record per identity, in order).
        let revisions: Vec<Option<String>> = records
            .chunks(keys.len())
            .map(|decisions| {
                let first = &decisions.first()?.policy_revision;
                decisions
                    .iter()
                    .all(|decision| decision.policy_revision == *first)
                    .then(|| first.clone())
            })
            .collect();
        let dispatcher = self.dispatcher.clone();
        let on_commit: cordon_storage::OnCommit = Box::new(move |sequences: &[u64]| {
            let decided = sequences
                .iter()
                .zip(forms)
                .zip(revisions)
                .map(|((&sequence, forms), revision)| Predecided {
                    sequence,
                    revision,
                    identities: keys.clone(),
                    released: forms.delivered(sequence),
                })
                .collect();
            dispatcher.deposit(decided);
        });
        Ok(Some(Decided { records, on_commit }))
    }
}
