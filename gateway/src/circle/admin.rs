//! The hub's administration of its circles: create, add (with the Welcome kept and delivered
//! until taken), remove, and what a circle looks like now.

use std::sync::Arc;

use cordon_proto::v1::circle_service_client::CircleServiceClient;
use cordon_proto::v1::{CircleInfo, GetKeyPackageRequest, WelcomeRequest};
use cordon_storage::{CircleRow, CircleWrite, PendingWelcome};
use openmls::prelude::*;
use tonic::transport::Channel;

use super::{CircleError, Circles, STATUS_ACTIVE, is_circle_name, mls};
use crate::clock::now_micros;

impl Circles {
    /// Creates a circle with this gateway as its hub and only member.
    pub async fn create(&self, name: &str) -> Result<CircleInfo, CircleError> {
        if !is_circle_name(name) {
            return Err(CircleError::invalid(
                "name",
                "a circle name is 1 to 32 characters of a-z, 0-9 and -",
            ));
        }
        let mut inner = self.inner.lock().await;
        if inner.rows.contains_key(name) {
            return Err(CircleError::AlreadyExists(format!(
                "circle {name:?} exists"
            )));
        }
        let group_id = format!("{}/{name}", self.context.member).into_bytes();
        let credential = self.credential();
        let signer = self.context.signing_key.clone();
        let member = self.context.member.clone();
        let name = name.to_string();
        self.apply(&mut inner, |inner| {
            let group = MlsGroup::builder()
                .with_group_id(GroupId::from_slice(&group_id))
                .ciphersuite(mls::CIPHERSUITE)
                .use_ratchet_tree_extension(true)
                .build(&inner.provider, signer.as_ref(), credential)
                .map_err(|error| {
                    CircleError::internal(format!("creating the MLS group: {error}"))
                })?;
            let row = CircleRow {
                name: name.clone(),
                group_id,
                hub: member,
                epoch: group.epoch().as_u64(),
                position: 0,
                status: STATUS_ACTIVE.into(),
                created_micros: now_micros(),
            };
            Ok(((), inner.install(group, row)))
        })
        .await?;
        tracing::info!(circle = %name, "circle created; this gateway is its hub");
        inner.info(&name)
    }

