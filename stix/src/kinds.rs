//! The SALW observables: one extension-defined STIX cyber-observable type per Cordon indicator
//! kind, with the property names of both sides.

/// How a property's value is written on each side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A string on both sides.
    Str,
    /// A boolean on both sides.
    Bool,
    /// A list of strings on both sides.
    List,
    /// A proto3 enum: `PREFIX_VALUE` in Cordon's JSON, `value` (lower case) in STIX.
    Enum(&'static str),
}

#[derive(Debug)]
pub struct Field {
    /// The proto3 JSON name (lowerCamelCase).
    pub json: &'static str,
    /// The STIX property name (snake_case).
    pub stix: &'static str,
    pub ty: FieldType,
}

#[derive(Debug)]
pub struct Kind {
    /// The indicator's `oneof kind` member in proto3 JSON, for example `endUserCertificate`.
    pub json: &'static str,
    /// The STIX cyber-observable type, for example `salw-euc`.
    pub sco: &'static str,
    /// What the observable is, for the indicator's name and the extension's description.
    pub title: &'static str,
    pub fields: &'static [Field],
    /// The ID contributing properties of the observable (STIX 2.1 section 2.9); when none of
    /// them is present, every property present contributes.
    pub contributing: &'static [&'static str],
}

const fn f(json: &'static str, stix: &'static str, ty: FieldType) -> Field {
    Field { json, stix, ty }
}

use FieldType::{Bool, Enum, List, Str};

pub static KINDS: &[Kind] = &[
    Kind {
        json: "vessel",
        sco: "salw-vessel",
        title: "vessel",
        fields: &[
            f("imo", "imo", Str),
            f("mmsi", "mmsi", Str),
            f("name", "name", Str),
            f("flag", "flag", Str),
            f("imoCheckDigitOverride", "imo_check_digit_override", Bool),
        ],
        contributing: &["imo", "mmsi"],
    },
    Kind {
        json: "aircraft",
        sco: "salw-aircraft",
        title: "aircraft",
        fields: &[
            f("icao24", "icao24", Str),
            f("registration", "registration", Str),
            f("stateOfRegistry", "state_of_registry", Str),
        ],
        contributing: &["icao24", "registration"],
    },
    Kind {
        json: "entity",
        sco: "salw-party",
        title: "party",
        fields: &[
            f("name", "name", Str),
            f("role", "role", Enum("ENTITY_ROLE_")),
            f("country", "country", Str),
            f("registrationNumber", "registration_number", Str),
            f("lei", "lei", Str),
        ],
        contributing: &["name", "country", "registration_number", "lei"],
    },
    Kind {
        json: "endUserCertificate",
        sco: "salw-euc",
        title: "end-user certificate",
        fields: &[
            f("number", "number", Str),
            f("issuingCountry", "issuing_country", Str),
            f("issuingAuthority", "issuing_authority", Str),
            f("status", "status", Enum("EUC_STATUS_")),
            f("endUser", "end_user", Str),
        ],
        contributing: &["number", "issuing_country"],
    },
    Kind {
        json: "consignment",
        sco: "salw-consignment",
        title: "consignment",
        fields: &[
            f("containerNumber", "container_number", Str),
            f("billOfLading", "bill_of_lading", Str),
            f("hsCodes", "hs_codes", List),
            f("portOfLoading", "port_of_loading", Str),
            f("portOfDischarge", "port_of_discharge", Str),
            f("route", "route", List),
        ],
        contributing: &["container_number", "bill_of_lading"],
    },
    Kind {
        json: "weapon",
        sco: "salw-firearm",
        title: "firearm",
        fields: &[
            f("manufacturer", "manufacturer", Str),
            f("model", "model", Str),
            f("serialNumber", "serial_number", Str),
            f("calibre", "calibre", Str),
            f("countryOfManufacture", "country_of_manufacture", Str),
            f("markingStatus", "marking_status", Enum("MARKING_STATUS_")),
        ],
        contributing: &["manufacturer", "serial_number"],
    },
    Kind {
        json: "account",
        sco: "salw-account",
        title: "account",
        fields: &[
            f("iban", "iban", Str),
            f("bic", "bic", Str),
            f("holder", "holder", Str),
        ],
        contributing: &["iban", "bic"],
    },
    Kind {
        json: "route",
        sco: "salw-route",
        title: "route",
        fields: &[
            f("originCountry", "origin_country", Str),
            f("transitCountries", "transit_countries", List),
            f("destinationCountry", "destination_country", Str),
            f("ports", "ports", List),
        ],
        contributing: &[],
    },
];

pub fn by_json(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.json == name)
}

pub fn by_sco(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.sco == name)
}

impl Kind {
    pub fn field_by_stix(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.stix == name)
    }
}
