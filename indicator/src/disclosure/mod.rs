//! Version 2 signatures: Cordon's canonical form of an indicator, with one salted
//! commitment per redactable field, so that a release with fields withheld still verifies
//! against its originator's signature (selective disclosure, as IETF SD-JWT does for JSON).
//!
//! The form is defined here once and documented in `docs/signatures.md`, with test vectors
//! in `indicator/tests/vectors/`. In short:
//!
//! - An indicator is read in its proto3 JSON form (lowerCamelCase names, enum values by
//!   name, timestamps in RFC 3339, default values left out). The `signature` member is not
//!   part of what is signed. The members in [`FIXED_FIELDS`] (identity, validity and
//!   handling markings) are signed in clear and can never be withheld. Every other member is
//!   a nested message (an object, read field by field) or a *field*: a string, number,
//!   boolean or list, named by its dotted path (`narrative`, `source.description`,
//!   `consignment.route`).
//! - Each field gets a fresh random salt ([`SALT_BYTES`] bytes) and a commitment:
//!   `SHA-256(FIELD_CONTEXT || C(["<salt in hex>", "<path>", <value>]))`, where `C` is the
//!   JSON Canonicalization Scheme (RFC 8785) restricted to integers (the schema has no
//!   floating-point fields; a float is refused rather than given two spellings).
//! - The originator signs `SIGNING_CONTEXT_V2 || C({"commitments": {<path>: "<digest in
//!   hex>", ...}, "fixed": {<fixed member>: <value>, ...}})` with Ed25519.
//! - A release carries every commitment, with the salt of each disclosed field; a withheld
//!   field keeps its commitment and loses its value and its salt. The receiver recomputes
//!   each disclosed field's commitment, compares it with the one carried, and verifies the
//!   signature over the fixed members and all the commitments.
//!
//! The form is independent of prost's field order and of fields one side does not know:
//! a field added to the schema and left unset adds nothing, and a field set by a newer
//! sender that an older receiver drops on decoding simply reads as withheld there.

use std::collections::{BTreeMap, BTreeSet};

use cordon_proto::v1::{FieldCommitment, Indicator, Retracted, Signature};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The signature version this module produces and checks.
pub const SIGNATURE_VERSION: u32 = 2;

/// Domain separation of version 2 indicator signatures.
pub const SIGNING_CONTEXT_V2: &[u8] = b"cordon.v1.Indicator signature 2\n";

/// Domain separation of field commitments.
pub const FIELD_CONTEXT: &[u8] = b"cordon.v1.Indicator field 2\n";

/// Domain separation of version 2 retraction signatures.
pub const RETRACTION_SIGNING_CONTEXT_V2: &[u8] = b"cordon.v1.Retracted signature 2\n";

/// Bytes of salt an originator draws for each field (128 bits).
pub const SALT_BYTES: usize = 16;

/// The longest salt a receiver accepts (a later version may draw more).
const MAX_SALT_BYTES: usize = 64;

/// Bounds the recursion into nested messages; the schema nests two levels.
const MAX_DEPTH: usize = 8;

/// Members signed in clear, never withheld: without `id`, `originator`, `created` and
/// `supersedes` a recipient could not tell which indicator a retraction or revision refers
/// to, nor who vouches for it; without the validity and the handling markings (`tlp`,
/// `protection`, `noReshare`, `releasableTo`) the next gateway's hard floor could not apply.
pub const FIXED_FIELDS: [&str; 10] = [
    "id",
    "originator",
    "created",
    "supersedes",
    "validFrom",
    "validUntil",
    "tlp",
    "protection",
    "noReshare",
    "releasableTo",
];

/// The fixed members that are timestamps: signed in the proto3 JSON mapping's own form
/// (UTC with `Z`, 0, 3, 6 or 9 fractional digits), whatever spelling a JSON library writes.
const TIMESTAMP_FIELDS: [&str; 3] = ["created", "validFrom", "validUntil"];

