//! Publishing source-protected indicators into a circle: the origin's policy must allow
//! every member, each indicator becomes one MLS application message, and the hub orders
//! them in its log (the hub's own at once; a member's in one request to the hub).

use cordon_policy::Channel;
use cordon_proto::v1::{Accepted, Indicator, MessageKind, Protection, PublishResponse};
use cordon_storage::{CircleWrite, CircleWriteOutcome, NewIndicator};
use openmls::prelude::*;
use prost::Message as _;

use super::{CircleError, Circles, MAX_ATTEMPTS, STATUS_ACTIVE, circle_indicator, mls};
use crate::identity::Identity;

impl Circles {
    /// Publishes source-protected indicators into a circle: the origin's policy must allow
    /// every current member (channel "circle", no redaction), else nothing is sent. Each
    /// indicator becomes one MLS application message, ordered by the hub.
    pub async fn publish(
        &self,
        publisher: &Identity,
        name: &str,
        indicators: Vec<Indicator>,
        now_rfc3339: &str,
        created: pbjson_types::Timestamp,
        warnings: Vec<Vec<String>>,
    ) -> Result<PublishResponse, CircleError> {
        let (members, hub) = {
            let inner = self.inner.lock().await;
            let (row, group) = inner.circle(name)?;
            if row.status != STATUS_ACTIVE {
                return Err(CircleError::FailedPrecondition(format!(
                    "circle {name:?} is {}",
                    row.status
                )));
            }
            let members: Vec<String> = mls::member_ids(group)
                .into_iter()
                .filter(|member| *member != self.context.member)
                .collect();
            (members, row.hub.clone())
        };
        let mut signed = Vec::with_capacity(indicators.len());
        for mut indicator in indicators {
            if indicator.id.is_empty() {
                indicator.id = uuid::Uuid::now_v7().to_string();
            }
            indicator.originator = self.context.member.clone();
            indicator.publisher = publisher.to_string();
            indicator.created = Some(created);
            indicator.protection = Protection::SourceProtected as i32;
            self.context
                .signing_key
                .sign(&mut indicator)
                .map_err(|error| CircleError::InvalidField {
                    field: "indicators",
                    message: format!("{}: {error}", indicator.id),
                })?;
            signed.push(indicator);
        }
        // Every member, every indicator: one refusal stops the whole call.
        let mut refused = Vec::new();
        let mut records = Vec::new();
        for indicator in &signed {
            for member in &members {
                let recipient = Identity::Member {
                    member: member.clone(),
                };
                let release = self.context.releaser.release(
                    indicator,
                    &recipient,
                    Channel::Circle,
                    now_rfc3339,
                );
                self.context.releaser.record(&release.record);
                let record = release.record;
                if !record.allow {
                    refused.push(format!("{member} ({})", record.reasons.join("; ")));
                } else if !record.redact.is_empty() {
                    refused.push(format!(
                        "{member} (the policy would redact {}; a circle message is the same \
                         for every member)",
                        record.redact.join(", ")
                    ));
                }
                records.push(record);
            }
        }
        self.context.decision_log.write(&records).await?;
        if !refused.is_empty() {
            refused.dedup();
            return Err(CircleError::FailedPrecondition(format!(
                "circle {name:?}: the policy refuses {}; nothing was sent",
                refused.join(", ")
            )));
        }
        let sequences = if hub == self.context.member {
            // The hub orders its own messages: the whole call in one transaction.
            let outcome = self.hub_publish(name, &signed, &members).await?;
            signed
                .iter()
                .map(|indicator| sequence_of(&outcome, &indicator.id))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            // A member sends the whole call to the hub in one request, logged there in one
            // transaction.
            self.refuse_held(&signed).await?;
            self.send_indicators(name, &hub, &signed, &members).await?
        };
        let accepted: Vec<Accepted> = signed
            .iter()
            .zip(warnings)
            .zip(sequences)
            .map(|((indicator, warnings), sequence)| Accepted {
                id: indicator.id.clone(),
                sequence,
                warnings,
            })
            .collect();
        tracing::info!(publisher = %publisher, circle = %name, count = accepted.len(), "published into circle");
        Ok(PublishResponse { accepted })
    }

    /// An id already held here is refused before anything is encrypted.
    async fn refuse_held(&self, indicators: &[Indicator]) -> Result<(), CircleError> {
        for indicator in indicators {
            if self.context.store.indicator(&indicator.id).await?.is_some() {
                return Err(CircleError::AlreadyExists(format!(
                    "indicator id {} is already held; nothing was sent",
                    indicator.id
                )));
            }
        }
        Ok(())
    }

    /// The hub's own indicators: one application message each, appended to the log with the
    /// indicators in one transaction.
    async fn hub_publish(
        &self,
        name: &str,
        signed: &[Indicator],
        checked: &[String],
    ) -> Result<CircleWriteOutcome, CircleError> {
        let mut inner = self.inner.lock().await;
        // Under the lock, so that a concurrent publish of the same id cannot be stored
        // between the check and this call's messages going out.
        self.refuse_held(signed).await?;
        let signer = self.context.signing_key.clone();
        let own = self.context.member.clone();
        let circle = name.to_string();
        let ((), outcome) = self
            .apply(&mut inner, |inner| {
                let (row, group, _) = inner.circle_mut(&circle)?;
                self.require_hub(&row)?;
                same_members(group, &own, checked, &circle)?;
                let epoch = group.epoch().as_u64();
                let mut write = CircleWrite::default();
                for indicator in signed {
                    let (_, group, provider) = inner.circle_mut(&circle)?;
                    let message = group
                        .create_message(provider, signer.as_ref(), &indicator.encode_to_vec())
                        .map_err(|error| CircleError::internal(format!("encrypting: {error}")))?;
                    let message = mls::serialize(&message).map_err(CircleError::Internal)?;
                    inner.append_to_log(
                        &circle,
                        epoch,
                        &own,
                        MessageKind::Application,
                        message,
                        &mut write,
                    )?;
                    write.indicators.push(circle_indicator(indicator, None)?);
                }
                write.indicators_circle = Some(circle.clone());
                Ok(((), write))
            })
            .await?;
        Ok(outcome)
    }

