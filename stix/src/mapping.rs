//! Cordon indicator (proto3 JSON) to STIX 2.1 objects, and back.
//!
//! Each indicator maps to exactly one STIX `indicator` whose pattern names its SALW observable's
//! properties, the observable itself (an extension-defined SCO), and a `related-to`
//! relationship between the two; a revision adds a `derived-from` relationship to the indicator
//! it supersedes. What STIX has no property for (the Cordon id, originator, publisher, severity,
//! protection, source, signature and field commitments, withheld paths) travels in the
//! indicator's Cordon property extension, so that Cordon -> STIX -> Cordon is exact.
//!
//! On the way back only the pattern is needed: a STIX indicator from elsewhere whose pattern
//! compares SALW observable properties imports from the pattern alone.

use serde_json::{Map, Value, json};

use crate::ids::{self, domain_id, observable_id};
use crate::kinds::{self, FieldType, Kind};
use crate::objects::{
    HANDLING_CODES, TLP1_MARKINGS, TLP2_MARKINGS, handling_marking_id, indicator_extension_id,
    member_identity_id, no_reshare_marking_id, observable_extension_id,
    source_protected_marking_id, tlp_marking_id,
};
use crate::pattern::{self, Comparison, Literal};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    /// A property is missing or has the wrong form; names the property.
    #[error("{0}")]
    Invalid(String),
    /// The indicator withholds (or has) every property of its observable: there is nothing to
    /// write a pattern over.
    #[error("the indicator has no observable property to write a pattern over")]
    NothingObservable,
    #[error(transparent)]
    Pattern(#[from] pattern::PatternError),
}

fn invalid(message: impl Into<String>) -> MapError {
    MapError::Invalid(message.into())
}

/// How one indicator is exported.
#[derive(Clone, Copy, Debug, Default)]
pub struct Export<'a> {
    /// Paths withheld from this recipient (they are simply absent from the objects; the list
    /// travels in the Cordon extension so that the recipient can tell).
    pub withheld: &'a [String],
    /// The indicator was retracted at this time: it is exported revoked, modified then.
    pub revoked_at: Option<&'a str>,
}

/// The STIX id of the `indicator` a Cordon indicator maps to. A Cordon UUIDv7 (what gateways
/// assign) keeps its 122 free bits with the version set to 4: a valid, deterministic UUIDv4
/// that [`cordon_id_candidates`] turns back. Any other id (a client may choose its own) is
/// hashed, so that no id can be chosen to collide with a UUIDv7's STIX id.
pub fn indicator_id(cordon_id: &str) -> String {
    match uuid::Uuid::try_parse(cordon_id) {
        Ok(uuid) if uuid.get_version_num() == 7 && cordon_id == uuid.to_string() => {
            let mut bytes = *uuid.as_bytes();
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            format!("indicator--{}", uuid::Uuid::from_bytes(bytes))
        }
        _ => domain_id("indicator", cordon_id),
    }
}

/// The Cordon id whose [`indicator_id`] may be `stix_id`: the UUIDv7 it was made from. Empty
/// for anything else (a hashed id cannot be turned back).
pub fn cordon_id_candidates(stix_id: &str) -> Vec<String> {
    let Some(uuid) = stix_id
        .strip_prefix("indicator--")
        .and_then(|u| uuid::Uuid::try_parse(u).ok())
        .filter(|u| u.get_version_num() == 4)
    else {
        return Vec::new();
    };
    let mut bytes = *uuid.as_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    let candidate = uuid::Uuid::from_bytes(bytes).to_string();
    if indicator_id(&candidate) == stix_id {
        vec![candidate]
    } else {
        Vec::new()
    }
}

const TOP_LEVEL: &[&str] = &[
    "id",
    "originator",
    "created",
    "validFrom",
    "validUntil",
    "severity",
    "confidence",
    "tlp",
    "protection",
    "noReshare",
    "releasableTo",
    "tags",
    "narrative",
    "source",
    "supersedes",
    "publisher",
    "signature",
];

