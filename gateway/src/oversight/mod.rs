//! The public oversight page: `/oversight` (HTML with server-drawn SVG charts) and
//! `/oversight.json` (the same figures) on the admin listener.
//!
//! Aggregate figures only, each count suppressed below `[oversight] suppress_below`
//! ([`figures::suppress`]): indicators published here and received from peers by kind, TLP
//! and month (the feed at large: indicators held in circles are not counted); release
//! decisions by outcome and recipient class (circle decisions left out, as on `/metrics`);
//! alerts raised by month; policy revisions with the period they decided in; this gateway's
//! latest signed checkpoint and the latest checkpoint of each peer it checked. Nothing on the
//! page is an indicator's id, content, identifier or source.
//!
//! The indicator and alert tallies are kept in memory and advanced from a cursor, so a view
//! reads only what is new since the last; the decision counts are one grouped query. The
//! figures are computed at most once per [`FRESH_FOR`] whoever asks, so the page costs the
//! gateway little however often it is opened.

pub mod figures;
pub mod page;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cordon_storage::{DecisionGroup, Store};
use cordon_tlog::CheckpointSigner;
use prost::Message;

use crate::clock::{now_rfc3339, rfc3339_of_micros};
use crate::identity::Identity;
use figures::{
    Alerts, Checkpoint, Checkpoints, Decisions, Figures, IndicatorFigures, Indicators,
    PolicyRevision, suppress,
};

/// How long computed figures are served before they are computed again.
pub const FRESH_FOR: Duration = Duration::from_secs(5);

/// Events read per page while the tallies catch up.
const PAGE: u32 = 5_000;

/// Counts by kind, TLP and month of one direction.
#[derive(Debug, Default)]
struct Tally {
    by_kind: BTreeMap<String, u64>,
    by_tlp: BTreeMap<String, u64>,
    by_month: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, kind: &str, tlp: &str, month: String) {
        *self.by_kind.entry(kind.to_string()).or_default() += 1;
        *self.by_tlp.entry(tlp.to_string()).or_default() += 1;
        *self.by_month.entry(month).or_default() += 1;
    }

    fn figures(&self, below: u64) -> IndicatorFigures {
        IndicatorFigures {
            by_kind: suppress(&self.by_kind, below),
            by_tlp: suppress(&self.by_tlp, below),
            by_month: suppress(&self.by_month, below),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    feed_cursor: u64,
    alert_cursor: u64,
    published: Tally,
    received: Tally,
    alerts_by_month: BTreeMap<String, u64>,
    latest: Option<(Instant, Arc<Figures>)>,
}

/// The figures of one gateway, computed on demand.
pub struct Oversight {
    store: Store,
    member: String,
    peers: Vec<String>,
    signer: Arc<CheckpointSigner>,
    suppress_below: u64,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for Oversight {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Oversight")
            .field("member", &self.member)
            .field("suppress_below", &self.suppress_below)
            .finish_non_exhaustive()
    }
}

/// `2026-12` of a time in Unix microseconds.
fn month_of(micros: i64) -> String {
    rfc3339_of_micros(micros)
        .get(..7)
        .unwrap_or("unknown")
        .to_string()
}

/// `2026-12-06` of a time in Unix microseconds.
fn day_of(micros: i64) -> String {
    rfc3339_of_micros(micros)
        .get(..10)
        .unwrap_or("unknown")
        .to_string()
}

/// `TLP:AMBER+STRICT` of an indicator's payload (`unknown` if it cannot be read).
fn tlp_of(payload: &[u8]) -> &'static str {
    use cordon_proto::v1::Tlp;
    match cordon_proto::v1::Indicator::decode(payload).map(|indicator| indicator.tlp()) {
        Ok(Tlp::Clear) => "TLP:CLEAR",
        Ok(Tlp::Green) => "TLP:GREEN",
        Ok(Tlp::Amber) => "TLP:AMBER",
        Ok(Tlp::AmberStrict) => "TLP:AMBER+STRICT",
        Ok(Tlp::Red) => "TLP:RED",
        Ok(Tlp::Unspecified) | Err(_) => "unknown",
    }
}

fn outcome_of(group: &DecisionGroup) -> &'static str {
    if group.failed {
        "failed closed"
    } else if !group.allow {
        "denied"
    } else if group.redacted {
        "released, redacted"
    } else {
        "released"
    }
}

