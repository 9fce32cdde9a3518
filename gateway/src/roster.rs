//! Member suspension: the members this gateway has taken out of its roster
//! (`[[members]] suspended = true`).
//!
//! A suspended member's gateway and agencies get PERMISSION_DENIED on every call (the
//! [`Gate`] interceptor in front of every Cordon service), their open subscriptions end at
//! once (`feed/subscribe.rs` ends a stream when its recipient is suspended), and the gateway
//! removes the member from every circle it hubs. The config file is watched: a change to
//! `suspended` applies while the gateway runs; other changes wait for the next start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Request, Status};

use crate::identity::caller;

/// The suspended members, shared by every service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Roster {
    suspended: Arc<watch::Sender<BTreeSet<String>>>,
}

impl Roster {
    pub fn new(suspended: BTreeSet<String>) -> Roster {
        Roster {
            suspended: Arc::new(watch::Sender::new(suspended)),
        }
    }

    pub fn is_suspended(&self, member: &str) -> bool {
        self.suspended.borrow().contains(member)
    }

    /// PERMISSION_DENIED for a caller whose member is suspended.
    pub fn admit(&self, member: &str) -> Result<(), Status> {
        if self.is_suspended(member) {
            Err(suspended(member))
        } else {
            Ok(())
        }
    }

    /// Resolves once `member` is suspended (at once if it is now).
    pub async fn until_suspended(&self, member: &str) {
        let mut receiver = self.suspended.subscribe();
        if receiver
            .wait_for(|suspended| suspended.contains(member))
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }

    /// The suspended members from now on; returns those suspended by this change.
    pub fn replace(&self, suspended: BTreeSet<String>) -> Vec<String> {
        let mut newly = Vec::new();
        self.suspended.send_if_modified(|current| {
            if *current == suspended {
                return false;
            }
            newly = suspended.difference(current).cloned().collect();
            let restored: Vec<&String> = current.difference(&suspended).collect();
            for member in &newly {
                tracing::warn!(%member, "member suspended: its calls are refused and its subscriptions end");
            }
            for member in restored {
                tracing::warn!(%member, "member no longer suspended");
            }
            *current = suspended;
            true
        });
        newly
    }

    /// Every change of the suspended set, for the task that removes members from circles.
    pub fn changes(&self) -> watch::Receiver<BTreeSet<String>> {
        self.suspended.subscribe()
    }

    pub fn suspended(&self) -> BTreeSet<String> {
        self.suspended.borrow().clone()
    }
}

pub fn suspended(member: &str) -> Status {
    Status::permission_denied(format!(
        "member {member} is suspended by this gateway (`suspended = true` under [[members]])"
    ))
}

/// The interceptor in front of every Cordon service: a call from a suspended member's
/// gateway or agencies is refused before its handler runs.
#[derive(Debug, Clone)]
pub struct Gate {
    pub roster: Roster,
    pub federation: String,
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        // A caller without a valid identity is refused by the handler, as before.
        if let Ok(identity) = caller(&request, &self.federation) {
            self.roster.admit(identity.member())?;
        }
        Ok(request)
    }
}

/// `stream`, ended with PERMISSION_DENIED as soon as `member` is suspended (between two
/// items: an item being sent is not cut in half).
pub fn end_when_suspended<T: Send + 'static>(
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>,
    roster: Roster,
    member: String,
) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>> {
    use futures::StreamExt;
    Box::pin(async_stream::stream! {
        let mut stream = stream;
        let cut_off = roster.until_suspended(&member);
        tokio::pin!(cut_off);
        loop {
            tokio::select! {
                biased;
                () = &mut cut_off => {
                    tracing::info!(%member, "subscription ended: the member is suspended");
                    yield Err(suspended(&member));
                    return;
                }
                item = stream.next() => match item {
                    Some(item) => yield item,
                    None => return,
                },
            }
        }
    })
}

/// Removes suspended members from every circle this gateway hubs: at start, whenever the
/// roster changes, and whenever a circle changes (so a suspended member added again is
/// taken out again). Ends with `shutdown`.
pub fn remove_from_circles(
    roster: Roster,
    circles: Arc<crate::circle::Circles>,
    own_member: String,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut roster_changes = roster.changes();
        let mut circle_changes = circles.subscribe_changes();
        loop {
            let suspended = roster.suspended();
            if !suspended.is_empty() {
                for info in circles.list().await {
                    if info.hub != own_member || info.status != "active" {
                        continue;
                    }
                    for member in info.members.iter().filter(|m| suspended.contains(*m)) {
                        match circles.remove(&info.name, member).await {
                            Ok(_) => tracing::warn!(
                                circle = %info.name,
                                %member,
                                "suspended member removed from the circle"
                            ),
                            Err(error) => tracing::error!(
                                circle = %info.name,
                                %member,
                                %error,
                                "removing a suspended member from the circle failed; tried again at the next change"
                            ),
                        }
                    }
                }
            }
            tokio::select! {
                changed = roster_changes.changed() => if changed.is_err() { return },
                changed = circle_changes.changed() => if changed.is_err() { return },
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
    })
}

/// Watches the config file at `path` and applies each change of `[[members]] suspended` to
/// `roster`. A file that no longer parses or validates changes nothing (logged); changes to
/// other settings are logged as waiting for the next start.
pub fn watch_config(
    path: &Path,
    environment: std::collections::HashMap<String, String>,
    roster: Roster,
) -> anyhow::Result<crate::file_watch::FileWatch> {
    let path: PathBuf = path.to_path_buf();
    let watched = path.clone();
    crate::file_watch::watch_file(&watched, move || {
        match crate::config::GatewayConfig::load(&path, &environment) {
            Ok(config) => {
                tracing::info!(
                    config = %path.display(),
                    "config changed: `suspended` under [[members]] applies now, other settings at the next start"
                );
                roster.replace(config.suspended);
            }
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                "the changed config does not load; the roster stays as it was"
            ),
        }
    })
}
