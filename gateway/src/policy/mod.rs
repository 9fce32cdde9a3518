//! Safe policy reload and the `cordon.v1.PolicyService`: a new policy becomes
//! active only if it loads, passes its check and its own tests; the swap is
//! atomic; a rejected policy leaves the old one serving and is reported (log,
//! counters, status RPC). Reloads come from a file watch and an admin call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cordon_policy::Policy;
use cordon_proto::v1::policy_service_server::PolicyService;
use cordon_proto::v1::{
    DecisionEntry, DecisionsRequest, DecisionsResponse, PolicyStatus, PolicyStatusRequest,
    Rejection, ReloadRequest, ReloadResponse,
};
use cordon_storage::{DecisionQuery, Store};
use notify::Watcher;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::clock::{micros_of, now_micros, timestamp_from_micros};
use crate::identity::{Identity, caller};
use crate::release::Releaser;
use crate::status::{invalid_field, storage_status};

/// Quiet time after the last file event before a reload, so that an editor's
/// or `cp -r`'s burst of writes is loaded once, whole.
const WATCH_SETTLE: Duration = Duration::from_millis(300);
/// Largest page of decisions one call returns.
const MAX_DECISIONS_PAGE: u32 = 10_000;

/// Loads a candidate policy: it must load (parse, compile, entrypoint, known
/// builtins) and every one of its own tests must pass.
///
/// The policy and its tests come from one reading of the source: a board
/// saving files while a reload runs cannot get one version compiled and
/// another version's tests run.
pub fn load_checked_policy(source: &Path, time_limit: Duration) -> Result<Policy, String> {
    let (mut policy, report) =
        cordon_policy::load_with_tests(source).map_err(|error| format!("{error}"))?;
    if !report.all_passed() {
        let failed: Vec<String> = report
            .failures()
            .map(|result| match &result.error {
                Some(error) => format!("{} ({error})", result.path()),
                None => result.path(),
            })
            .collect();
        return Err(format!(
            "{} of {} policy tests failed: {}",
            failed.len(),
            report.results.len(),
            failed.join(", ")
        ));
    }
    policy.set_time_limit(time_limit);
    Ok(policy)
}

#[derive(Debug, Clone, Default)]
struct ManagerState {
    activated_at_micros: i64,
    last_rejection: Option<(i64, String, String)>,
    reloads_accepted: u64,
    reloads_rejected: u64,
}

/// Owns reloads of one gateway's policy.
#[derive(Debug)]
pub struct PolicyManager {
    source: PathBuf,
    time_limit: Duration,
    releaser: Arc<Releaser>,
    state: Mutex<ManagerState>,
    /// One reload at a time; decisions never wait for it.
    reloading: Mutex<()>,
    /// Where activations are recorded before they take effect (the gateway's audit log);
    /// `None` records nothing (tests of the manager alone).
    audit: Option<(cordon_storage::Store, tokio::runtime::Handle)>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Activated {
        revision: String,
    },
    Unchanged {
        revision: String,
    },
    Rejected {
        active_revision: String,
        reason: String,
    },
}

impl PolicyManager {
    pub fn new(source: PathBuf, time_limit: Duration, releaser: Arc<Releaser>) -> PolicyManager {
        PolicyManager {
            source,
            time_limit,
            releaser,
            state: Mutex::new(ManagerState {
                activated_at_micros: now_micros(),
                ..ManagerState::default()
            }),
            reloading: Mutex::new(()),
            audit: None,
        }
    }

    /// Records every activation in `store`'s audit log before it takes effect; an activation
    /// that cannot be recorded is refused (the policy in force stays).
    pub fn recording_activations(mut self, store: cordon_storage::Store) -> PolicyManager {
        self.audit = Some((store, tokio::runtime::Handle::current()));
        self
    }