    /// A member's indicators, one application message each, sent to the hub in one request;
    /// returns their sequences in the local feed. The sender's ratchet and the indicators (in
    /// the outbox) are written before the ciphertexts leave.
    async fn send_indicators(
        &self,
        name: &str,
        hub: &str,
        indicators: &[Indicator],
        checked: &[String],
    ) -> Result<Vec<u64>, CircleError> {
        let payloads: Vec<Vec<u8>> = indicators
            .iter()
            .map(prost::Message::encode_to_vec)
            .collect();
        let stored: Vec<NewIndicator> = indicators
            .iter()
            .map(|indicator| circle_indicator(indicator, None))
            .collect::<Result<_, _>>()?;
        for _attempt in 1..=MAX_ATTEMPTS {
            let mut inner = self.inner.lock().await;
            let signer = self.context.signing_key.clone();
            let circle = name.to_string();
            let own = self.context.member.clone();
            let ((messages, epoch), _) = self
                .apply(&mut inner, |inner| {
                    let (row, group, provider) = inner.circle_mut(&circle)?;
                    if row.hub == own {
                        // The hub's own indicators go through `hub_publish`.
                        return Err(CircleError::internal("the hub does not send to itself"));
                    }
                    same_members(group, &own, checked, &circle)?;
                    let epoch = group.epoch().as_u64();
                    let mut messages = Vec::with_capacity(payloads.len());
                    let mut outbox = Vec::with_capacity(payloads.len());
                    for payload in &payloads {
                        let message = group
                            .create_message(provider, signer.as_ref(), payload)
                            .map_err(|error| {
                                CircleError::internal(format!("encrypting: {error}"))
                            })?;
                        let message = mls::serialize(&message).map_err(CircleError::Internal)?;
                        // Written ahead: no key is ever used twice, and the indicator waits
                        // in the outbox until the hub's answer or its log says what became
                        // of it.
                        outbox.push((circle.clone(), digest(&message), Some(payload.to_vec())));
                        messages.push(message);
                    }
                    Ok((
                        (messages, epoch),
                        CircleWrite {
                            outbox,
                            ..CircleWrite::default()
                        },
                    ))
                })
                .await?;
            drop(inner);
            let sent: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = messages
                .iter()
                .map(|message| (name.to_string(), digest(message), None))
                .collect();
            match self
                .send_to_hub(hub, name, MessageKind::Application, messages)
                .await
            {
                Ok(_) => {
                    let outcome = self
                        .context
                        .store
                        .circle_write(CircleWrite {
                            indicators: stored.clone(),
                            indicators_circle: Some(name.to_string()),
                            outbox: sent,
                            ..CircleWrite::default()
                        })
                        .await?;
                    let mut sequences = Vec::with_capacity(stored.len());
                    for item in &stored {
                        if outcome.duplicates.contains(&item.id) {
                            // The follower stored it first, from the outbox.
                            let held = self.context.store.indicator(&item.id).await?;
                            if let Some(held) = held.filter(|held| held.payload == item.payload) {
                                sequences.push(held.sequence);
                                continue;
                            }
                        }
                        sequences.push(sequence_of(&outcome, &item.id)?);
                    }
                    return Ok(sequences);
                }
                Err(error) if error.is_epoch_lost() => {
                    // Refused before any was processed: none is in the hub's log.
                    self.context
                        .store
                        .circle_write(CircleWrite {
                            outbox: sent,
                            ..CircleWrite::default()
                        })
                        .await?;
                    tracing::info!(circle = %name, epoch, reason = %error, "messages lost their epoch; catching up to retry");
                    self.wait_for_epoch_after(name, epoch).await;
                }
                Err(error) => return Err(error),
            }
        }
        Err(CircleError::EpochLost(format!(
            "circle {name:?}: the messages lost their epoch {MAX_ATTEMPTS} times"
        )))
    }
}

/// The outbox key of an MLS message: its SHA-256.
pub fn digest(message: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(message).to_vec()
}

/// Encryption only for the members the policy was asked about: a member added since (while
/// a sender caught up, or by a concurrent add at the hub) must not read it.
fn same_members(
    group: &MlsGroup,
    own: &str,
    asked: &[String],
    circle: &str,
) -> Result<(), CircleError> {
    let mut now: Vec<String> = mls::member_ids(group)
        .into_iter()
        .filter(|member| member != own)
        .collect();
    let mut asked = asked.to_vec();
    now.sort();
    asked.sort();
    if now != asked {
        return Err(CircleError::FailedPrecondition(format!(
            "circle {circle:?}: its members changed since the policy was asked (asked for {}; \
             now {}); this indicator was not sent: publish it again",
            asked.join(", "),
            now.join(", ")
        )));
    }
    Ok(())
}

fn sequence_of(outcome: &CircleWriteOutcome, id: &str) -> Result<u64, CircleError> {
    if let Some((_, sequence)) = outcome.stored.iter().find(|(stored, _)| stored == id) {
        return Ok(*sequence);
    }
    if outcome.conflicts.iter().any(|conflict| conflict == id)
        || outcome.duplicates.iter().any(|duplicate| duplicate == id)
    {
        return Err(CircleError::AlreadyExists(format!(
            "indicator id {id} is already held"
        )));
    }
    Err(CircleError::internal(format!(
        "indicator {id} was not stored"
    )))
}
