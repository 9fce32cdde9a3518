//! Redaction of indicator fields named by the policy: which paths exist (read
//! from the protocol's descriptors, so a new field is redactable without code)
//! and how a path is removed from an indicator's proto3 JSON form.

use std::collections::HashMap;

use cordon_indicator::disclosure::FIXED_FIELDS;
use prost::Message;
use prost_types::field_descriptor_proto::Type as FieldType;
use prost_types::{DescriptorProto, FileDescriptorSet};
use serde_json::Value;

/// Paths that no policy may redact: the members an originator signs in clear
/// ([`FIXED_FIELDS`]: without `id`, `originator`, `created` and `supersedes` a recipient could
/// not tell which indicator a later retraction or revision refers to, nor who vouches for it; without
/// the validity and the handling markings (`tlp`, `noReshare`, `protection`, `releasableTo`)
/// the next gateway's hard floor would treat an AMBER indicator as unmarked and pass it on),
/// and the signature, which a redaction adjusts itself.
fn never_redacted(first_segment: &str, segments: usize) -> bool {
    first_segment == "signature" || (segments == 1 && FIXED_FIELDS.contains(&first_segment))
}

/// The field tree of `cordon.v1.Indicator`, by JSON name.
#[derive(Debug)]
pub struct RedactionSchema {
    root: MessageFields,
}

#[derive(Debug, Default)]
struct MessageFields {
    /// JSON name -> nested message fields (None for scalars, enums and lists).
    fields: HashMap<String, Option<MessageFields>>,
    /// Proto (snake_case) name -> JSON name, so either spelling is accepted.
    aliases: HashMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedactionError {
    #[error("redaction path {0:?} names no field of an indicator")]
    UnknownPath(String),
    #[error("redaction path {0:?} may not be redacted")]
    Protected(String),
}

impl RedactionSchema {
    /// Builds the schema from the protocol's encoded descriptor set.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<RedactionSchema, prost::DecodeError> {
        let set = FileDescriptorSet::decode(bytes)?;
        let mut messages: HashMap<String, &DescriptorProto> = HashMap::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                messages.insert(format!(".{package}.{}", message.name()), message);
            }
        }
        let root = build_fields(".cordon.v1.Indicator", &messages, 0);
        Ok(RedactionSchema { root })
    }

    /// The protocol's own schema.
    pub fn cordon() -> RedactionSchema {
        // The descriptor set is generated at build time from our own .proto
        // files; failing to decode it is a build defect, not a runtime input.
        RedactionSchema::from_descriptor_set(cordon_proto::FILE_DESCRIPTOR_SET)
            .expect("embedded descriptor set decodes")
    }

    /// Resolves a dotted path (`source`, `source.description`, `vessel.mmsi`)
    /// to its JSON-name segments, or says why it cannot be redacted.
    pub fn resolve(&self, path: &str) -> Result<Vec<String>, RedactionError> {
        let unknown = || RedactionError::UnknownPath(path.to_string());
        let mut segments = Vec::new();
        let mut fields = Some(&self.root);
        for part in path.split('.') {
            let current = fields.ok_or_else(unknown)?;
            let json_name = if current.fields.contains_key(part) {
                part.to_string()
            } else {
                current.aliases.get(part).cloned().ok_or_else(unknown)?
            };
            fields = current.fields.get(&json_name).and_then(Option::as_ref);
            segments.push(json_name);
        }
        if never_redacted(&segments[0], segments.len()) {
            return Err(RedactionError::Protected(path.to_string()));
        }
        Ok(segments)
    }

    /// Checks every path, then removes each from `indicator_json`. Nothing is
    /// removed unless every path is valid (a bad path is a deny, not a partial redaction).
    pub fn apply(
        &self,
        indicator_json: &mut Value,
        paths: &[String],
    ) -> Result<(), RedactionError> {
        let resolved = paths
            .iter()
            .map(|path| self.resolve(path))
            .collect::<Result<Vec<_>, _>>()?;
        for segments in resolved {
            remove_path(indicator_json, &segments);
        }
        Ok(())
    }
}

fn build_fields(
    type_name: &str,
    messages: &HashMap<String, &DescriptorProto>,
    depth: usize,
) -> MessageFields {
    let mut result = MessageFields::default();
    // Depth bounds recursive message types; the protocol has none today.
    let Some(message) = messages.get(type_name).filter(|_| depth < 8) else {
        return result;
    };
    for field in &message.field {
        let json_name = field.json_name().to_string();
        let repeated = field.label() == prost_types::field_descriptor_proto::Label::Repeated;
        let nested = (field.r#type() == FieldType::Message
            && !repeated
            && !field.type_name().starts_with(".google."))
        .then(|| build_fields(field.type_name(), messages, depth + 1));
        result
            .aliases
            .insert(field.name().to_string(), json_name.clone());
        result.fields.insert(json_name, nested);
    }
    result
}

fn remove_path(value: &mut Value, segments: &[String]) {
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut current = value;
    for segment in parents {
        match current.get_mut(segment.as_str()) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(object) = current.as_object_mut() {
        object.remove(last.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(paths: &[&str], expected: Result<Value, RedactionError>) {
        let schema = RedactionSchema::cordon();
        let mut indicator = json!({
            "id": "x", "tlp": "TLP_GREEN", "narrative": "n",
            "source": {"description": "informant", "reliability": "B"},
            "vessel": {"imo": "9234563", "mmsi": "636012345"}
        });
        let paths: Vec<String> = paths.iter().map(|path| path.to_string()).collect();
        let outcome = schema.apply(&mut indicator, &paths).map(|()| indicator);
        assert_eq!(outcome, expected, "paths {paths:?}");
    }

    #[test]
    fn redacts_known_paths_and_refuses_others() {
        check(
            &["source"],
            Ok(json!({"id": "x", "tlp": "TLP_GREEN", "narrative": "n",
                      "vessel": {"imo": "9234563", "mmsi": "636012345"}})),
        );
        check(
            &["source.description", "vessel.mmsi", "tags"],
            Ok(json!({"id": "x", "tlp": "TLP_GREEN", "narrative": "n",
                      "source": {"reliability": "B"}, "vessel": {"imo": "9234563"}})),
        );
        // A path absent from this indicator but present in the schema is fine.
        check(
            &["account.iban"],
            Ok(json!({"id": "x", "tlp": "TLP_GREEN", "narrative": "n",
                      "source": {"description": "informant", "reliability": "B"},
                      "vessel": {"imo": "9234563", "mmsi": "636012345"}})),
        );
        check(
            &["source", "sauce"],
            Err(RedactionError::UnknownPath("sauce".into())),
        );
        check(
            &["narrative.text"],
            Err(RedactionError::UnknownPath("narrative.text".into())),
        );
        check(&["id"], Err(RedactionError::Protected("id".into())));
        check(&["tlp"], Err(RedactionError::Protected("tlp".into())));
        check(
            &["no_reshare"],
            Err(RedactionError::Protected("no_reshare".into())),
        );
        check(
            &["releasableTo"],
            Err(RedactionError::Protected("releasableTo".into())),
        );
        check(
            &["valid_until"],
            Err(RedactionError::Protected("valid_until".into())),
        );
        check(
            &["signature"],
            Err(RedactionError::Protected("signature".into())),
        );
        check(
            &["signature.fields"],
            Err(RedactionError::Protected("signature.fields".into())),
        );
        check(&[""], Err(RedactionError::UnknownPath("".into())));
    }
}