/// Maps one Cordon indicator (its proto3 JSON form, as stored and released) to its STIX
/// objects: the observable, the indicator, then its relationships.
pub fn to_stix(indicator: &Value, export: Export<'_>) -> Result<Vec<Value>, MapError> {
    let fields = indicator
        .as_object()
        .ok_or_else(|| invalid("indicator: expected a JSON object"))?;
    let mut kind = None;
    for (key, value) in fields {
        if let Some(k) = kinds::by_json(key) {
            if kind.is_some() {
                return Err(invalid(format!("{key}: an indicator has one kind")));
            }
            kind = Some((k, value));
        } else if !TOP_LEVEL.contains(&key.as_str()) {
            return Err(invalid(format!("{key}: no STIX mapping for this field")));
        }
    }
    let (kind, observed) = kind.ok_or_else(|| invalid("kind: the indicator has no kind"))?;
    let cordon_id = string(fields, "id")?.ok_or_else(|| invalid("id: required"))?;
    let created = string(fields, "created")?.ok_or_else(|| invalid("created: required"))?;

    let (properties, comparisons) = observable_properties(kind, observed)?;
    if comparisons.is_empty() {
        return Err(MapError::NothingObservable);
    }
    let contributing = contributing(kind, &properties);
    let observable_id = observable_id(kind.sco, &contributing);
    let mut observable = Map::new();
    observable.insert("type".into(), json!(kind.sco));
    observable.insert("spec_version".into(), json!("2.1"));
    observable.insert("id".into(), json!(observable_id));
    observable.extend(properties);
    observable.insert(
        "extensions".into(),
        json!({ observable_extension_id(kind.sco): {"extension_type": "new-sco"} }),
    );

    let stix_id = indicator_id(cordon_id);
    // STIX wants created and modified to the millisecond at least.
    let created = &stix_timestamp(created);
    let modified = &stix_timestamp(export.revoked_at.unwrap_or(created));
    let mut markings = Vec::new();
    if let Some(tlp) = string(fields, "tlp")? {
        markings.push(json!(
            tlp_marking_id(tlp).ok_or_else(|| invalid(format!("tlp: unknown label {tlp}")))?
        ));
    }
    let source = fields.get("source");
    if let Some(code) = source
        .and_then(|s| s.get("handlingCode"))
        .and_then(Value::as_str)
    {
        let (_, code, _) = HANDLING_CODES
            .iter()
            .find(|(name, _, _)| *name == code)
            .ok_or_else(|| invalid(format!("source.handlingCode: unknown code {code}")))?;
        markings.push(json!(handling_marking_id(code)));
    }
    if fields.get("noReshare") == Some(&Value::Bool(true)) {
        markings.push(json!(no_reshare_marking_id()));
    }
    if fields.get("protection") == Some(&json!("PROTECTION_SOURCE_PROTECTED")) {
        markings.push(json!(source_protected_marking_id()));
    }
    let created_by = string(fields, "originator")?.map(member_identity_id);

    let mut sdo = Map::new();
    sdo.insert("type".into(), json!("indicator"));
    sdo.insert("spec_version".into(), json!("2.1"));
    sdo.insert("id".into(), json!(stix_id));
    if let Some(created_by) = &created_by {
        sdo.insert("created_by_ref".into(), json!(created_by));
    }
    sdo.insert("created".into(), json!(created));
    sdo.insert("modified".into(), json!(modified));
    sdo.insert("name".into(), json!(indicator_name(kind, &contributing)));
    if let Some(narrative) = string(fields, "narrative")? {
        sdo.insert("description".into(), json!(narrative));
    }
    sdo.insert("pattern".into(), json!(pattern::write(&comparisons)));
    sdo.insert("pattern_type".into(), json!("stix"));
    sdo.insert("pattern_version".into(), json!("2.1"));
    let valid_from = string(fields, "validFrom")?;
    sdo.insert(
        "valid_from".into(),
        json!(valid_from.map_or_else(|| created.clone(), utc)),
    );
    if let Some(until) = string(fields, "validUntil")? {
        sdo.insert("valid_until".into(), json!(utc(until)));
    }
    if let Some(confidence) = fields.get("confidence") {
        let confidence = confidence
            .as_u64()
            .filter(|c| *c <= 100)
            .ok_or_else(|| invalid("confidence: expected an integer from 0 to 100"))?;
        sdo.insert("confidence".into(), json!(confidence));
    }
    if let Some(tags) = fields.get("tags") {
        sdo.insert("labels".into(), tags.clone());
    }
    if export.revoked_at.is_some() {
        sdo.insert("revoked".into(), json!(true));
    }
    if !markings.is_empty() {
        sdo.insert("object_marking_refs".into(), json!(markings));
    }
    let extension = cordon_extension(fields, valid_from.is_none(), export.withheld)?;
    sdo.insert(
        "extensions".into(),
        json!({ indicator_extension_id(): extension }),
    );

    let relationship = |relationship_type: &str, target: &str| {
        let mut r = Map::new();
        r.insert("type".into(), json!("relationship"));
        r.insert("spec_version".into(), json!("2.1"));
        r.insert(
            "id".into(),
            json!(domain_id(
                "relationship",
                &format!("{cordon_id} {relationship_type} {target}")
            )),
        );
        if let Some(created_by) = &created_by {
            r.insert("created_by_ref".into(), json!(created_by));
        }
        r.insert("created".into(), json!(created));
        r.insert("modified".into(), json!(modified));
        r.insert("relationship_type".into(), json!(relationship_type));
        r.insert("source_ref".into(), json!(stix_id));
        r.insert("target_ref".into(), json!(target));
        if export.revoked_at.is_some() {
            r.insert("revoked".into(), json!(true));
        }
        if !markings.is_empty() {
            r.insert("object_marking_refs".into(), json!(markings));
        }
        Value::Object(r)
    };
    let mut objects = vec![
        Value::Object(observable),
        Value::Object(sdo),
        relationship("related-to", &observable_id),
    ];
    if let Some(previous) = string(fields, "supersedes")? {
        objects.push(relationship("derived-from", &indicator_id(previous)));
    }
    Ok(objects)
}