fn recipient_class(recipient: &str, own_member: &str) -> &'static str {
    match Identity::parse(recipient) {
        Ok(identity) if identity.is_agency_of(own_member) => "own agencies",
        Ok(Identity::Agency { .. }) => "partner agencies",
        Ok(Identity::Member { member }) if member == own_member => "this gateway",
        Ok(Identity::Member { .. }) => "partner gateways",
        Err(_) => "other",
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Oversight {
    pub fn new(
        store: Store,
        member: &str,
        peers: Vec<String>,
        signer: Arc<CheckpointSigner>,
        suppress_below: u64,
    ) -> Oversight {
        Oversight {
            store,
            member: member.to_string(),
            peers,
            signer,
            suppress_below,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// The figures, computed again if those kept are older than [`FRESH_FOR`].
    pub async fn figures(&self) -> anyhow::Result<Arc<Figures>> {
        let mut state = self.state.lock().await;
        if let Some((at, figures)) = &state.latest
            && at.elapsed() < FRESH_FOR
        {
            return Ok(figures.clone());
        }
        self.catch_up(&mut state).await?;
        let below = self.suppress_below;
        let groups = self.store.oversight_decision_groups().await?;
        let mut by_outcome = BTreeMap::new();
        let mut by_class = BTreeMap::new();
        let mut revisions: BTreeMap<&str, (i64, i64, u64)> = BTreeMap::new();
        for group in &groups {
            *by_outcome.entry(outcome_of(group).to_string()).or_default() += group.count;
            *by_class
                .entry(recipient_class(&group.recipient, &self.member).to_string())
                .or_default() += group.count;
            let period = revisions.entry(&group.policy_revision).or_insert((
                group.first_micros,
                group.last_micros,
                0,
            ));
            period.0 = period.0.min(group.first_micros);
            period.1 = period.1.max(group.last_micros);
            period.2 += group.count;
        }
        // One breakdown, so that a hidden revision's count is not the total minus the others;
        // its days are hidden with it.
        let counts: BTreeMap<String, u64> = revisions
            .iter()
            .map(|(revision, (_, _, count))| (revision.to_string(), *count))
            .collect();
        let mut policy_revisions: Vec<PolicyRevision> = suppress(&counts, below)
            .into_iter()
            .zip(revisions.values())
            .map(|(decisions, (first, last, _))| PolicyRevision {
                revision: decisions.label.clone(),
                first_decision: (!decisions.suppressed).then(|| day_of(*first)),
                last_decision: (!decisions.suppressed).then(|| day_of(*last)),
                decisions,
            })
            .collect();
        policy_revisions.sort_by(|a, b| {
            (&a.first_decision, &a.revision).cmp(&(&b.first_decision, &b.revision))
        });
        let figures = Arc::new(Figures {
            member: self.member.clone(),
            generated_at: now_rfc3339(),
            suppress_below: below,
            indicators: Indicators {
                published: state.published.figures(below),
                received: state.received.figures(below),
            },
            decisions: Decisions {
                by_outcome: suppress(&by_outcome, below),
                by_recipient_class: suppress(&by_class, below),
            },
            alerts: Alerts {
                by_month: suppress(&state.alerts_by_month, below),
            },
            policy_revisions,
            checkpoints: self.checkpoints().await?,
        });
        state.latest = Some((Instant::now(), figures.clone()));
        Ok(figures)
    }

    /// Reads the feed and the alerts from where the tallies stopped.
    async fn catch_up(&self, state: &mut State) -> anyhow::Result<()> {
        loop {
            let page = self
                .store
                .oversight_indicators(state.feed_cursor, PAGE)
                .await?;
            for indicator in &page.indicators {
                let tally = match indicator.via {
                    None => &mut state.published,
                    Some(_) => &mut state.received,
                };
                tally.add(
                    &indicator.kind,
                    tlp_of(&indicator.payload),
                    month_of(indicator.at_micros),
                );
            }
            state.feed_cursor = state.feed_cursor.max(page.scanned_to);
            if page.indicators.len() < PAGE as usize {
                break;
            }
        }
        loop {
            let alerts = self
                .store
                .oversight_alert_times(state.alert_cursor, PAGE)
                .await?;
            for (sequence, at_micros) in &alerts {
                *state
                    .alerts_by_month
                    .entry(month_of(*at_micros))
                    .or_default() += 1;
                state.alert_cursor = state.alert_cursor.max(*sequence);
            }
            if alerts.len() < PAGE as usize {
                break;
            }
        }
        Ok(())
    }

    async fn checkpoints(&self) -> anyhow::Result<Checkpoints> {
        let size = self.store.audit_size().await?;
        let root = self.store.audit_root(size).await?;
        let note = self.signer.sign(size, &root)?;
        let own = Checkpoint {
            log: self.signer.origin().to_string(),
            size,
            root: base64(&root),
            note,
            at: now_rfc3339(),
        };
        let mut peers = Vec::new();
        for peer in &self.peers {
            if let Some(kept) = self.store.peer_checkpoint(peer).await? {
                peers.push(Checkpoint {
                    log: peer.clone(),
                    size: kept.size,
                    root: base64(&kept.root),
                    note: kept.note,
                    at: rfc3339_of_micros(kept.at_micros),
                });
            }
        }
        Ok(Checkpoints { own, peers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_counted_by_class_never_by_name() {
        assert_eq!(recipient_class("GH/customs", "GH"), "own agencies");
        assert_eq!(recipient_class("NG/customs", "GH"), "partner agencies");
        assert_eq!(recipient_class("NG", "GH"), "partner gateways");
        assert_eq!(recipient_class("GH", "GH"), "this gateway");
        assert_eq!(recipient_class("not an identity", "GH"), "other");
    }

    #[test]
    fn times_become_months_and_days() {
        // 2026-12-06T10:00:00Z
        let micros = 1_796_551_200_000_000;
        assert_eq!(month_of(micros), "2026-12");
        assert_eq!(day_of(micros), "2026-12-06");
    }

    #[test]
    fn the_tlp_is_read_from_the_payload() {
        let indicator = cordon_proto::v1::Indicator {
            tlp: cordon_proto::v1::Tlp::AmberStrict as i32,
            ..Default::default()
        };
        assert_eq!(tlp_of(&indicator.encode_to_vec()), "TLP:AMBER+STRICT");
        assert_eq!(tlp_of(b"\xff\xff"), "unknown");
    }
}
