//! Rotating this gateway's own keys in a circle (an MLS self-update commit), and sending a
//! member's messages to the hub.

use cordon_proto::v1::{MessageKind, SendRequest, SendResponse};
use cordon_storage::CircleWrite;
use openmls::prelude::*;

use super::{CircleError, Circles, MAX_ATTEMPTS, STATUS_ACTIVE, mls};

impl Circles {
    /// Rotates this gateway's keys in the circle: a self-update commit, sent to the hub.
    /// When another commit won the epoch, the pending commit is dropped, the follower catches
    /// up, and the rotation is made again on the new epoch.
    pub async fn rotate(&self, name: &str) -> Result<(u64, u32), CircleError> {
        let _one_at_a_time = self.rotating.lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            if *self.shutdown.borrow() {
                return Err(CircleError::Unavailable(
                    "this gateway is stopping; rotate again once it is back".into(),
                ));
            }
            // A commit left pending by an earlier rotation whose answer was lost may still be
            // in the hub's log: let the follower settle it (merge it, or drop it for the
            // commit that won) before making another.
            let unsettled = {
                let inner = self.inner.lock().await;
                let (row, group) = inner.circle(name)?;
                (row.hub != self.context.member && group.pending_commit().is_some())
                    .then(|| group.epoch().as_u64())
            };
            if let Some(epoch) = unsettled {
                self.wait_for_epoch_after(name, epoch).await;
            }
            let mut inner = self.inner.lock().await;
            let signer = self.context.signing_key.clone();
            let circle = name.to_string();
            let own = self.context.member.clone();
            let ((commit, epoch, hub), _) = self
                .apply(&mut inner, |inner| {
                    let (row, group, provider) = inner.circle_mut(&circle)?;
                    if row.status != STATUS_ACTIVE {
                        return Err(CircleError::FailedPrecondition(format!(
                            "circle {circle:?} is {}",
                            row.status
                        )));
                    }
                    if group.pending_commit().is_some() {
                        group
                            .clear_pending_commit(provider.storage())
                            .map_err(|error| CircleError::internal(format!("{error:?}")))?;
                    }
                    let epoch = group.epoch().as_u64();
                    let bundle = group
                        .self_update(provider, signer.as_ref(), LeafNodeParameters::default())
                        .map_err(|error| CircleError::internal(format!("self-update: {error}")))?;
                    let (commit, _, _) = bundle.into_contents();
                    if row.hub != own {
                        // Written ahead: the pending commit survives a crash before the hub
                        // answers.
                        let commit = mls::serialize(&commit).map_err(CircleError::Internal)?;
                        return Ok(((Some(commit), epoch, row.hub), CircleWrite::default()));
                    }
                    // The hub orders its own commit directly.
                    let mut write = CircleWrite::default();
                    inner.merge_own_commit(&circle, &own, &commit, &mut write)?;
                    let new_epoch = inner.circle(&circle)?.0.epoch;
                    Ok(((None, new_epoch, row.hub), write))
                })
                .await?;
            drop(inner);
            let Some(commit) = commit else {
                return Ok((epoch, attempt));
            };
            let sent = self
                .send_to_hub(&hub, name, MessageKind::Commit, vec![commit])
                .await;
            let mut inner = self.inner.lock().await;
            let circle = name.to_string();
            match sent {
                Ok(_) => {
                    let (new_epoch, _) = self
                        .apply(&mut inner, |inner| {
                            let (row, group, provider) = inner.circle_mut(&circle)?;
                            if group.epoch().as_u64() == epoch && group.pending_commit().is_some() {
                                group.merge_pending_commit(provider).map_err(|error| {
                                    CircleError::internal(format!("merging: {error}"))
                                })?;
                            }
                            let updated = cordon_storage::CircleRow {
                                epoch: group.epoch().as_u64(),
                                ..row
                            };
                            inner.rows.insert(circle.clone(), updated.clone());
                            Ok((
                                updated.epoch,
                                CircleWrite {
                                    circle: Some(updated),
                                    ..CircleWrite::default()
                                },
                            ))
                        })
                        .await?;
                    tracing::info!(circle = %name, epoch = new_epoch, attempt, "rotated own keys");
                    return Ok((new_epoch, attempt));
                }
                Err(error) if error.is_epoch_lost() => {
                    // Another commit won this epoch: drop ours and catch up.
                    self.apply(&mut inner, |inner| {
                        if let Some(group) = inner.groups.get_mut(&circle)
                            && group.pending_commit().is_some()
                        {
                            group
                                .clear_pending_commit(inner.provider.storage())
                                .map_err(|error| CircleError::internal(format!("{error:?}")))?;
                        }
                        Ok(((), CircleWrite::default()))
                    })
                    .await?;
                    drop(inner);
                    tracing::info!(circle = %name, epoch, attempt, reason = %error, "commit lost its epoch; catching up to retry");
                    self.wait_for_epoch_after(name, epoch).await;
                }
                Err(error) => return Err(error),
            }
        }
        Err(CircleError::EpochLost(format!(
            "circle {name:?}: rotation lost its epoch {MAX_ATTEMPTS} times"
        )))
    }

    /// Sends this member's `messages` (all of `kind`) to the hub of circle `name`.
    pub(crate) async fn send_to_hub(
        &self,
        hub: &str,
        name: &str,
        kind: MessageKind,
        mut messages: Vec<Vec<u8>>,
    ) -> Result<SendResponse, CircleError> {
        if messages.is_empty() {
            return Err(CircleError::internal("nothing to send"));
        }
        let message = messages.remove(0);
        let mut client = self.connect(hub).await?;
        Ok(client
            .send(SendRequest {
                circle: name.to_string(),
                kind: kind as i32,
                message,
                messages,
            })
            .await?
            .into_inner())
    }
}