    /// Appends the activation of `revision` to the audit log, from the blocking thread a
    /// reload runs on.
    fn record_activation(&self, revision: &str) -> Result<(), String> {
        let Some((store, runtime)) = &self.audit else {
            return Ok(());
        };
        runtime
            .block_on(store.audit_append(&[activation_entry(revision)]))
            .map_err(|error| format!("the audit log could not record the activation: {error}"))
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Loads the source again and activates it if it passes. Blocking: call
    /// from a blocking thread.
    pub fn reload(&self) -> ReloadOutcome {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let active = self.releaser.policy();
        let outcome = match load_checked_policy(&self.source, self.time_limit) {
            Ok(candidate) if candidate.revision() == active.revision() => {
                ReloadOutcome::Unchanged {
                    revision: active.revision().to_string(),
                }
            }
            Ok(candidate) => {
                let revision = candidate.revision().to_string();
                match self.record_activation(&revision) {
                    Ok(()) => {
                        self.releaser.set_policy(candidate);
                        ReloadOutcome::Activated { revision }
                    }
                    Err(reason) => ReloadOutcome::Rejected {
                        active_revision: active.revision().to_string(),
                        reason,
                    },
                }
            }
            Err(reason) => ReloadOutcome::Rejected {
                active_revision: active.revision().to_string(),
                reason,
            },
        };
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &outcome {
            ReloadOutcome::Activated { revision } => {
                state.activated_at_micros = now_micros();
                state.reloads_accepted += 1;
                tracing::info!(%revision, previous = %active.revision(), "policy activated");
            }
            ReloadOutcome::Unchanged { .. } => {}
            ReloadOutcome::Rejected {
                active_revision,
                reason,
            } => {
                state.reloads_rejected += 1;
                let attempted = cordon_policy::Policy::load(&self.source)
                    .map(|policy| policy.revision().to_string())
                    .unwrap_or_default();
                state.last_rejection = Some((now_micros(), attempted, reason.clone()));
                tracing::warn!(%active_revision, %reason, "policy rejected; the active policy keeps serving");
            }
        }
        outcome
    }

    pub fn status(&self) -> PolicyStatus {
        let state = self
            .state
            .lock()
            .map(|state| state.clone())
            .unwrap_or_default();
        let policy = self.releaser.policy();
        let metrics = self.releaser.metrics();
        PolicyStatus {
            active_revision: policy.revision().to_string(),
            activated_at: Some(timestamp_from_micros(state.activated_at_micros)),
            engine: policy.engine_name().to_string(),
            last_rejection: state
                .last_rejection
                .map(|(at, revision, reason)| Rejection {
                    at: Some(timestamp_from_micros(at)),
                    revision,
                    reason,
                }),
            reloads_accepted: state.reloads_accepted,
            reloads_rejected: state.reloads_rejected,
            decisions_failed_closed: metrics.failed_closed_total(),
            decisions_total: metrics.decisions_total(),
            source: self.source.display().to_string(),
        }
    }

    /// Watches the policy source and reloads after changes settle. The
    /// returned watcher must be kept alive.
    pub fn watch(self: &Arc<Self>) -> notify::Result<notify::RecommendedWatcher> {
        let (events, mut receiver) = mpsc::unbounded_channel::<()>();
        // A bundle file is watched through its directory (so that an atomic
        // rename over it is seen), but only events on the bundle itself count:
        // the directory may also hold the database, which changes all the time.
        let bundle = (!self.source.is_dir()).then(|| self.source.clone());
        let watched = match &bundle {
            None => self.source.clone(),
            Some(file) => file
                .parent()
                .map(Path::to_path_buf)
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(".")),
        };
        let bundle_name = bundle
            .as_ref()
            .and_then(|file| file.file_name().map(|name| name.to_os_string()));
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.kind.is_access() {
                    return;
                }
                let relevant = match &bundle_name {
                    None => true,
                    Some(name) => event
                        .paths
                        .iter()
                        .any(|path| path.file_name() == Some(name.as_os_str())),
                };
                if relevant {
                    let _ = events.send(());
                }
            })?;
        let recursive = if bundle.is_some() {
            notify::RecursiveMode::NonRecursive
        } else {
            notify::RecursiveMode::Recursive
        };
        watcher.watch(&watched, recursive)?;
        let manager = self.clone();
        tokio::spawn(async move {
            while receiver.recv().await.is_some() {
                // Settle: wait until no event arrived for WATCH_SETTLE.
                while let Ok(Some(())) = tokio::time::timeout(WATCH_SETTLE, receiver.recv()).await {
                }
                let manager = manager.clone();
                let _ = tokio::task::spawn_blocking(move || manager.reload()).await;
            }
        });
        Ok(watcher)
    }
}

/// The gRPC face of the policy manager and the decision log.
#[derive(Debug, Clone)]
pub struct PolicyApi {
    pub member: String,
    pub federation: String,
    pub manager: Arc<PolicyManager>,
    pub store: Store,
}

