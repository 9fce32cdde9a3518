//! MISP events (the JSON MISP exports, `{"Event": {...}}`) read as Cordon indicators.
//!
//! What maps:
//! - attributes of type `iban` and `bic`, each an account indicator;
//! - objects `bank-account` (relations `iban`, `swift`/`bic`, `holder-name`/`account-name`) and
//!   `legal-entity` (relations `name`, `registration-number`, `lei`, `country`/`country-code`);
//! - objects named after Cordon's STIX observable types (`salw-vessel`, `salw-euc`,
//!   `salw-firearm`...), whose attributes' `object_relation` are the STIX property names
//!   (`imo`, `issuing_country`, `serial_number`...);
//! - the event's `tlp:` tags to TLP (TLP 1.0's `tlp:white` is TLP:CLEAR), its `info` to the
//!   narrative (with the attribute's comment), its date to `validFrom`.
//!
//! Every attribute and object that does not map is reported, with the reason.

use serde_json::{Map, Value, json};

use crate::kinds::{self, FieldType};
use crate::{BundleError, Import, Imported, Unmapped};

pub fn read_event(document: &Value) -> Result<Import, BundleError> {
    let event = document
        .get("Event")
        .or_else(|| document.get("event"))
        .unwrap_or(document);
    let event = event
        .as_object()
        .ok_or_else(|| BundleError("Event: expected a JSON object".into()))?;
    let tlp = tlp_of(list(event, "Tag")?, None).map_err(|e| BundleError(format!("Event.{e}")))?;
    let info = event
        .get("info")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let date = event
        .get("date")
        .and_then(Value::as_str)
        .filter(|d| d.len() == 10 && d.as_bytes()[4] == b'-' && d.as_bytes()[7] == b'-');
    // An attribute's, an object's or an object's attributes' own TLP tags can only make it
    // stricter than the event's.
    let base = |comment: &str, item: &Value| -> Result<Map<String, Value>, BundleError> {
        let mut ind = Map::new();
        let own = item["Tag"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut tlp = tlp_of(own, tlp).map_err(|e| BundleError(format!("Event: {e}")))?;
        // An object's attributes carry their own tags: the strictest of them applies.
        for attribute in item["Attribute"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let tags = attribute["Tag"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            tlp = tlp_of(tags, tlp).map_err(|e| BundleError(format!("Event: {e}")))?;
        }
        if let Some(tlp) = tlp {
            ind.insert("tlp".into(), json!(tlp));
        }
        let narrative = match (info.is_empty(), comment.is_empty()) {
            (false, false) => format!("{info}: {comment}"),
            (false, true) => info.to_string(),
            (true, _) => comment.to_string(),
        };
        if !narrative.is_empty() {
            ind.insert("narrative".into(), json!(narrative));
        }
        if let Some(date) = date {
            ind.insert("validFrom".into(), json!(format!("{date}T00:00:00Z")));
        }
        Ok(ind)
    };
    let mut import = Import::default();
    for attribute in list(event, "Attribute")? {
        let kind_type = attribute["type"].as_str().unwrap_or_default();
        let value = attribute["value"].as_str().unwrap_or_default();
        let id = attribute["uuid"]
            .as_str()
            .map_or_else(|| format!("attribute {kind_type}"), String::from);
        let field = match kind_type {
            "iban" => "iban",
            "bic" => "bic",
            _ => {
                import.unmapped.push(Unmapped {
                    id,
                    reason: format!("attribute type {kind_type} has no Cordon mapping"),
                });
                continue;
            }
        };
        let mut ind = base(attribute["comment"].as_str().unwrap_or_default(), attribute)?;
        ind.insert("account".into(), json!({ field: value }));
        import.indicators.push(imported(id, ind));
    }
    for object in list(event, "Object")? {
        let name = object["name"].as_str().unwrap_or_default();
        let id = object["uuid"]
            .as_str()
            .map_or_else(|| format!("object {name}"), String::from);
        let attributes = object["Attribute"].as_array().cloned().unwrap_or_default();
        let mapped = match name {
            "bank-account" => map_relations(
                "account",
                &attributes,
                &[
                    ("iban", "iban"),
                    ("swift", "bic"),
                    ("bic", "bic"),
                    ("holder-name", "holder"),
                    ("account-name", "holder"),
                ],
            ),
            "legal-entity" => map_relations(
                "entity",
                &attributes,
                &[
                    ("name", "name"),
                    ("registration-number", "registrationNumber"),
                    ("lei", "lei"),
                    ("country", "country"),
                    ("country-code", "country"),
                ],
            ),
            other => match kinds::by_sco(other) {
                Some(kind) => salw_object(kind, &attributes),
                None => {
                    import.unmapped.push(Unmapped {
                        id,
                        reason: format!("object {other} has no Cordon mapping"),
                    });
                    continue;
                }
            },
        };
        let (observed, kind_json, rest) = mapped;
        for relation in rest {
            import.unmapped.push(Unmapped {
                id: format!("{id} {relation}"),
                reason: format!("object relation {relation} of {name} has no Cordon field"),
            });
        }
        if observed.is_empty() {
            import.unmapped.push(Unmapped {
                id,
                reason: format!("object {name} has no attribute Cordon maps"),
            });
            continue;
        }
        let mut ind = base(object["comment"].as_str().unwrap_or_default(), object)?;
        ind.insert(kind_json.into(), Value::Object(observed));
        import.indicators.push(imported(id, ind));
    }
    Ok(import)
}

/// TLP labels from least to most restrictive.
const TLP_ORDER: [&str; 5] = [
    "TLP_CLEAR",
    "TLP_GREEN",
    "TLP_AMBER",
    "TLP_AMBER_STRICT",
    "TLP_RED",
];

/// The TLP of `tags` (MISP `tlp:` tags; `tlp:white` is TLP:CLEAR), never less restrictive than
/// `floor`; more than one TLP tag in one list is an error.
fn tlp_of(tags: &[Value], floor: Option<&'static str>) -> Result<Option<&'static str>, String> {
    let mut found: Option<&'static str> = None;
    for tag in tags {
        let name = tag["name"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let label = match name.as_str() {
            "tlp:clear" | "tlp:white" => "TLP_CLEAR",
            "tlp:green" => "TLP_GREEN",
            "tlp:amber" => "TLP_AMBER",
            "tlp:amber+strict" => "TLP_AMBER_STRICT",
            "tlp:red" => "TLP_RED",
            _ => continue,
        };
        if found.is_some_and(|t| t != label) {
            return Err("Tag: more than one TLP tag".into());
        }
        found = Some(label);
    }
    let rank = |label: &str| TLP_ORDER.iter().position(|t| *t == label);
    Ok(match (found, floor) {
        (Some(own), Some(floor)) if rank(floor) > rank(own) => Some(floor),
        (Some(own), _) => Some(own),
        (None, floor) => floor,
    })
}

fn imported(id: String, indicator: Map<String, Value>) -> Imported {
    Imported {
        stix_id: id,
        indicator: Value::Object(indicator),
        withheld: Vec::new(),
        revoked: false,
    }
}

fn list<'a>(event: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], BundleError> {
    match event.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(BundleError(format!("Event.{key}: expected a list"))),
    }
}

type Mapped = (Map<String, Value>, &'static str, Vec<String>);

fn map_relations(kind: &'static str, attributes: &[Value], table: &[(&str, &str)]) -> Mapped {
    let mut observed = Map::new();
    let mut rest = Vec::new();
    for attribute in attributes {
        let relation = attribute["object_relation"].as_str().unwrap_or_default();
        let value = attribute["value"].as_str().unwrap_or_default();
        match table.iter().find(|(r, _)| *r == relation) {
            Some((_, field)) => {
                observed.insert((*field).into(), json!(value));
            }
            None => rest.push(relation.to_string()),
        }
    }
    (observed, kind, rest)
}

fn salw_object(kind: &'static kinds::Kind, attributes: &[Value]) -> Mapped {
    let mut observed = Map::new();
    let mut rest = Vec::new();
    for attribute in attributes {
        let relation = attribute["object_relation"].as_str().unwrap_or_default();
        let value = attribute["value"].as_str().unwrap_or_default();
        let Some(field) = kind.field_by_stix(relation) else {
            rest.push(relation.to_string());
            continue;
        };
        let value = match field.ty {
            FieldType::Str => json!(value),
            FieldType::Bool => json!(value == "1" || value.eq_ignore_ascii_case("true")),
            FieldType::List => {
                let list = observed.entry(field.json).or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(json!(value));
                }
                continue;
            }
            FieldType::Enum(prefix) => json!(format!("{prefix}{}", value.to_ascii_uppercase())),
        };
        observed.insert(field.json.into(), value);
    }
    (observed, kind.json, rest)
}