/// An RFC 3339 UTC timestamp with at least three fraction digits (STIX's millisecond
/// precision for created and modified): `2026-11-01T00:00:00Z` -> `2026-11-01T00:00:00.000Z`.
pub fn stix_timestamp(timestamp: &str) -> String {
    let timestamp = utc(timestamp);
    let Some(body) = timestamp.strip_suffix('Z') else {
        return timestamp;
    };
    let (seconds, fraction) = body.split_once('.').unwrap_or((body, ""));
    format!("{seconds}.{fraction:0<3}Z")
}

/// `Z` for a UTC offset written `+00:00` (as the proto3 JSON mapping of this gateway writes
/// it): STIX timestamps end in `Z`.
pub fn utc(timestamp: &str) -> String {
    match timestamp
        .strip_suffix("+00:00")
        .or_else(|| timestamp.strip_suffix("-00:00"))
    {
        Some(body) => format!("{body}Z"),
        None => timestamp.to_string(),
    }
}

/// The form the proto3 JSON mapping writes (0, 3, 6 or 9 fraction digits), so that a
/// timestamp padded by [`stix_timestamp`] reads back as Cordon wrote it.
pub fn proto_timestamp(timestamp: &str) -> String {
    let Some((seconds, fraction)) = timestamp
        .strip_suffix('Z')
        .and_then(|body| body.split_once('.'))
    else {
        return timestamp.to_string();
    };
    if fraction.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return timestamp.to_string();
    }
    let nanos = format!("{fraction:0<9}");
    let digits = if nanos == "000000000" {
        0
    } else if nanos.ends_with("000000") {
        3
    } else if nanos.ends_with("000") {
        6
    } else {
        9
    };
    if digits == 0 {
        format!("{seconds}Z")
    } else {
        format!("{seconds}.{}Z", &nanos[..digits])
    }
}

fn string<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, MapError> {
    match fields.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{key}: expected a string"))),
    }
}