impl PolicyApi {
    /// Status: the member's own gateway identity and its agencies.
    fn require_member_side(&self, caller: &Identity) -> Result<(), Status> {
        if caller.member() == self.member {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "policy administration is for member {}; {caller} is not",
                self.member
            )))
        }
    }

    /// Reload and the decision log: the gateway's own identity only. The log
    /// names every recipient of every indicator, RED ones included, which an
    /// agency of the member need not see.
    fn require_gateway_identity(&self, caller: &Identity, action: &str) -> Result<(), Status> {
        if *caller
            == (Identity::Member {
                member: self.member.clone(),
            })
        {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{action} takes the gateway identity {}; {caller} is not",
                self.member
            )))
        }
    }
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn status(
        &self,
        request: Request<PolicyStatusRequest>,
    ) -> Result<Response<PolicyStatus>, Status> {
        let caller = caller(&request, &self.federation)?;
        self.require_member_side(&caller)?;
        Ok(Response::new(self.manager.status()))
    }

    async fn reload(
        &self,
        request: Request<ReloadRequest>,
    ) -> Result<Response<ReloadResponse>, Status> {
        let caller = caller(&request, &self.federation)?;
        // Changing what the gateway releases takes the gateway's own key.
        if caller
            != (Identity::Member {
                member: self.member.clone(),
            })
        {
            return Err(Status::permission_denied(format!(
                "reloading the policy takes the gateway identity {}; {caller} is not",
                self.member
            )));
        }
        let manager = self.manager.clone();
        let outcome = tokio::task::spawn_blocking(move || manager.reload())
            .await
            .map_err(|error| Status::internal(format!("reload task failed: {error}")))?;
        let response = match outcome {
            ReloadOutcome::Activated { revision } => ReloadResponse {
                activated: true,
                active_revision: revision,
                message: "activated".into(),
            },
            ReloadOutcome::Unchanged { revision } => ReloadResponse {
                activated: false,
                active_revision: revision,
                message: "unchanged".into(),
            },
            ReloadOutcome::Rejected {
                active_revision,
                reason,
            } => ReloadResponse {
                activated: false,
                active_revision,
                message: reason,
            },
        };
        Ok(Response::new(response))
    }

    async fn decisions(
        &self,
        request: Request<DecisionsRequest>,
    ) -> Result<Response<DecisionsResponse>, Status> {
        let caller = caller(&request, &self.federation)?;
        self.require_gateway_identity(&caller, "reading the decision log")?;
        let request = request.into_inner();
        let limit = match request.limit {
            0 => 1000,
            limit if limit > MAX_DECISIONS_PAGE => {
                return Err(invalid_field(
                    "limit",
                    format!("at most {MAX_DECISIONS_PAGE}"),
                ));
            }
            limit => limit,
        };
        let after_decision = match (
            request.after_time.as_ref(),
            request.after_decision_id.is_empty(),
        ) {
            (Some(at), false) => Some((micros_of(at), request.after_decision_id.clone())),
            (None, true) => None,
            _ => {
                return Err(invalid_field(
                    "after_decision_id",
                    "after_decision_id and after_time go together",
                ));
            }
        };
        let query = DecisionQuery {
            indicator_id: Some(request.indicator_id).filter(|id| !id.is_empty()),
            recipient: Some(request.recipient).filter(|id| !id.is_empty()),
            since_micros: request.since.as_ref().map(micros_of),
            after_decision,
            limit,
        };
        let rows = self.store.decisions(&query).await.map_err(storage_status)?;
        let decisions = rows
            .into_iter()
            .map(|row| DecisionEntry {
                decision_id: row.decision_id,
                at: Some(timestamp_from_micros(row.at_micros)),
                recipient: row.recipient,
                indicator_id: row.indicator_id,
                channel: row.channel,
                policy_revision: row.policy_revision,
                allow: row.allow,
                redact: row.redact,
                reasons: row.reasons,
                error: row.error.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(DecisionsResponse { decisions }))
    }
}

/// The audit log's entry of a policy revision becoming active. The revision names the
/// source by its digest (`sha256:<hex>`), which is also the entry's source digest.
pub fn activation_entry(revision: &str) -> cordon_tlog::Entry {
    cordon_tlog::Entry::PolicyActivated {
        revision: revision.to_string(),
        source_digest: revision
            .strip_prefix("sha256:")
            .unwrap_or(revision)
            .to_string(),
    }
}