/// The member of the JSON form that holds the signature, outside what is signed.
const SIGNATURE_MEMBER: &str = "signature";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DisclosureError {
    #[error("the indicator does not encode as proto3 JSON: {0}")]
    Encoding(String),
    #[error("field {0:?} holds a number that is not an integer; the canonical form has none")]
    NotAnInteger(String),
    #[error("field {0:?} is nested deeper than {MAX_DEPTH} levels")]
    TooDeep(String),
    #[error("field {0:?} is present but no commitment covers it (a field was added)")]
    Uncovered(String),
    #[error("field {0:?} is present but its salt is not")]
    MissingSalt(String),
    #[error("field {0:?} does not match its commitment (its value or its salt was changed)")]
    Mismatch(String),
    #[error("commitment path {0:?} appears more than once")]
    Duplicate(String),
    #[error("commitment for {0:?} is not a 32-byte SHA-256 digest")]
    BadDigest(String),
    #[error("salt for {path:?} is {length} bytes, expected {SALT_BYTES} to {MAX_SALT_BYTES}")]
    BadSalt { path: String, length: usize },
    #[error("commitment path {0:?} names a member that is signed in clear")]
    FixedCommitted(String),
    #[error("signature version {0} is not version {SIGNATURE_VERSION}")]
    WrongVersion(u32),
    #[error("the indicator carries no signature")]
    Unsigned,
    #[error("no salt could be drawn: {0}")]
    Random(String),
    #[error("{0} is not an RFC 3339 timestamp within years 1 to 9999 (no leap second)")]
    Timestamp(String),
    #[error("member name {0:?} is not an ASCII name without dots")]
    BadName(String),
    #[error("field {0:?} appears twice in the JSON form")]
    DuplicateField(String),
    #[error("the indicator is a {0} but no commitment names a {0} field (its kind was changed)")]
    KindUncommitted(String),
    #[error("a version {0} signature carries field commitments")]
    CommitmentsInLegacy(u32),
}

/// An indicator's proto3 JSON form split into what is signed in clear and its fields.
#[derive(Debug, Default, PartialEq)]
pub struct Fields {
    /// The members of [`FIXED_FIELDS`] that are present.
    pub fixed: Map<String, Value>,
    /// Every other field, by dotted path.
    pub committed: BTreeMap<String, Value>,
}

impl Fields {
    /// Splits a proto3 JSON form (any schema: nothing here names a field but the fixed ones).
    pub fn of_json(json: Value) -> Result<Fields, DisclosureError> {
        let Value::Object(members) = json else {
            return Err(DisclosureError::Encoding("not a JSON object".into()));
        };
        let mut fields = Fields::default();
        for (name, value) in members {
            if name == SIGNATURE_MEMBER {
                continue;
            }
            check_name(&name)?;
            if FIXED_FIELDS.contains(&name.as_str()) {
                let value = if TIMESTAMP_FIELDS.contains(&name.as_str()) {
                    Value::String(canonical_timestamp(&name, &value)?)
                } else {
                    value
                };
                fields.fixed.insert(name, value);
            } else {
                flatten(name, value, 0, &mut fields.committed)?;
            }
        }
        Ok(fields)
    }

    /// Splits an indicator, read in its proto3 JSON form.
    pub fn of(indicator: &Indicator) -> Result<Fields, DisclosureError> {
        Fields::of_json(to_json(indicator)?)
    }
}

/// The proto3 JSON form of an indicator, once its timestamps are known to have one
/// spelling: seconds within years 1 to 9999 and nanoseconds below one second (a JSON
/// library may write others, such as ":60", that read back as another time).
fn to_json(indicator: &Indicator) -> Result<Value, DisclosureError> {
    for (name, at) in [
        ("created", &indicator.created),
        ("validFrom", &indicator.valid_from),
        ("validUntil", &indicator.valid_until),
    ] {
        if let Some(at) = at
            && (!(-62_135_596_800..=253_402_300_799).contains(&at.seconds)
                || !(0..1_000_000_000).contains(&at.nanos))
        {
            return Err(DisclosureError::Timestamp(name.to_string()));
        }
    }
    serde_json::to_value(indicator).map_err(|error| DisclosureError::Encoding(error.to_string()))
}