/// The observable's STIX properties and the pattern's comparisons over them.
fn observable_properties(
    kind: &Kind,
    observed: &Value,
) -> Result<(Map<String, Value>, Vec<Comparison>), MapError> {
    let observed = observed
        .as_object()
        .ok_or_else(|| invalid(format!("{}: expected a JSON object", kind.json)))?;
    if let Some(unknown) = observed
        .keys()
        .find(|k| !kind.fields.iter().any(|f| f.json == k.as_str()))
    {
        return Err(invalid(format!(
            "{}.{unknown}: no STIX mapping for this field",
            kind.json
        )));
    }
    let mut properties = Map::new();
    let mut comparisons = Vec::new();
    let comparison = |property: &str, index, value| Comparison {
        object_type: kind.sco.to_string(),
        property: property.to_string(),
        index,
        value,
    };
    for field in kind.fields {
        let Some(value) = observed.get(field.json) else {
            continue;
        };
        let path = || format!("{}.{}", kind.json, field.json);
        match field.ty {
            FieldType::Str => {
                let s = value
                    .as_str()
                    .ok_or_else(|| invalid(format!("{}: expected a string", path())))?;
                properties.insert(field.stix.into(), json!(s));
                comparisons.push(comparison(field.stix, None, Literal::Str(s.into())));
            }
            FieldType::Bool => {
                let b = value
                    .as_bool()
                    .ok_or_else(|| invalid(format!("{}: expected a boolean", path())))?;
                properties.insert(field.stix.into(), json!(b));
                comparisons.push(comparison(field.stix, None, Literal::Bool(b)));
            }
            FieldType::List => {
                let items = value
                    .as_array()
                    .ok_or_else(|| invalid(format!("{}: expected a list", path())))?;
                for (i, item) in items.iter().enumerate() {
                    let s = item
                        .as_str()
                        .ok_or_else(|| invalid(format!("{}[{i}]: expected a string", path())))?;
                    comparisons.push(comparison(field.stix, Some(i), Literal::Str(s.into())));
                }
                properties.insert(field.stix.into(), value.clone());
            }
            FieldType::Enum(prefix) => {
                let name = value
                    .as_str()
                    .and_then(|s| s.strip_prefix(prefix))
                    .ok_or_else(|| invalid(format!("{}: expected {prefix}…", path())))?;
                let s = name.to_ascii_lowercase();
                properties.insert(field.stix.into(), json!(s));
                comparisons.push(comparison(field.stix, None, Literal::Str(s)));
            }
        }
    }
    Ok((properties, comparisons))
}

