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
use crate::release::{DecisionRecord, Prepared, Releaser, Visible, channel_for, withheld};

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
/// decision to `records` (each is counted in the releaser's metrics). The indicator itself
/// becomes the event of those it is released to whole.
pub(super) fn decide_published(
    releaser: &Releaser,
    member: &str,
    recipients: &[Identity],
    indicator: Indicator,
    at_micros: i64,
    now: &str,
    records: &mut Vec<DecisionRecord>,
) -> Forms {
    let mut prepared = Prepared::new(&indicator);
    // Each form released (the whole indicator, or it without some paths), made once for
    // everyone it goes to in that form: its redacted paths and what remains. The whole form
    // holds a placeholder until the indicator itself moves in, once decided for everyone.
    let mut forms: Vec<(Vec<String>, Indicator)> = Vec::new();
    let mut whole_form = None;
    let mut of_recipient = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        let channel = channel_for(&indicator.originator, recipient, member);
        let (visible, record) = releaser.decide_prepared(&mut prepared, recipient, channel, now);
        releaser.record(&record);
        let form = visible.map(|visible| match visible {
            Visible::Whole => *whole_form.get_or_insert_with(|| {
                forms.push((Vec::new(), Indicator::default()));
                forms.len() - 1
            }),
            // The same indicator less the same paths: the same event.
            Visible::Redacted(redacted) => {
                match forms.iter().enumerate().position(|(index, (redact, _))| {
                    Some(index) != whole_form && *redact == record.redact
                }) {
                    Some(index) => index,
                    None => {
                        forms.push((record.redact.clone(), *redacted));
                        forms.len() - 1
                    }
                }
            }
        });
        of_recipient.push(form);
        records.push(record);
    }
    drop(prepared);
    if let Some(index) = whole_form {
        forms[index].1 = indicator;
    }
    let at = Some(timestamp_from_micros(at_micros));
    let events = forms
        .into_iter()
        .map(|(redact, visible)| Event {
            sequence: 0,
            at,
            body: Some(event::Body::Published(Published {
                redacted: withheld(&redact, &visible),
                indicator: Some(visible),
            })),
        })
        .collect();
    Forms {
        events,
        of_recipient,
    }
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
                .into_iter()
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

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_proto::v1::Tlp;

    #[test]
    fn each_form_is_one_event_and_the_whole_one_is_the_indicator_itself() {
        // NG's agencies get the indicator without its source, CI nothing, the rest all of it.
        let policy = crate::release::tests::policy(
            r#"default decision := {"allow": true, "redact": [], "reasons": []}
decision := {"allow": true, "redact": ["source"], "reasons": []} if input.recipient.member == "NG"
decision := {"allow": false, "redact": [], "reasons": []} if input.recipient.member == "CI""#,
        );
        let releaser = Releaser::new("GH".into(), policy, Vec::new());
        // Unsigned: redacted for an agency, it loses its source and nothing else.
        let mut subject = crate::release::tests::indicator("GH", Tlp::Green);
        subject.signature = None;
        let recipients = [
            "GH/customs",
            "NG/customs",
            "CI/customs",
            "GH/police",
            "NG/police",
        ]
        .map(|name| Identity::parse(name).unwrap());
        let mut records = Vec::new();
        let forms = decide_published(
            &releaser,
            "GH",
            &recipients,
            subject.clone(),
            1_700_000_000_000_000,
            "2026-11-25T00:00:00Z",
            &mut records,
        );
        assert_eq!(records.len(), recipients.len());
        assert_eq!(
            forms.of_recipient,
            [Some(0), Some(1), None, Some(0), Some(1)]
        );
        let published = |index: usize| match &forms.events[index].body {
            Some(event::Body::Published(published)) => published.clone(),
            other => panic!("not a publication: {other:?}"),
        };
        assert_eq!(forms.events.len(), 2);
        assert_eq!(published(0).indicator.as_ref(), Some(&subject));
        assert!(published(0).redacted.is_empty());
        let redacted = published(1);
        assert!(redacted.indicator.as_ref().unwrap().source.is_none());
        assert_eq!(redacted.indicator.unwrap().kind, subject.kind);
        assert_eq!(redacted.redacted, ["source"]);
        let delivered = forms.delivered(42);
        assert!(
            delivered
                .iter()
                .flatten()
                .all(|shared| shared.event.sequence == 42)
        );
        assert!(Arc::ptr_eq(
            delivered[0].as_ref().unwrap(),
            delivered[3].as_ref().unwrap()
        ));
    }
}
