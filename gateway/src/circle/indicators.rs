//! The indicators a circle carries: how one is checked after decryption, and the feed row
//! it is stored as.

use cordon_proto::v1::{Indicator, Protection};
use cordon_storage::NewIndicator;
use prost::Message as _;

use super::{CircleContext, CircleError};
use crate::clock::micros_of;

/// The feed row of a source-protected indicator held in a circle.
pub fn circle_indicator(
    indicator: &Indicator,
    via: Option<&str>,
) -> Result<NewIndicator, CircleError> {
    let kind = cordon_indicator::kind_name(indicator)
        .ok_or_else(|| CircleError::Refused("indicator has no kind".into()))?;
    let created = indicator
        .created
        .as_ref()
        .ok_or_else(|| CircleError::Refused("indicator has no creation time".into()))?;
    Ok(NewIndicator {
        id: indicator.id.clone(),
        originator: indicator.originator.clone(),
        kind: kind.to_string(),
        created_micros: micros_of(created),
        supersedes: (!indicator.supersedes.is_empty()).then(|| indicator.supersedes.clone()),
        via: via.map(str::to_string),
        payload: indicator.encode_to_vec(),
    })
}

/// Checks a decrypted circle indicator: the MLS sender is its originator, it carries the
/// originator's valid signature, it is source-protected and valid.
pub fn check_circle_indicator(
    context: &CircleContext,
    sender: &str,
    plaintext: &[u8],
) -> Result<Indicator, String> {
    let mut indicator =
        Indicator::decode(plaintext).map_err(|error| format!("not an indicator: {error}"))?;
    if indicator.originator != sender {
        return Err(format!(
            "sent by {sender} but claims originator {:?}",
            indicator.originator
        ));
    }
    if indicator.protection != Protection::SourceProtected as i32 {
        return Err("a circle indicator must be source-protected".into());
    }
    // A circle message is the originator's own, whole: nothing in it is withheld, and a
    // salt that came without its field is not kept.
    let withheld = if sender == context.member {
        crate::signing::verify_received(&mut indicator, sender, context.signing_key.public_key())
    } else {
        context.pinned.keys.verify_received(&mut indicator)
    }
    .map_err(|error| format!("signature: {error}"))?;
    if !withheld.is_empty() {
        return Err(format!(
            "a circle indicator travels whole, but {} are withheld",
            withheld.join(", ")
        ));
    }
    if let Err(errors) = cordon_indicator::validate_indicator(&indicator, &context.limits) {
        let details: Vec<String> = errors
            .iter()
            .map(|error| format!("{}: {}", error.path, error.message))
            .collect();
        return Err(format!("invalid: {}", details.join("; ")));
    }
    if indicator.created.is_none() || cordon_indicator::kind_name(&indicator).is_none() {
        return Err("indicator has no kind or creation time".into());
    }
    Ok(indicator)
}