    pub async fn list(&self) -> Vec<CircleInfo> {
        let inner = self.inner.lock().await;
        let mut names: Vec<&String> = inner.rows.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| inner.info(name).ok())
            .collect()
    }

    pub async fn info(&self, name: &str) -> Result<CircleInfo, CircleError> {
        self.inner.lock().await.info(name)
    }

    pub(super) fn require_hub(&self, row: &CircleRow) -> Result<(), CircleError> {
        if row.hub != self.context.member {
            return Err(CircleError::FailedPrecondition(format!(
                "circle {:?} is hubbed by {}; only its hub changes its membership",
                row.name, row.hub
            )));
        }
        if row.status != STATUS_ACTIVE {
            return Err(CircleError::FailedPrecondition(format!(
                "circle {:?} is {}",
                row.name, row.status
            )));
        }
        Ok(())
    }

    /// Adds `member`: fetches a KeyPackage from its gateway (TLS pins its identity), checks
    /// the KeyPackage's credential names it with its pinned key, commits the add (log and
    /// epoch in one transaction) and gives it the Welcome.
    pub async fn add(
        self: &Arc<Self>,
        name: &str,
        member: &str,
    ) -> Result<CircleInfo, CircleError> {
        if !crate::identity::is_member_id(member) || member == self.context.member {
            return Err(CircleError::invalid(
                "member",
                format!("{member:?} is not another member's id"),
            ));
        }
        {
            let inner = self.inner.lock().await;
            let (row, group) = inner.circle(name)?;
            self.require_hub(row)?;
            if mls::leaf_of(group, member).is_some() {
                return Err(CircleError::AlreadyExists(format!(
                    "{member} is already in circle {name:?}"
                )));
            }
        }
        let mut client = self.connect(member).await?;
        let served = client
            .get_key_package(GetKeyPackageRequest {})
            .await
            .map_err(|status| {
                CircleError::Unavailable(format!(
                    "fetching {member}'s KeyPackage: {}",
                    status.message()
                ))
            })?
            .into_inner();
        let mut inner = self.inner.lock().await;
        let key_package = mls::check_key_package(
            &inner.provider,
            &served.key_package,
            member,
            &self.context.pinned,
        )
        .map_err(|reason| {
            tracing::warn!(circle = %name, %member, %reason, "refused a KeyPackage");
            CircleError::PermissionDenied(format!("{member}'s KeyPackage refused: {reason}"))
        })?;
        let signer = self.context.signing_key.clone();
        let own = self.context.member.clone();
        let circle = name.to_string();
        let joining = member.to_string();
        let (pending, _) = self
            .apply(&mut inner, |inner| {
                let (row, group, provider) = inner.circle_mut(&circle)?;
                self.require_hub(&row)?;
                if mls::leaf_of(group, &joining).is_some() {
                    return Err(CircleError::AlreadyExists(format!(
                        "{joining} is already in circle {circle:?}"
                    )));
                }
                let (commit, welcome, _) = group
                    .add_members(provider, signer.as_ref(), &[key_package])
                    .map_err(|error| CircleError::internal(format!("adding {joining}: {error}")))?;
                let welcome = mls::serialize(&welcome).map_err(CircleError::Internal)?;
                let mut write = CircleWrite::default();
                let position = inner.merge_own_commit(&circle, &own, &commit, &mut write)?;
                let pending = PendingWelcome {
                    circle: circle.clone(),
                    member: joining.clone(),
                    position,
                    welcome,
                    created_micros: now_micros(),
                };
                write.departures = vec![(circle.clone(), joining.clone(), None)];
                write.admissions = vec![(circle.clone(), joining.clone(), position)];
                write.audit = vec![membership_entry(
                    inner,
                    &circle,
                    &joining,
                    cordon_tlog::entry::MembershipChange::Added,
                )];
                // Kept with the commit: a crash before delivery loses no Welcome.
                write.welcome = Some(pending.clone());
                Ok((pending, write))
            })
            .await?;
        let position = pending.position;
        inner
            .awaiting
            .insert((name.to_string(), member.to_string()), position);
        drop(inner);
        tracing::info!(circle = %name, %member, position, "member added to circle");
        if let Err(error) = self.deliver_welcome(&pending, Some(client)).await {
            tracing::warn!(circle = %name, %member, position, reason = %error, "the new member did not take its Welcome; delivering it again with backoff");
            self.redeliver(pending);
        }
        self.info(name).await
    }

    /// Gives a pending Welcome to its member's gateway once; forgets it when taken.
    async fn deliver_welcome(
        &self,
        pending: &PendingWelcome,
        client: Option<CircleServiceClient<Channel>>,
    ) -> Result<(), CircleError> {
        let mut client = match client {
            Some(client) => client,
            None => self.connect(&pending.member).await?,
        };
        client
            .welcome(WelcomeRequest {
                circle: pending.circle.clone(),
                welcome: pending.welcome.clone(),
                position: pending.position,
            })
            .await?;
        // The database first: if its write fails, memory still shows the Welcome awaited.
        let mut inner = self.inner.lock().await;
        self.context
            .store
            .welcome_delivered(&pending.circle, &pending.member, pending.position)
            .await?;
        let key = (pending.circle.clone(), pending.member.clone());
        if inner.awaiting.get(&key) == Some(&pending.position) {
            inner.awaiting.remove(&key);
        }
        tracing::info!(circle = %pending.circle, member = %pending.member, position = pending.position, "Welcome taken");
        Ok(())
    }

    /// Delivers a pending Welcome in the background, with backoff, until it is taken, the
    /// member is removed (or added again), or the gateway stops.
    pub(super) fn redeliver(self: &Arc<Self>, pending: PendingWelcome) {
        let circles = self.clone();
        let key = format!("welcome/{}/{}", pending.circle, pending.member);
        let task = tokio::spawn(async move {
            let mut shutdown = circles.shutdown_signal();
            let mut attempt = 0u32;
            loop {
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    () = tokio::time::sleep(crate::federation::backoff(attempt)) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                }
                let still_awaited = circles
                    .inner
                    .lock()
                    .await
                    .awaiting
                    .get(&(pending.circle.clone(), pending.member.clone()))
                    == Some(&pending.position);
                if !still_awaited {
                    return;
                }
                match circles.deliver_welcome(&pending, None).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(circle = %pending.circle, member = %pending.member, attempt, reason = %error, "delivering a Welcome");
                    }
                }
            }
        });
        self.keep_task(key, task);
    }

    /// Removes `member`: a remove commit in the log and epoch, and a departure row so that it
    /// may read the log up to that commit and no further.
    pub async fn remove(&self, name: &str, member: &str) -> Result<CircleInfo, CircleError> {
        let mut inner = self.inner.lock().await;
        let signer = self.context.signing_key.clone();
        let own = self.context.member.clone();
        let circle = name.to_string();
        let leaving = member.to_string();
        if leaving == own {
            return Err(CircleError::invalid(
                "member",
                "the hub cannot remove itself from its circle",
            ));
        }
        self.apply(&mut inner, |inner| {
            let (row, group, provider) = inner.circle_mut(&circle)?;
            self.require_hub(&row)?;
            let leaf = mls::leaf_of(group, &leaving).ok_or_else(|| {
                CircleError::NotFound(format!("{leaving} is not in circle {circle:?}"))
            })?;
            let (commit, _, _) = group
                .remove_members(provider, signer.as_ref(), &[leaf])
                .map_err(|error| CircleError::internal(format!("removing {leaving}: {error}")))?;
            let mut write = CircleWrite::default();
            let position = inner.merge_own_commit(&circle, &own, &commit, &mut write)?;
            write.departures = vec![(circle.clone(), leaving.clone(), Some(position))];
            write.welcomes_dropped = vec![(circle.clone(), leaving.clone())];
            write.audit = vec![membership_entry(
                inner,
                &circle,
                &leaving,
                cordon_tlog::entry::MembershipChange::Removed,
            )];
            Ok(((), write))
        })
        .await?;
        inner
            .awaiting
            .remove(&(name.to_string(), member.to_string()));
        tracing::info!(circle = %name, %member, "member removed from circle");
        inner.info(name)
    }
}

/// The audit log's entry of a membership change, at the circle's epoch after the commit.
fn membership_entry(
    inner: &super::state::Inner,
    circle: &str,
    member: &str,
    change: cordon_tlog::entry::MembershipChange,
) -> cordon_tlog::Entry {
    cordon_tlog::Entry::CircleMembership {
        circle: circle.to_string(),
        member: member.to_string(),
        change,
        epoch: inner
            .groups
            .get(circle)
            .map(|group| group.epoch().as_u64())
            .unwrap_or_default(),
    }
}
