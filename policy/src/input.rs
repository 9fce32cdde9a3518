//! The policy's input, built in one place: `{indicator, recipient, context}` as DESIGN.md's
//! policy contract gives it. The gateway, the built-in corpus, `cordon policy diff`, the tests
//! and the benchmark all build it here, so that a policy sees the same shape whoever asks.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::Policy;

/// Where a release goes; the policy sees it as `input.context.channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A recipient's Subscribe or Get.
    Subscribe,
    /// A release that crosses a federation hop: to a partner gateway, or of an indicator
    /// received from another member.
    Federation,
    /// An MLS circle of trusted partners.
    Circle,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Subscribe, Channel::Federation, Channel::Circle];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Subscribe => "subscribe",
            Channel::Federation => "federation",
            Channel::Circle => "circle",
        }
    }

    /// The channel named `name` (`subscribe`, `federation`, `circle`).
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL
            .into_iter()
            .find(|channel| channel.as_str() == name)
    }

    /// The position of this channel in [`Channel::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// `input.context`: who decides, on which channel, and when (RFC 3339).
#[derive(Debug, Clone, Copy)]
pub struct InputContext<'a> {
    /// The deciding gateway's member id.
    pub gateway: &'a str,
    pub channel: Channel,
    pub now: &'a str,
}

/// `input.recipient` for the identity `id` (`GH` for a member's gateway, `GH/customs` for an
/// agency), from the board's `data.recipients[id]` facts, if any, overlaid with what the
/// identity itself says: its `id`, `kind` and `member`. The identity wins, except that data
/// may call a member an `organization`.
pub fn recipient_input(facts: Option<&Map<String, Value>>, id: &str) -> Value {
    let mut object = facts.cloned().unwrap_or_default();
    let (kind, member) = match id.split_once('/') {
        Some((member, _agency)) => ("agency", member),
        None if object.get("kind").and_then(Value::as_str) == Some("organization") => {
            ("organization", id)
        }
        None => ("member", id),
    };
    object.insert("id".into(), Value::String(id.to_owned()));
    object.insert("kind".into(), Value::String(kind.to_owned()));
    object.insert("member".into(), Value::String(member.to_owned()));
    Value::Object(object)
}

/// The whole input of one decision: the indicator (proto3 JSON), the recipient (as
/// [`recipient_input`] builds it) and the context.
pub fn decision_input(indicator: Value, recipient: Value, context: InputContext<'_>) -> Value {
    // Built by moving the values in: `json!` would serialize a copy of the indicator.
    let mut input = Map::new();
    input.insert("indicator".into(), indicator);
    input.insert("recipient".into(), recipient);
    input.insert("context".into(), context_input(context));
    Value::Object(input)
}

/// `input.context`.
pub fn context_input(context: InputContext<'_>) -> Value {
    json!({
        "gateway": context.gateway,
        "channel": context.channel.as_str(),
        "now": context.now,
    })
}

impl Policy {
    /// `input.recipient` for `id` under this policy's data (see [`recipient_input`]).
    pub fn recipient_input(&self, id: &str) -> Value {
        recipient_input(self.recipient_data(id), id)
    }

    /// The input of deciding `indicator` for the identity `recipient` (see [`decision_input`]).
    pub fn decision_input(
        &self,
        indicator: Value,
        recipient: &str,
        context: InputContext<'_>,
    ) -> Value {
        decision_input(indicator, self.recipient_input(recipient), context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(facts: Value, id: &str, expected: Value) {
        let facts = facts.as_object().cloned();
        assert_eq!(recipient_input(facts.as_ref(), id), expected, "{id}");
    }

    #[test]
    fn the_identity_wins_over_data_except_organisations() {
        check(
            json!(null),
            "NG",
            json!({"id": "NG", "kind": "member", "member": "NG"}),
        );
        check(
            json!({"kind": "organization", "trust": 2}),
            "UNODC",
            json!({"id": "UNODC", "kind": "organization", "member": "UNODC", "trust": 2}),
        );
        check(
            json!({"kind": "member", "id": "XX", "member": "XX", "country": "NG"}),
            "NG/customs",
            json!({"id": "NG/customs", "kind": "agency", "member": "NG", "country": "NG"}),
        );
        check(
            json!({"kind": "agency"}),
            "SN",
            json!({"id": "SN", "kind": "member", "member": "SN"}),
        );
    }

    #[test]
    fn channels_round_trip_by_name() {
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
            assert_eq!(Channel::ALL[channel.index()], channel);
        }
        assert_eq!(Channel::parse("email"), None);
        let context = InputContext {
            gateway: "GH",
            channel: Channel::Circle,
            now: "2026-11-25T00:00:00Z",
        };
        let input = decision_input(json!({"id": "x"}), json!({"id": "NG"}), context);
        assert_eq!(
            input,
            json!({"indicator": {"id": "x"}, "recipient": {"id": "NG"},
                   "context": {"gateway": "GH", "channel": "circle", "now": "2026-11-25T00:00:00Z"}})
        );
    }
}