fn contributing(kind: &Kind, properties: &Map<String, Value>) -> Map<String, Value> {
    let chosen: Map<String, Value> = properties
        .iter()
        .filter(|(k, _)| kind.contributing.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if chosen.is_empty() {
        properties.clone()
    } else {
        chosen
    }
}

fn indicator_name(kind: &Kind, contributing: &Map<String, Value>) -> String {
    let first = kind
        .contributing
        .iter()
        .chain(kind.fields.iter().map(|f| &f.stix))
        .find_map(|k| contributing.get(*k).and_then(Value::as_str));
    match first {
        Some(value) => format!("{} {value}", kind.title),
        None => kind.title.to_string(),
    }
}

fn enum_to_stix(value: &Value, prefix: &str, path: &str) -> Result<Value, MapError> {
    value
        .as_str()
        .and_then(|s| s.strip_prefix(prefix))
        .map(|s| json!(s.to_ascii_lowercase()))
        .ok_or_else(|| invalid(format!("{path}: expected {prefix}…")))
}

fn enum_from_stix(value: &Value, prefix: &str, path: &str) -> Result<Value, MapError> {
    value
        .as_str()
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(|s| json!(format!("{prefix}{}", s.to_ascii_uppercase())))
        .ok_or_else(|| invalid(format!("{path}: expected a lower-case name")))
}

/// The indicator's Cordon properties, in STIX's snake_case.
fn cordon_extension(
    fields: &Map<String, Value>,
    valid_from_implied: bool,
    withheld: &[String],
) -> Result<Value, MapError> {
    let mut ext = Map::new();
    ext.insert("extension_type".into(), json!("property-extension"));
    let plain = [
        ("id", "cordon_id"),
        ("originator", "originator"),
        ("publisher", "publisher"),
        ("noReshare", "no_reshare"),
        ("releasableTo", "releasable_to"),
        ("supersedes", "supersedes"),
    ];
    for (from, to) in plain {
        if let Some(value) = fields.get(from) {
            ext.insert(to.into(), value.clone());
        }
    }
    if let Some(severity) = fields.get("severity") {
        ext.insert(
            "severity".into(),
            enum_to_stix(severity, "SEVERITY_", "severity")?,
        );
    }
    if let Some(protection) = fields.get("protection") {
        ext.insert(
            "protection".into(),
            enum_to_stix(protection, "PROTECTION_", "protection")?,
        );
    }
    if valid_from_implied {
        ext.insert("valid_from_implied".into(), json!(true));
    }
    if let Some(source) = fields.get("source") {
        let source = source
            .as_object()
            .ok_or_else(|| invalid("source: expected a JSON object"))?;
        let mut out = Map::new();
        for (key, value) in source {
            match key.as_str() {
                "description" | "reliability" | "credibility" => {
                    out.insert(key.clone(), value.clone());
                }
                "handlingCode" => {
                    let code = enum_to_stix(value, "HANDLING_CODE_", "source.handlingCode")?;
                    out.insert(
                        "handling_code".into(),
                        json!(code.as_str().map(str::to_uppercase)),
                    );
                }
                other => return Err(invalid(format!("source.{other}: no STIX mapping"))),
            }
        }
        ext.insert("source".into(), Value::Object(out));
    }
    if let Some(signature) = fields.get("signature") {
        let signature = signature
            .as_object()
            .ok_or_else(|| invalid("signature: expected a JSON object"))?;
        let mut out = Map::new();
        for (key, value) in signature {
            match key.as_str() {
                "keyId" => {
                    out.insert("key_id".into(), value.clone());
                }
                "signature" | "version" | "fields" => {
                    out.insert(key.clone(), value.clone());
                }
                other => return Err(invalid(format!("signature.{other}: no STIX mapping"))),
            }
        }
        ext.insert("signature".into(), Value::Object(out));
    }
    if !withheld.is_empty() {
        ext.insert("withheld".into(), json!(withheld));
    }
    Ok(Value::Object(ext))
}

/// One STIX `indicator` read back: the Cordon indicator (proto3 JSON) and what came with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub stix_id: String,
    pub indicator: Value,
    /// Withheld paths the indicator's Cordon extension listed.
    pub withheld: Vec<String>,
    pub revoked: bool,
}

