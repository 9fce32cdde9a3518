//! STIX 2.1 for Cordon: every indicator maps to one STIX `indicator` with a pattern over its
//! SALW observable, the observable as an extension-defined cyber-observable object, and their
//! relationships ([`mapping`]); patterns are written and read in [`pattern`]; the shared
//! vocabulary (identities, extension and marking definitions) is in [`objects`]; MISP events
//! are read in [`misp`].
//!
//! Pure functions over JSON values: no gRPC, no SQL. Cordon indicators are handled in their
//! proto3 JSON form, the public format of `cordon publish` and `cordon subscribe`.

pub mod ids;
pub mod kinds;
pub mod mapping;
pub mod misp;
pub mod objects;
pub mod pattern;

use serde_json::Value;

pub use mapping::{
    Export, Imported, MapError, cordon_id_candidates, from_stix, indicator_id, to_stix,
};

/// Something in an import that did not become a Cordon indicator, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unmapped {
    /// The STIX id (or, for MISP, the attribute's uuid or type).
    pub id: String,
    pub reason: String,
}

/// What an import read: the indicators to publish and a report of the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Import {
    pub indicators: Vec<Imported>,
    pub unmapped: Vec<Unmapped>,
}

/// Objects Cordon reads for their references only: nothing is lost by not importing them.
const SUPPORTING: &[&str] = &["identity", "marking-definition", "extension-definition"];

/// A bundle or TAXII envelope that cannot be read at all. Names the object and property; an
/// import that meets one stores nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BundleError(pub String);

/// Reads a STIX 2.1 bundle (`{"type": "bundle", "id": ..., "objects": [...]}`).
pub fn read_bundle(bundle: &Value) -> Result<Import, BundleError> {
    let fields = bundle
        .as_object()
        .ok_or_else(|| BundleError("bundle: expected a JSON object".into()))?;
    if fields.get("type").and_then(Value::as_str) != Some("bundle") {
        return Err(BundleError("type: expected \"bundle\"".into()));
    }
    if let Some(version) = fields.get("spec_version") {
        return Err(BundleError(format!(
            "spec_version: a bundle with spec_version {version} is STIX 2.0; STIX 2.1 only"
        )));
    }
    let id = fields.get("id").and_then(Value::as_str).unwrap_or_default();
    if !ids::is_valid(id, "bundle") {
        return Err(BundleError(format!("id: {id:?} is not bundle--<uuid>")));
    }
    read_objects(fields.get("objects").unwrap_or(&Value::Null), "objects")
}

/// Reads a TAXII 2.1 envelope (`{"objects": [...]}`), the body of an add-objects request.
pub fn read_envelope(envelope: &Value) -> Result<Import, BundleError> {
    let fields = envelope
        .as_object()
        .ok_or_else(|| BundleError("envelope: expected a JSON object".into()))?;
    read_objects(fields.get("objects").unwrap_or(&Value::Null), "objects")
}

fn read_objects(objects: &Value, field: &str) -> Result<Import, BundleError> {
    let objects = match objects {
        Value::Null => &Vec::new(),
        Value::Array(objects) => objects,
        _ => return Err(BundleError(format!("{field}: expected a list"))),
    };
    for (i, object) in objects.iter().enumerate() {
        check_common(object).map_err(|e| BundleError(format!("{field}[{i}].{e}")))?;
    }
    let mapped: Vec<(usize, Result<Imported, MapError>)> = objects
        .iter()
        .enumerate()
        .filter(|(_, o)| o["type"] == "indicator")
        .map(|(i, o)| (i, from_stix(o)))
        .collect();
    let mapped_ids: Vec<String> = mapped
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|m| m.stix_id.clone()))
        .collect();
    let mut import = Import::default();
    for (i, result) in mapped {
        match result {
            Ok(imported) => import.indicators.push(imported),
            Err(e) => import.unmapped.push(Unmapped {
                id: objects[i]["id"].as_str().unwrap_or_default().to_string(),
                reason: e.to_string(),
            }),
        }
    }
    for object in objects {
        let object_type = object["type"].as_str().unwrap_or_default();
        let id = object["id"].as_str().unwrap_or_default();
        let reason = match object_type {
            "indicator" => continue,
            t if SUPPORTING.contains(&t) || kinds::by_sco(t).is_some() => continue,
            "relationship" => {
                let source = object["source_ref"].as_str().unwrap_or_default();
                let target = object["target_ref"].as_str().unwrap_or_default();
                let target_type = target.split("--").next().unwrap_or_default();
                let kept = mapped_ids.iter().any(|m| m == source)
                    && ((object["relationship_type"] == "related-to"
                        && kinds::by_sco(target_type).is_some())
                        || object["relationship_type"] == "derived-from");
                if kept {
                    continue;
                }
                format!(
                    "relationship {} from {source} to {target} has no Cordon mapping",
                    object["relationship_type"].as_str().unwrap_or_default()
                )
            }
            other => format!("{other} objects have no Cordon mapping"),
        };
        import.unmapped.push(Unmapped {
            id: id.to_string(),
            reason,
        });
    }
    Ok(import)
}

/// The common properties every STIX 2.1 object must have right: a type name, an id of that
/// type with an RFC 4122 UUID, and spec_version 2.1 where it is given (required on all but
/// cyber-observables).
fn check_common(object: &Value) -> Result<(), String> {
    let fields = object
        .as_object()
        .ok_or_else(|| "object: expected a JSON object".to_string())?;
    let object_type = fields
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| "type: required".to_string())?;
    let type_ok = (3..=250).contains(&object_type.len())
        && object_type
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !object_type.starts_with('-')
        && !object_type.ends_with('-')
        && !object_type.contains("--");
    if !type_ok {
        return Err(format!("type: {object_type:?} is not a STIX type name"));
    }
    let id = fields.get("id").and_then(Value::as_str).unwrap_or_default();
    if !ids::is_valid(id, object_type) {
        return Err(format!("id: {id:?} is not {object_type}--<uuid>"));
    }
    let is_observable = kinds::by_sco(object_type).is_some() || !is_domain_type(object_type);
    match fields.get("spec_version").and_then(Value::as_str) {
        Some("2.1") => Ok(()),
        None if is_observable => Ok(()),
        None => Err("spec_version: required (\"2.1\")".to_string()),
        Some(other) => Err(format!("spec_version: {other} is not supported (2.1 only)")),
    }
}

/// The STIX 2.1 domain, relationship and meta object types (which must carry spec_version).
fn is_domain_type(object_type: &str) -> bool {
    matches!(
        object_type,
        "attack-pattern"
            | "campaign"
            | "course-of-action"
            | "grouping"
            | "identity"
            | "incident"
            | "indicator"
            | "infrastructure"
            | "intrusion-set"
            | "location"
            | "malware"
            | "malware-analysis"
            | "note"
            | "observed-data"
            | "opinion"
            | "report"
            | "threat-actor"
            | "tool"
            | "vulnerability"
            | "relationship"
            | "sighting"
            | "marking-definition"
            | "language-content"
            | "extension-definition"
    )
}

#[cfg(test)]
mod tests;
