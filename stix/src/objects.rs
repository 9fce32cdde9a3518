//! The objects every Cordon STIX view starts with: Cordon's own identity, the extension
//! definitions of the SALW observables, of the indicator's Cordon properties and of the
//! handling marking, the TLP 2.0 marking definitions (OASIS's, with their exact ids) and
//! Cordon's handling markings; and the identity of each originating member.

use serde_json::{Value, json};

use crate::ids::domain_id;
use crate::kinds::KINDS;

/// When Cordon's STIX vocabulary (these definitions) was fixed.
pub const DEFINED: &str = "2026-12-07T00:00:00.000Z";

/// The OASIS TLP 2.0 extension definition.
pub const TLP2_EXTENSION: &str = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

/// TLP 2.0 marking definitions: (proto3 JSON name, `tlp_2_0` value, marking id).
pub const TLP2_MARKINGS: [(&str, &str, &str); 5] = [
    (
        "TLP_CLEAR",
        "clear",
        "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    ),
    (
        "TLP_GREEN",
        "green",
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    ),
    (
        "TLP_AMBER",
        "amber",
        "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    ),
    (
        "TLP_AMBER_STRICT",
        "amber+strict",
        "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    ),
    (
        "TLP_RED",
        "red",
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
    ),
];

/// TLP 1.0 marking definitions of STIX 2.1 (section 7.2.1.4), read on import only:
/// (proto3 JSON TLP 2.0 name, marking id). TLP:WHITE became TLP:CLEAR.
pub const TLP1_MARKINGS: [(&str, &str); 4] = [
    (
        "TLP_CLEAR",
        "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    ),
    (
        "TLP_GREEN",
        "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    ),
    (
        "TLP_AMBER",
        "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    ),
    (
        "TLP_RED",
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
    ),
];

/// Europol handling codes as Cordon handling markings: (proto3 JSON name, code, meaning).
pub const HANDLING_CODES: [(&str, &str, &str); 4] = [
    ("HANDLING_CODE_H0", "H0", "use only to fight crime"),
    (
        "HANDLING_CODE_H1",
        "H1",
        "not in judicial proceedings without the originator's permission",
    ),
    (
        "HANDLING_CODE_H2",
        "H2",
        "not to be disseminated without the originator's permission",
    ),
    (
        "HANDLING_CODE_H3",
        "H3",
        "other restrictions, see the narrative",
    ),
];

pub fn cordon_identity_id() -> String {
    domain_id("identity", "cordon")
}

/// The extension definition carrying an indicator's Cordon properties (id, originator,
/// signature and field commitments...).
pub fn indicator_extension_id() -> String {
    domain_id("extension-definition", "cordon-indicator")
}

pub fn handling_extension_id() -> String {
    domain_id("extension-definition", "cordon-handling")
}

pub fn observable_extension_id(sco_type: &str) -> String {
    domain_id("extension-definition", sco_type)
}

pub fn handling_marking_id(code: &str) -> String {
    domain_id("marking-definition", &format!("handling {code}"))
}

pub fn no_reshare_marking_id() -> String {
    domain_id("marking-definition", "no-reshare")
}

/// Source protection is not a TLP label: its own marking, so that tools downstream see it.
pub fn source_protected_marking_id() -> String {
    domain_id("marking-definition", "source-protected")
}

pub fn tlp_marking_id(tlp: &str) -> Option<&'static str> {
    TLP2_MARKINGS
        .iter()
        .find(|(name, _, _)| *name == tlp)
        .map(|(_, _, id)| *id)
}

/// The identity object of an originating member (its id, for example "GH", is its name).
pub fn member_identity(member: &str) -> Value {
    json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": member_identity_id(member),
        "created": DEFINED,
        "modified": DEFINED,
        "name": member,
        "identity_class": "organization",
        "description": format!("Cordon member {member}"),
    })
}

pub fn member_identity_id(member: &str) -> String {
    domain_id("identity", &format!("member {member}"))
}

/// Cordon's identity, the extension definitions and the marking definitions, in an order in
/// which every reference points backwards.
pub fn vocabulary() -> Vec<Value> {
    let cordon = cordon_identity_id();
    let mut objects = vec![json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": cordon,
        "created": DEFINED,
        "modified": DEFINED,
        "name": "Cordon",
        "identity_class": "system",
        "description": "Cordon gateways: sharing of risk indicators on small arms and light weapons",
    })];
    for (_, tlp, id) in TLP2_MARKINGS {
        objects.push(json!({
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": id,
            "created": "2022-10-01T00:00:00.000Z",
            "name": format!("TLP:{}", tlp.to_uppercase()),
            "extensions": {
                TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": tlp}
            },
        }));
    }
    objects.push(extension_definition(
        &indicator_extension_id(),
        "Cordon indicator",
        "Properties of a Cordon indicator that STIX has no place for: cordon_id (the Cordon \
         UUID), originator (member id), publisher (agency id), created, severity (low, medium, \
         high, critical), protection, no_reshare, releasable_to, supersedes (Cordon id), \
         source (description, reliability, credibility, handling_code), signature (key_id, \
         version, signature and, per redactable field, path, digest and salt, in base64) and \
         withheld (the paths withheld from this recipient).",
        "property-extension",
    ));
    objects.push(extension_definition(
        &handling_extension_id(),
        "Cordon handling marking",
        "A handling restriction on marked objects: handling_code (Europol H0 to H3, or \
         no-reshare for the third-party rule, or source-protected) and statement.",
        "property-extension",
    ));
    for (_, code, meaning) in HANDLING_CODES {
        objects.push(handling_marking(&handling_marking_id(code), code, meaning));
    }
    objects.push(handling_marking(
        &no_reshare_marking_id(),
        "no-reshare",
        "never passed on by a recipient (third-party rule)",
    ));
    objects.push(handling_marking(
        &source_protected_marking_id(),
        "source-protected",
        "source-protected: shared only inside a circle of trusted partners, never further",
    ));
    for kind in KINDS {
        let properties: Vec<&str> = kind.fields.iter().map(|f| f.stix).collect();
        objects.push(extension_definition(
            &observable_extension_id(kind.sco),
            kind.sco,
            &format!(
                "A {} in Cordon's SALW risk indicators. Properties (strings unless noted): {}.",
                kind.title,
                properties.join(", ")
            ),
            "new-sco",
        ));
    }
    objects
}

fn extension_definition(id: &str, name: &str, schema: &str, extension_type: &str) -> Value {
    json!({
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": id,
        "created_by_ref": cordon_identity_id(),
        "created": DEFINED,
        "modified": DEFINED,
        "name": name,
        "description": schema,
        "schema": schema,
        "version": "1.0.0",
        "extension_types": [extension_type],
    })
}

fn handling_marking(id: &str, code: &str, statement: &str) -> Value {
    json!({
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": id,
        "created_by_ref": cordon_identity_id(),
        "created": DEFINED,
        "name": format!("Cordon handling {code}"),
        "extensions": {
            handling_extension_id(): {
                "extension_type": "property-extension",
                "handling_code": code,
                "statement": statement,
            }
        },
    })
}
