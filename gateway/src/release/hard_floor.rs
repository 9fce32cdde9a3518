//! The rules of DESIGN.md's trust model that hold whatever the policy says. They run before
//! the policy, and a deny here is final.

use cordon_policy::Channel;
use cordon_proto::v1::{Indicator, Protection, Tlp};

use crate::identity::Identity;

/// Why `indicator` may not go to `recipient` on `channel` from the gateway of `member`, if it
/// may not.
pub fn hard_floor(
    member: &str,
    indicator: &Indicator,
    recipient: &Identity,
    channel: Channel,
) -> Option<String> {
    let protected = indicator.protection == Protection::SourceProtected as i32;
    if protected && matches!(recipient, Identity::Agency { .. }) && !recipient.is_agency_of(member)
    {
        return Some(
            "hard floor: a source-protected indicator never reaches another member's agencies"
                .into(),
        );
    }
    if protected && channel != Channel::Circle {
        return Some(
            "hard floor: a source-protected indicator leaves its origin only inside a circle"
                .into(),
        );
    }
    let from_another_member = indicator.originator != member;
    let stays_with_receiver = indicator.no_reshare
        || [Tlp::Amber, Tlp::AmberStrict, Tlp::Red]
            .iter()
            .any(|label| indicator.tlp == *label as i32);
    let leaves_member = !recipient.is_agency_of(member);
    if from_another_member && stays_with_receiver && leaves_member {
        return Some(format!(
            "hard floor: third-party rule: {} from {} stays with {member}",
            handling_label(indicator),
            indicator.originator,
        ));
    }
    // The originator named who may have it (a member named covers its agencies): no one
    // else gets it, here or anywhere it travels, except the originator's own agencies.
    if !indicator.releasable_to.is_empty()
        && !recipient.is_agency_of(&indicator.originator)
        && !indicator
            .releasable_to
            .iter()
            .any(|named| *named == recipient.to_string() || named == recipient.member())
    {
        return Some(format!(
            "hard floor: {} named its recipients in releasableTo and {recipient} is not one",
            indicator.originator
        ));
    }
    // A gateway never needs its own indicators back: cycles end here.
    if from_another_member
        && matches!(recipient, Identity::Member { .. })
        && recipient.member() == indicator.originator
    {
        return Some(format!(
            "hard floor: not sent back to its originator {}",
            indicator.originator
        ));
    }
    None
}

/// The channel of a release: `federation` when it crosses a federation hop (a partner
/// gateway receives it, or it came from another member), else `subscribe`.
pub fn channel_for(originator: &str, recipient: &Identity, own_member: &str) -> Channel {
    match recipient {
        Identity::Member { .. } => Channel::Federation,
        Identity::Agency { .. } if originator != own_member => Channel::Federation,
        Identity::Agency { .. } => Channel::Subscribe,
    }
}

/// `TLP:AMBER`, `TLP:RED, no_reshare`, … for reasons shown to people.
pub fn handling_label(indicator: &Indicator) -> String {
    let tlp = match Tlp::try_from(indicator.tlp).unwrap_or(Tlp::Unspecified) {
        Tlp::Clear => "TLP:CLEAR",
        Tlp::Green => "TLP:GREEN",
        Tlp::Amber => "TLP:AMBER",
        Tlp::AmberStrict => "TLP:AMBER+STRICT",
        Tlp::Red => "TLP:RED",
        Tlp::Unspecified => "TLP unset",
    };
    if indicator.no_reshare {
        format!("{tlp}, no_reshare")
    } else {
        tlp.to_string()
    }
}