/// A timestamp in the proto3 JSON mapping's canonical form: `YYYY-MM-DDTHH:MM:SS`, then
/// `.` and 3, 6 or 9 digits unless the nanoseconds are zero, then `Z`.
fn canonical_timestamp(name: &str, value: &Value) -> Result<String, DisclosureError> {
    use time::format_description::well_known::Rfc3339;
    let text = value.as_str().unwrap_or_default();
    // A leap second (":60") would be read as the second before the next minute: two
    // spellings of one signed time.
    if text.get(17..19) == Some("60") {
        return Err(DisclosureError::Timestamp(name.to_string()));
    }
    let at = time::OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| DisclosureError::Timestamp(name.to_string()))?
        .to_offset(time::UtcOffset::UTC);
    let nanos = at.nanosecond();
    let fraction = if nanos == 0 {
        String::new()
    } else if nanos % 1_000_000 == 0 {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    };
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    ))
}

fn flatten(
    path: String,
    value: Value,
    depth: usize,
    out: &mut BTreeMap<String, Value>,
) -> Result<(), DisclosureError> {
    if depth > MAX_DEPTH {
        return Err(DisclosureError::TooDeep(path));
    }
    match value {
        Value::Object(members) => {
            for (name, value) in members {
                check_name(&name)?;
                flatten(format!("{path}.{name}"), value, depth + 1, out)?;
            }
        }
        value => {
            if out.contains_key(&path) {
                return Err(DisclosureError::DuplicateField(path));
            }
            out.insert(path, value);
        }
    }
    Ok(())
}

/// Paths are dotted member names: a name must not hold a dot (two fields would share a
/// path), and is ASCII, as every protobuf field name is, so that the paths' byte order is
/// RFC 8785's UTF-16 order.
fn check_name(name: &str) -> Result<(), DisclosureError> {
    if name.is_empty() || !name.is_ascii() || name.contains('.') {
        return Err(DisclosureError::BadName(name.to_string()));
    }
    Ok(())
}

/// The dotted paths of the fields present in a proto3 JSON form (what [`Fields::of_json`]
/// commits), without copying their values.
pub fn field_paths(json: &Value) -> BTreeSet<String> {
    fn walk(path: String, value: &Value, depth: usize, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(members) if depth <= MAX_DEPTH => {
                for (name, value) in members {
                    walk(format!("{path}.{name}"), value, depth + 1, out);
                }
            }
            _ => {
                out.insert(path);
            }
        }
    }
    let mut paths = BTreeSet::new();
    if let Value::Object(members) = json {
        for (name, value) in members {
            if name != SIGNATURE_MEMBER && !FIXED_FIELDS.contains(&name.as_str()) {
                walk(name.clone(), value, 0, &mut paths);
            }
        }
    }
    paths
}

