//! Deterministic STIX identifiers.
//!
//! STIX 2.1 wants UUIDv4 for domain, relationship and meta objects and UUIDv5 (in the STIX
//! namespace, over the object's ID contributing properties) for cyber-observable objects.
//! Cordon's own ids are UUIDv7, so STIX ids are derived from them: the same Cordon indicator
//! maps to the same STIX ids on every gateway and in every export, and the Cordon id itself
//! travels in the indicator's extension so that the way back is exact.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The namespace STIX 2.1 (section 2.9) gives for UUIDv5 ids of cyber-observable objects.
pub const STIX_SCO_NAMESPACE: Uuid = uuid::uuid!("00abedb4-aa42-466c-9c01-fed23315a9b7");

/// `{object_type}--{uuid}` with a UUID in version 4 form whose 122 free bits come from
/// SHA-256 over a domain tag, the object type and `key`: stable, collision-resistant, and
/// valid where the specification asks for UUIDv4.
pub fn domain_id(object_type: &str, key: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"cordon-stix/1\n");
    hash.update(object_type.as_bytes());
    hash.update(b"\n");
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
    format!("{object_type}--{uuid}")
}

/// `{object_type}--{uuidv5}` over the canonical JSON (RFC 8785 for these values: keys sorted,
/// no insignificant white space) of the ID contributing properties, as STIX 2.1 section 2.9
/// prescribes for cyber-observable objects.
pub fn observable_id(object_type: &str, contributing: &Map<String, Value>) -> String {
    let uuid = Uuid::new_v5(&STIX_SCO_NAMESPACE, canonical_json(contributing).as_bytes());
    format!("{object_type}--{uuid}")
}

/// Object keys in sorted order, compact separators. The values here are strings, booleans,
/// integers and lists of strings, for which this is RFC 8785's canonical form.
fn canonical_json(object: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort();
    let mut out = String::from("{");
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(key.clone()).to_string());
        out.push(':');
        out.push_str(&object[key].to_string());
    }
    out.push('}');
    out
}

/// Whether `id` has the STIX form `{object_type}--{uuid}` with an RFC 4122 UUID.
pub fn is_valid(id: &str, object_type: &str) -> bool {
    id.strip_prefix(object_type)
        .and_then(|rest| rest.strip_prefix("--"))
        .and_then(|uuid| Uuid::try_parse(uuid).ok())
        .is_some_and(|uuid| uuid.get_variant() == uuid::Variant::RFC4122)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn domain_ids_are_stable_version_4_and_distinct_per_type_and_key() {
        let a = domain_id("indicator", "0193a0c4-0000-7000-8000-000000000001");
        assert_eq!(
            a,
            domain_id("indicator", "0193a0c4-0000-7000-8000-000000000001")
        );
        let uuid = Uuid::parse_str(a.strip_prefix("indicator--").unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(
            a,
            domain_id("indicator", "0193a0c4-0000-7000-8000-000000000002")
        );
        assert_ne!(
            a.strip_prefix("indicator--"),
            domain_id("relationship", "0193a0c4-0000-7000-8000-000000000001")
                .strip_prefix("relationship--")
        );
    }

    /// The id the OASIS Python library (stix2 3.0.1, `EmailAddress(value=...)`) gives this
    /// observable: a second implementation of the same rule.
    #[test]
    fn observable_ids_match_the_oasis_python_library() {
        let contributing = json!({"value": "john@example.com"});
        assert_eq!(
            observable_id("email-addr", contributing.as_object().unwrap()),
            "email-addr--7165e2a9-671f-585d-b1e1-ca59c671d934"
        );
    }

    #[test]
    fn observable_ids_ignore_key_order() {
        let a = json!({"imo": "9319466", "mmsi": "636012345"});
        let mut b = Map::new();
        b.insert("mmsi".into(), json!("636012345"));
        b.insert("imo".into(), json!("9319466"));
        assert_eq!(
            observable_id("salw-vessel", a.as_object().unwrap()),
            observable_id("salw-vessel", &b)
        );
    }

    #[test]
    fn validity_checks_type_separator_and_uuid() {
        assert!(is_valid(
            "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "indicator"
        ));
        assert!(!is_valid(
            "indicator-8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "indicator"
        ));
        assert!(!is_valid(
            "malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "indicator"
        ));
        assert!(!is_valid("indicator--not-a-uuid", "indicator"));
    }
}
