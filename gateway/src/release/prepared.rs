//! An indicator prepared once for the many recipients it is decided for: the policy's input,
//! built to hold only what the policy reads, and each redacted form made so far.

use cordon_policy::{InputContext, Policy};
use cordon_proto::v1::Indicator;

use crate::identity::Identity;

/// One indicator about to be decided for one or more recipients: its policy input (proto3
/// JSON holding what the policy reads, never the signature's commitments) is built once, on
/// the first decision past the hard floor, and only the recipient and context change between
/// decisions.
pub struct Prepared<'a> {
    pub(super) indicator: &'a Indicator,
    /// The input, with the loaded policy it was projected for.
    input: Option<(Policy, Result<serde_json::Value, String>)>,
    /// The indicator redacted by each list of paths asked for so far (or why it could not
    /// be): recipients whose decisions redact the same paths get the same indicator.
    pub(super) redacted: Vec<(Vec<String>, Result<Indicator, String>)>,
}

impl<'a> Prepared<'a> {
    pub fn new(indicator: &'a Indicator) -> Prepared<'a> {
        Prepared {
            indicator,
            input: None,
            redacted: Vec::new(),
        }
    }

    /// The input of deciding the indicator for `recipient` in `context`.
    pub(super) fn input(
        &mut self,
        policy: &Policy,
        recipient: &Identity,
        context: InputContext<'_>,
    ) -> Result<&mut serde_json::Value, String> {
        let indicator = self.indicator;
        // Built for another load of the policy (a reload between two recipients: the new
        // one may read more), it is built again.
        if !self
            .input
            .as_ref()
            .is_some_and(|(built_for, _)| built_for.same_load(policy))
        {
            self.input = None;
        }
        let (_, input) = self.input.get_or_insert_with(|| {
            // Only what the policy reads is built: for the reference policy not the
            // signature, whose commitments are most of an indicator's JSON.
            let input = policy
                .indicator_input(indicator)
                .map(|mut indicator_json| {
                    without_commitments(&mut indicator_json);
                    cordon_policy::decision_input(indicator_json, serde_json::Value::Null, context)
                })
                .map_err(|error| format!("indicator does not encode as JSON: {error}"));
            (policy.clone(), input)
        });
        let input = input.as_mut().map_err(|error| error.clone())?;
        // Only the recipient and the context differ from one decision to the next.
        input["recipient"] = policy.recipient_input(&recipient.to_string());
        input["context"] = cordon_policy::context_input(context);
        Ok(input)
    }
}

/// The policy decides on the indicator, not on its commitments: they stay out of its input
/// (should a policy read the signature whole), and a redaction takes them from the indicator
/// itself.
pub(super) fn without_commitments(indicator_json: &mut serde_json::Value) {
    if let Some(signature) = indicator_json
        .get_mut("signature")
        .and_then(serde_json::Value::as_object_mut)
    {
        signature.remove("fields");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::tests::policy;
    use cordon_policy::Channel;
    use cordon_proto::v1::Tlp;

    fn indicator() -> Indicator {
        crate::release::tests::indicator("GH", Tlp::Green)
    }

    #[test]
    fn the_input_holds_what_the_policy_reads_and_never_the_commitments() {
        let read = |source: &str| {
            let policy = policy(source);
            let mut subject = indicator();
            if let Some(signature) = subject.signature.as_mut() {
                signature.fields.push(cordon_proto::v1::FieldCommitment {
                    path: "source".into(),
                    digest: vec![1; 32],
                    salt: vec![2; 16],
                });
            }
            let mut prepared = Prepared::new(&subject);
            let context = InputContext {
                gateway: "GH",
                channel: Channel::Subscribe,
                now: "2026-11-25T00:00:00Z",
            };
            let recipient = Identity::parse("NG").unwrap();
            prepared
                .input(&policy, &recipient, context)
                .unwrap()
                .clone()
        };
        let input = read(
            r#"decision := {"allow": input.indicator.tlp == "TLP_GREEN", "redact": [], "reasons": []}"#,
        );
        assert_eq!(input["indicator"], serde_json::json!({"tlp": "TLP_GREEN"}));
        assert_eq!(input["recipient"]["id"], "NG");
        assert_eq!(input["context"]["channel"], "subscribe");
        // Read whole: all of it but the commitments.
        let input = read(
            r#"decision := {"allow": count(input.indicator) > 0, "redact": [], "reasons": []}"#,
        );
        assert_eq!(input["indicator"]["vessel"]["imo"], "9234563");
        assert_eq!(input["indicator"]["signature"]["keyId"], "GH:00");
        assert!(input["indicator"]["signature"].get("fields").is_none());
    }
}