/// Writes `value` in the JSON Canonicalization Scheme (RFC 8785): no whitespace, object
/// members sorted by their names' UTF-16 code units, strings escaped as ECMAScript's
/// `JSON.stringify` does. Numbers must be integers (`path` names the field otherwise).
pub fn write_canonical(
    value: &Value,
    path: &str,
    out: &mut Vec<u8>,
) -> Result<(), DisclosureError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            if !(number.is_i64() || number.is_u64()) {
                return Err(DisclosureError::NotAnInteger(path.to_string()));
            }
            out.extend_from_slice(number.to_string().as_bytes());
        }
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, path, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut names: Vec<&String> = members.keys().collect();
            names.sort_by(|left, right| left.encode_utf16().cmp(right.encode_utf16()));
            out.push(b'{');
            for (index, name) in names.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_canonical(&members[name], path, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// RFC 8785 3.2.2.2: `"` and `\` escaped, control characters as `\b \t \n \f \r` or
/// `\u00xx` (lower-case hex), everything else as itself in UTF-8.
fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for character in text.chars() {
        match character {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            control if (control as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", control as u32).as_bytes());
            }
            other => {
                let mut buffer = [0; 4];
                out.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The commitment to one field: `SHA-256(FIELD_CONTEXT || C([hex(salt), path, value]))`.
pub fn commitment(salt: &[u8], path: &str, value: &Value) -> Result<[u8; 32], DisclosureError> {
    let mut bytes = Vec::with_capacity(FIELD_CONTEXT.len() + 64 + path.len());
    bytes.extend_from_slice(FIELD_CONTEXT);
    bytes.push(b'[');
    write_string(&hex::encode(salt), &mut bytes);
    bytes.push(b',');
    write_string(path, &mut bytes);
    bytes.push(b',');
    write_canonical(value, path, &mut bytes)?;
    bytes.push(b']');
    Ok(Sha256::digest(&bytes).into())
}

/// What the originator signs: `SIGNING_CONTEXT_V2 || C({"commitments": {path: hex(digest)},
/// "fixed": {...}})`. `commitments` must be in path order (a `BTreeMap` is).
pub fn signing_input<'a>(
    fixed: &Map<String, Value>,
    commitments: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Vec<u8>, DisclosureError> {
    let mut bytes = Vec::with_capacity(512);
    bytes.extend_from_slice(SIGNING_CONTEXT_V2);
    // Member names in UTF-16 order: "commitments" < "fixed".
    bytes.extend_from_slice(b"{\"commitments\":{");
    for (index, (path, digest)) in commitments.into_iter().enumerate() {
        if index > 0 {
            bytes.push(b',');
        }
        write_string(path, &mut bytes);
        bytes.push(b':');
        write_string(&hex::encode(digest), &mut bytes);
    }
    bytes.extend_from_slice(b"},\"fixed\":");
    let fixed = Value::Object(fixed.clone());
    write_canonical(&fixed, "fixed", &mut bytes)?;
    bytes.push(b'}');
    Ok(bytes)
}

/// At publication: a fresh salt for every field from `fill_salt` (a cryptographic random
/// source), and the commitments with the bytes to sign. The commitments are in path order.
pub fn seal(
    indicator: &Indicator,
    fill_salt: impl FnMut(&mut [u8]) -> Result<(), String>,
) -> Result<(Vec<FieldCommitment>, Vec<u8>), DisclosureError> {
    seal_json(to_json(indicator)?, fill_salt)
}

/// [`seal`] over any indicator's proto3 JSON form (a later or earlier schema's).
pub fn seal_json(
    json: Value,
    mut fill_salt: impl FnMut(&mut [u8]) -> Result<(), String>,
) -> Result<(Vec<FieldCommitment>, Vec<u8>), DisclosureError> {
    let fields = Fields::of_json(json)?;
    let mut commitments = Vec::with_capacity(fields.committed.len());
    for (path, value) in &fields.committed {
        let mut salt = vec![0; SALT_BYTES];
        fill_salt(&mut salt).map_err(DisclosureError::Random)?;
        let digest = commitment(&salt, path, value)?;
        commitments.push(FieldCommitment {
            path: path.clone(),
            digest: digest.to_vec(),
            salt,
        });
    }
    let bytes = signing_input(
        &fields.fixed,
        commitments
            .iter()
            .map(|field| (field.path.as_str(), field.digest.as_slice())),
    )?;
    Ok((commitments, bytes))
}

/// At receipt: checks every disclosed field against its commitment and that every field
/// present has one, then returns the bytes the originator's signature must verify over.
pub fn disclosed_signing_input(indicator: &Indicator) -> Result<Vec<u8>, DisclosureError> {
    checked(indicator).map(|(bytes, _)| bytes)
}

/// On receipt, as [`disclosed_signing_input`] and in the same pass: drops every salt whose
/// field is absent (a sender may drop a field and forget its salt), and returns, with the
/// bytes to verify, the paths withheld from this copy.
pub fn receive(indicator: &mut Indicator) -> Result<(Vec<u8>, Vec<String>), DisclosureError> {
    let (bytes, present) = checked(indicator)?;
    if let Some(signature) = indicator.signature.as_mut() {
        withhold_absent(signature, &present);
    }
    Ok((bytes, withheld_paths(indicator)))
}

/// The bytes to verify and the paths of the fields present.
fn checked(indicator: &Indicator) -> Result<(Vec<u8>, BTreeSet<String>), DisclosureError> {
    let signature = indicator
        .signature
        .as_ref()
        .ok_or(DisclosureError::Unsigned)?;
    let checked = checked_json(to_json(indicator)?, signature)?;
    // An empty kind message has no field to commit: a kind swapped for another, with every
    // field of the original withheld, would verify. The originator committed at least one
    // field of the indicator's real kind (validation requires one).
    if let Some(kind) = crate::kind_name(indicator) {
        let prefix = format!("{kind}.");
        if !signature
            .fields
            .iter()
            .any(|field| field.path.starts_with(&prefix))
        {
            return Err(DisclosureError::KindUncommitted(kind.to_string()));
        }
    }
    Ok(checked)
}

/// [`disclosed_signing_input`] over any indicator's proto3 JSON form and its signature.
pub fn disclosed_signing_input_json(
    json: Value,
    signature: &Signature,
) -> Result<Vec<u8>, DisclosureError> {
    checked_json(json, signature).map(|(bytes, _)| bytes)
}

fn checked_json(
    json: Value,
    signature: &Signature,
) -> Result<(Vec<u8>, BTreeSet<String>), DisclosureError> {
    if signature.version != SIGNATURE_VERSION {
        return Err(DisclosureError::WrongVersion(signature.version));
    }
    let commitments = commitments_by_path(signature)?;
    let fields = Fields::of_json(json)?;
    for (path, value) in &fields.committed {
        let field = commitments
            .get(path.as_str())
            .ok_or_else(|| DisclosureError::Uncovered(path.clone()))?;
        if field.salt.is_empty() {
            return Err(DisclosureError::MissingSalt(path.clone()));
        }
        if commitment(&field.salt, path, value)?.as_slice() != field.digest.as_slice() {
            return Err(DisclosureError::Mismatch(path.clone()));
        }
    }
    let bytes = signing_input(
        &fields.fixed,
        commitments
            .iter()
            .map(|(path, field)| (*path, field.digest.as_slice())),
    )?;
    Ok((bytes, fields.committed.into_keys().collect()))
}

/// The commitments in path order, each checked for shape.
fn commitments_by_path(
    signature: &Signature,
) -> Result<BTreeMap<&str, &FieldCommitment>, DisclosureError> {
    let mut by_path = BTreeMap::new();
    for field in &signature.fields {
        let path = field.path.as_str();
        let member = path.split('.').next().unwrap_or_default();
        if member == SIGNATURE_MEMBER || FIXED_FIELDS.contains(&member) {
            return Err(DisclosureError::FixedCommitted(field.path.clone()));
        }
        if field.digest.len() != 32 {
            return Err(DisclosureError::BadDigest(field.path.clone()));
        }
        if !field.salt.is_empty() && !(SALT_BYTES..=MAX_SALT_BYTES).contains(&field.salt.len()) {
            return Err(DisclosureError::BadSalt {
                path: field.path.clone(),
                length: field.salt.len(),
            });
        }
        if by_path.insert(path, field).is_some() {
            return Err(DisclosureError::Duplicate(field.path.clone()));
        }
    }
    Ok(by_path)
}

/// After fields were removed from an indicator whose proto3 JSON form now has the fields
/// `present` ([`field_paths`]): drops the salt of every field no longer present, so that no
/// salt leaves with a withheld field. A version 1 signature is left alone (it cannot
/// survive a redaction).
pub fn withhold_absent(signature: &mut Signature, present: &BTreeSet<String>) {
    if signature.version != SIGNATURE_VERSION {
        return;
    }
    for field in &mut signature.fields {
        if !field.salt.is_empty() && !present.contains(&field.path) {
            field.salt.clear();
        }
    }
}

/// The paths of the fields withheld from this copy of an indicator (commitments without
/// their salt), in path order. Only a version 2 signature withholds anything.
pub fn withheld_paths(indicator: &Indicator) -> Vec<String> {
    indicator
        .signature
        .as_ref()
        .filter(|signature| signature.version == SIGNATURE_VERSION)
        .map(|signature| {
            signature
                .fields
                .iter()
                .filter(|field| field.salt.is_empty())
                .map(|field| field.path.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Version 2 of what a retraction's originator signs: `RETRACTION_SIGNING_CONTEXT_V2 ||
/// C(the retraction's proto3 JSON form without its signature)`.
pub fn retraction_signing_input(retracted: &Retracted) -> Result<Vec<u8>, DisclosureError> {
    let mut json = serde_json::to_value(retracted)
        .map_err(|error| DisclosureError::Encoding(error.to_string()))?;
    if let Value::Object(members) = &mut json {
        members.remove(SIGNATURE_MEMBER);
    }
    let mut bytes = RETRACTION_SIGNING_CONTEXT_V2.to_vec();
    write_canonical(&json, "retraction", &mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