/// Reads one STIX `indicator` object. A Cordon indicator's extension restores every Cordon
/// property; an indicator from elsewhere maps from its pattern, markings, validity,
/// confidence, labels and description.
pub fn from_stix(object: &Value) -> Result<Imported, MapError> {
    let fields = object
        .as_object()
        .ok_or_else(|| invalid("object: expected a JSON object"))?;
    if fields.get("type").and_then(Value::as_str) != Some("indicator") {
        return Err(invalid("type: expected indicator"));
    }
    let stix_id = string(fields, "id")?.ok_or_else(|| invalid("id: required"))?;
    if !ids::is_valid(stix_id, "indicator") {
        return Err(invalid(format!("id: {stix_id} is not indicator--<uuid>")));
    }
    if string(fields, "spec_version")? != Some("2.1") {
        return Err(invalid("spec_version: expected \"2.1\""));
    }
    match string(fields, "pattern_type")? {
        Some("stix") => {}
        Some(other) => {
            return Err(invalid(format!(
                "pattern_type: {other} patterns have no Cordon mapping (only stix)"
            )));
        }
        None => return Err(invalid("pattern_type: required")),
    }
    if fields.contains_key("granular_markings") {
        return Err(invalid(
            "granular_markings: markings of parts of an object have no Cordon mapping; the \
             object is refused rather than imported without them",
        ));
    }
    let pattern = string(fields, "pattern")?.ok_or_else(|| invalid("pattern: required"))?;
    let comparisons = pattern::parse(pattern)?;
    let (kind_name, observed) = observable_from_pattern(&comparisons)?;

    let mut out = Map::new();
    let ext = fields
        .get("extensions")
        .and_then(|e| e.get(indicator_extension_id()));
    if let Some(ext) = ext {
        restore_cordon_properties(ext, &mut out)?;
        // A Cordon indicator's creation time is the STIX object's.
        if let Some(created) = string(fields, "created")? {
            out.insert("created".into(), json!(proto_timestamp(created)));
        }
    }
    let implied = ext
        .and_then(|e| e.get("valid_from_implied"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(from) = string(fields, "valid_from")?
        && !implied
    {
        out.insert("validFrom".into(), json!(from));
    }
    if let Some(until) = string(fields, "valid_until")? {
        out.insert("validUntil".into(), json!(until));
    }
    if let Some(confidence) = fields.get("confidence") {
        let c = confidence
            .as_u64()
            .filter(|c| *c <= 100)
            .ok_or_else(|| invalid("confidence: expected an integer from 0 to 100"))?;
        if c > 0 {
            out.insert("confidence".into(), json!(c));
        }
    }
    if let Some(labels) = fields.get("labels") {
        if !labels
            .as_array()
            .is_some_and(|l| l.iter().all(Value::is_string))
        {
            return Err(invalid("labels: expected a list of strings"));
        }
        out.insert("tags".into(), labels.clone());
    }
    if let Some(description) = string(fields, "description")? {
        out.insert("narrative".into(), json!(description));
    }
    if let Some(refs) = fields.get("object_marking_refs") {
        let refs = refs
            .as_array()
            .ok_or_else(|| invalid("object_marking_refs: expected a list"))?;
        for r in refs {
            let r = r
                .as_str()
                .ok_or_else(|| invalid("object_marking_refs: expected marking ids"))?;
            read_marking(r, &mut out)?;
        }
    }
    out.insert(kind_name.into(), Value::Object(observed));
    let withheld = ext
        .and_then(|e| e.get("withheld"))
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(Imported {
        stix_id: stix_id.to_string(),
        indicator: Value::Object(out),
        withheld,
        revoked: fields.get("revoked") == Some(&Value::Bool(true)),
    })
}

fn read_marking(id: &str, out: &mut Map<String, Value>) -> Result<(), MapError> {
    let tlp = TLP2_MARKINGS
        .iter()
        .find(|(_, _, m)| *m == id)
        .map(|(name, _, _)| *name)
        .or_else(|| {
            TLP1_MARKINGS
                .iter()
                .find(|(_, m)| *m == id)
                .map(|(name, _)| *name)
        });
    if let Some(tlp) = tlp {
        if out.get("tlp").is_some_and(|t| t != tlp) {
            return Err(invalid("object_marking_refs: more than one TLP marking"));
        }
        out.insert("tlp".into(), json!(tlp));
    } else if id == no_reshare_marking_id() {
        out.insert("noReshare".into(), json!(true));
    } else if id == source_protected_marking_id() {
        out.insert("protection".into(), json!("PROTECTION_SOURCE_PROTECTED"));
    } else if let Some((name, _, _)) = HANDLING_CODES
        .iter()
        .find(|(_, code, _)| handling_marking_id(code) == id)
    {
        let source = out.entry("source").or_insert_with(|| json!({}));
        if let Some(source) = source.as_object_mut() {
            source.insert("handlingCode".into(), json!(name));
        }
    }
    // Other markings (statements, custom ones) have no Cordon field; the TLP decides sharing.
    Ok(())
}

/// Every comparison on one SALW observable type; lists by index from 0 without gaps.
fn observable_from_pattern(
    comparisons: &[Comparison],
) -> Result<(&'static str, Map<String, Value>), MapError> {
    let first = &comparisons[0].object_type;
    let kind = kinds::by_sco(first).ok_or_else(|| {
        invalid(format!(
            "pattern: the object type {first} has no Cordon mapping (salw-* observables only)"
        ))
    })?;
    let mut observed = Map::new();
    for c in comparisons {
        if c.object_type != kind.sco {
            return Err(invalid(format!(
                "pattern: compares both {} and {}; a Cordon indicator has one observable",
                kind.sco, c.object_type
            )));
        }
        let field = kind.field_by_stix(&c.property).ok_or_else(|| {
            invalid(format!(
                "pattern: {} has no property {}",
                kind.sco, c.property
            ))
        })?;
        let path = format!("pattern: {}:{}", kind.sco, c.property);
        let value = match (&c.value, c.index, field.ty) {
            (Literal::Str(s), None, FieldType::Str) => json!(s),
            (Literal::Bool(b), None, FieldType::Bool) => json!(b),
            (Literal::Str(s), None, FieldType::Enum(prefix)) => {
                enum_from_stix(&json!(s), prefix, &path)?
            }
            (Literal::Str(s), Some(index), FieldType::List) => {
                let list = observed
                    .entry(field.json)
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .expect("lists are created as arrays");
                if index != list.len() {
                    return Err(invalid(format!(
                        "{path}[{index}]: list items must be compared in order from [0]"
                    )));
                }
                list.push(json!(s));
                continue;
            }
            _ => return Err(invalid(format!("{path}: wrong type of value or index"))),
        };
        if observed.insert(field.json.into(), value).is_some() {
            return Err(invalid(format!("{path}: compared twice")));
        }
    }
    Ok((kind.json, observed))
}

fn restore_cordon_properties(ext: &Value, out: &mut Map<String, Value>) -> Result<(), MapError> {
    let ext = ext
        .as_object()
        .ok_or_else(|| invalid("extensions: the Cordon extension must be an object"))?;
    for (key, value) in ext {
        let path = |p: &str| format!("extensions.cordon.{p}");
        match key.as_str() {
            "extension_type" | "valid_from_implied" | "withheld" => {}
            "cordon_id" => {
                out.insert("id".into(), value.clone());
            }
            "originator" | "publisher" | "supersedes" => {
                out.insert(key.clone(), value.clone());
            }
            "no_reshare" => {
                out.insert("noReshare".into(), value.clone());
            }
            "releasable_to" => {
                out.insert("releasableTo".into(), value.clone());
            }
            "severity" => {
                out.insert(
                    "severity".into(),
                    enum_from_stix(value, "SEVERITY_", &path(key))?,
                );
            }
            "protection" => {
                out.insert(
                    "protection".into(),
                    enum_from_stix(value, "PROTECTION_", &path(key))?,
                );
            }
            "source" => {
                let source = value
                    .as_object()
                    .ok_or_else(|| invalid(format!("{}: expected an object", path(key))))?;
                let mut s = Map::new();
                for (k, v) in source {
                    match k.as_str() {
                        "description" | "reliability" | "credibility" => {
                            s.insert(k.clone(), v.clone());
                        }
                        "handling_code" => {
                            let code = v.as_str().unwrap_or_default().to_ascii_lowercase();
                            s.insert(
                                "handlingCode".into(),
                                enum_from_stix(&json!(code), "HANDLING_CODE_", &path("source"))?,
                            );
                        }
                        other => {
                            return Err(invalid(format!("{}.{other}: unknown", path("source"))));
                        }
                    }
                }
                out.insert("source".into(), Value::Object(s));
            }
            "signature" => {
                let signature = value
                    .as_object()
                    .ok_or_else(|| invalid(format!("{}: expected an object", path(key))))?;
                let mut s = Map::new();
                for (k, v) in signature {
                    match k.as_str() {
                        "key_id" => {
                            s.insert("keyId".into(), v.clone());
                        }
                        "signature" | "version" | "fields" => {
                            s.insert(k.clone(), v.clone());
                        }
                        other => {
                            return Err(invalid(format!("{}.{other}: unknown", path("signature"))));
                        }
                    }
                }
                out.insert("signature".into(), Value::Object(s));
            }
            other => return Err(invalid(format!("{}: unknown property", path(other)))),
        }
    }
    Ok(())
}
