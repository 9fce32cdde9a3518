//! Joining a circle from its hub's Welcome, after checking who made it and who is in it.

use std::sync::Arc;

use cordon_storage::CircleRow;
use openmls::prelude::*;

use super::{CircleError, Circles, STATUS_ACTIVE, is_circle_name, mls};
use crate::clock::now_micros;

impl Circles {
    /// Joins a circle from the hub's Welcome, after checking every member's credential
    /// against the pinned keys and that the Welcome comes from the hub itself.
    pub async fn join(
        self: &Arc<Self>,
        hub: &str,
        name: &str,
        welcome: &[u8],
        position: u64,
    ) -> Result<(), CircleError> {
        if !is_circle_name(name) {
            return Err(CircleError::invalid("circle", "not a circle name"));
        }
        let message =
            mls::deserialize(welcome).map_err(|error| CircleError::invalid("welcome", error))?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(CircleError::invalid("welcome", "not an MLS Welcome"));
        };
        let expected_group = format!("{hub}/{name}").into_bytes();
        // Consent: only a hub this gateway lists under [[peers]] (which it must reach to
        // follow the circle anyway) may bring it into a circle.
        if self.peer(hub).is_err() {
            return Err(CircleError::FailedPrecondition(format!(
                "{hub} is not under [[peers]]: this gateway joins only circles of hubs it lists"
            )));
        }
        let mut inner = self.inner.lock().await;
        if let Some(row) = inner.rows.get(name) {
            if row.hub == hub && row.status == STATUS_ACTIVE && row.position >= position {
                // Taken before; the hub did not hear so and delivers it again.
                return Ok(());
            }
            if row.status == STATUS_ACTIVE || row.hub != hub {
                return Err(CircleError::AlreadyExists(format!(
                    "this gateway already has a circle {name:?} (hub {})",
                    row.hub
                )));
            }
        }
        let pinned = self.context.pinned.clone();
        let circle = name.to_string();
        let hub_id = hub.to_string();
        self.apply(&mut inner, |inner| {
            if let Some(old) = inner.groups.remove(&circle) {
                let mut old = old;
                old.delete(inner.provider.storage()).map_err(|error| {
                    CircleError::internal(format!("deleting the old group: {error:?}"))
                })?;
            }
            let join_config = MlsGroupJoinConfig::builder()
                .use_ratchet_tree_extension(true)
                .build();
            let staged =
                StagedWelcome::new_from_welcome(&inner.provider, &join_config, welcome, None)
                    .map_err(|error| CircleError::Refused(format!("Welcome refused: {error}")))?;
            let sender = staged
                .welcome_sender()
                .map_err(|error| CircleError::Refused(format!("Welcome sender: {error}")))?;
            let sender_id = pinned
                .check(sender.credential(), sender.signature_key().as_slice())
                .map_err(|reason| {
                    CircleError::PermissionDenied(format!("Welcome sender: {reason}"))
                })?;
            if sender_id != hub_id {
                return Err(CircleError::PermissionDenied(format!(
                    "the Welcome was made by {sender_id}, not by the hub {hub_id} that sent it"
                )));
            }
            pinned.check_members(staged.members()).map_err(|reason| {
                CircleError::PermissionDenied(format!("circle member: {reason}"))
            })?;
            let group = staged
                .into_group(&inner.provider)
                .map_err(|error| CircleError::Refused(format!("joining: {error}")))?;
            if group.group_id().as_slice() != expected_group.as_slice() {
                return Err(CircleError::PermissionDenied(format!(
                    "the Welcome is for group {:?}, not {hub_id}'s circle {circle:?}",
                    String::from_utf8_lossy(group.group_id().as_slice())
                )));
            }
            let row = CircleRow {
                name: circle.clone(),
                group_id: expected_group.clone(),
                hub: hub_id.clone(),
                epoch: group.epoch().as_u64(),
                position,
                status: STATUS_ACTIVE.into(),
                created_micros: now_micros(),
            };
            Ok(((), inner.install(group, row)))
        })
        .await?;
        drop(inner);
        tracing::info!(circle = %name, %hub, position, "joined circle");
        self.follow(name);
        Ok(())
    }
}
