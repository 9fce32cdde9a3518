use serde_json::{Value, json};

use super::*;

/// A signed, fully populated indicator as a gateway stores it (proto3 JSON).
pub(crate) fn stored_vessel() -> Value {
    json!({
        "id": "0193a0c4-5e1f-7a2b-8c3d-4e5f60718293",
        "originator": "GH",
        "publisher": "GH/customs",
        "created": "2026-11-01T08:30:00.123456Z",
        "validFrom": "2026-11-01T00:00:00Z",
        "validUntil": "2027-05-01T00:00:00Z",
        "severity": "SEVERITY_HIGH",
        "confidence": 75,
        "tlp": "TLP_AMBER",
        "protection": "PROTECTION_STANDARD",
        "noReshare": true,
        "releasableTo": ["NG", "SN/police"],
        "tags": ["ais-gap", "transshipment"],
        "narrative": "AIS off for 70 hours; master's name is O'Brien \\ Sons.",
        "source": {
            "description": "port scanner image 2026/441",
            "reliability": "B",
            "credibility": 2,
            "handlingCode": "HANDLING_CODE_H2"
        },
        "supersedes": "0193a0c4-0000-7000-8000-000000000001",
        "signature": {
            "keyId": "gh-2026",
            "signature": "c2lnbmF0dXJl",
            "version": 2,
            "fields": [
                {"path": "source.description", "digest": "ZGlnZXN0MQ==", "salt": "c2FsdDE="},
                {"path": "vessel.mmsi", "digest": "ZGlnZXN0Mg=="}
            ]
        },
        "vessel": {
            "imo": "9234563",
            "name": "MV EXAMPLE STAR",
            "flag": "LR",
            "imoCheckDigitOverride": true
        }
    })
}

fn find<'a>(objects: &'a [Value], object_type: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| o["type"] == object_type)
        .collect()
}

#[test]
fn an_indicator_maps_to_one_stix_indicator_its_observable_and_relationships() {
    let objects = to_stix(&stored_vessel(), Export::default()).unwrap();
    let indicator = find(&objects, "indicator");
    assert_eq!(indicator.len(), 1);
    let indicator = indicator[0];
    assert_eq!(
        indicator["pattern"],
        "[salw-vessel:imo = '9234563' AND salw-vessel:name = 'MV EXAMPLE STAR' AND \
         salw-vessel:flag = 'LR' AND salw-vessel:imo_check_digit_override = true]"
    );
    assert_eq!(indicator["valid_from"], "2026-11-01T00:00:00Z");
    assert_eq!(indicator["confidence"], 75);
    assert_eq!(indicator["labels"], json!(["ais-gap", "transshipment"]));
    assert_eq!(
        indicator["object_marking_refs"],
        json!([
            "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
            objects::handling_marking_id("H2"),
            objects::no_reshare_marking_id(),
        ])
    );
    assert_eq!(
        indicator["created_by_ref"],
        objects::member_identity_id("GH")
    );
    assert!(indicator.get("revoked").is_none());

    let vessel = find(&objects, "salw-vessel");
    assert_eq!(vessel.len(), 1);
    assert_eq!(vessel[0]["imo"], "9234563");
    assert_eq!(vessel[0]["imo_check_digit_override"], true);
    assert_eq!(
        vessel[0]["id"],
        ids::observable_id(
            "salw-vessel",
            json!({"imo": "9234563"}).as_object().unwrap()
        )
    );

    let relationships = find(&objects, "relationship");
    let types: Vec<&str> = relationships
        .iter()
        .map(|r| r["relationship_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["related-to", "derived-from"]);
    assert_eq!(relationships[0]["target_ref"], vessel[0]["id"]);
    assert_eq!(
        relationships[1]["target_ref"],
        indicator_id("0193a0c4-0000-7000-8000-000000000001")
    );
}

#[test]
fn cordon_to_stix_to_cordon_gives_the_same_indicator() {
    let original = stored_vessel();
    let objects = to_stix(&original, Export::default()).unwrap();
    let indicator = find(&objects, "indicator")[0];
    let back = from_stix(indicator).unwrap();
    assert_eq!(back.indicator, original);
    assert!(!back.revoked);

    // Every kind, with lists and enums, and an indicator with neither validFrom nor source.
    let kinds = [
        json!({"aircraft": {"icao24": "4b1805", "registration": "HB-JVE", "stateOfRegistry": "CH"}}),
        json!({"entity": {"name": "Example Trading FZE", "role": "ENTITY_ROLE_BROKER", "country": "AE",
                          "registrationNumber": "DMCC-1234", "lei": "213800KUD8LAJWSQ9D15"}}),
        json!({"endUserCertificate": {"number": "EUC/2026/7731", "issuingCountry": "SN",
               "issuingAuthority": "Ministry of Defence", "status": "EUC_STATUS_FORGED",
               "endUser": "Example Security Services SARL"}}),
        json!({"consignment": {"containerNumber": "MSCU1234566", "billOfLading": "EXBL-2026-0098",
               "hsCodes": ["843320", "930190"], "portOfLoading": "TRMER", "portOfDischarge": "GHTEM",
               "route": ["MTMAR", "ESALG"]}}),
        json!({"weapon": {"manufacturer": "Example Arms", "model": "X1", "serialNumber": "A12345",
               "calibre": "7.62x39mm", "countryOfManufacture": "BG", "markingStatus": "MARKING_STATUS_ALTERED"}}),
        json!({"account": {"iban": "DE89370400440532013000", "bic": "COBADEFFXXX", "holder": "Example Ltd"}}),
        json!({"route": {"originCountry": "BG", "transitCountries": ["TR", "LY"],
               "destinationCountry": "SD", "ports": ["TRMER"]}}),
    ];
    for kind in kinds {
        let mut original = json!({
            "id": "0193a0c4-5e1f-7a2b-8c3d-4e5f60718294",
            "originator": "SN",
            "created": "2026-11-03T10:00:00Z",
            "tlp": "TLP_GREEN",
            "severity": "SEVERITY_CRITICAL",
        });
        original
            .as_object_mut()
            .unwrap()
            .extend(kind.as_object().unwrap().clone());
        let objects = to_stix(&original, Export::default()).unwrap();
        let indicator = find(&objects, "indicator")[0];
        assert_eq!(indicator["valid_from"], "2026-11-03T10:00:00.000Z");
        assert_eq!(from_stix(indicator).unwrap().indicator, original);
    }
}

#[test]
fn stix_ids_are_deterministic_and_of_the_versions_the_specification_asks() {
    let a = to_stix(&stored_vessel(), Export::default()).unwrap();
    let b = to_stix(&stored_vessel(), Export::default()).unwrap();
    assert_eq!(a, b);
    for object in &a {
        let id = object["id"].as_str().unwrap();
        let (object_type, uuid) = id.split_once("--").unwrap();
        assert_eq!(object_type, object["type"]);
        let version = uuid::Uuid::parse_str(uuid).unwrap().get_version_num();
        let wanted = if object_type.starts_with("salw-") {
            5
        } else {
            4
        };
        assert_eq!(version, wanted, "{id}");
    }
    for object in objects::vocabulary() {
        let id = object["id"].as_str().unwrap();
        assert!(ids::is_valid(id, object["type"].as_str().unwrap()), "{id}");
    }
}

#[test]
fn withheld_fields_are_absent_and_listed_and_a_retraction_revokes() {
    let mut released = stored_vessel();
    let fields = released.as_object_mut().unwrap();
    fields.remove("source");
    fields["vessel"].as_object_mut().unwrap().remove("name");
    let withheld = ["source".to_string(), "vessel.name".to_string()];
    let objects = to_stix(
        &released,
        Export {
            withheld: &withheld,
            revoked_at: Some("2026-11-05T09:00:00Z"),
        },
    )
    .unwrap();
    let text = serde_json::to_string(&objects).unwrap();
    assert!(!text.contains("port scanner"), "{text}");
    assert!(!text.contains("EXAMPLE STAR"), "{text}");
    let indicator = find(&objects, "indicator")[0];
    assert_eq!(indicator["revoked"], true);
    assert_eq!(indicator["modified"], "2026-11-05T09:00:00.000Z");
    assert_eq!(indicator["created"], "2026-11-01T08:30:00.123456Z");
    // The handling marking came from the withheld source: it is gone too.
    assert!(
        !indicator["object_marking_refs"]
            .as_array()
            .unwrap()
            .contains(&json!(objects::handling_marking_id("H2")))
    );
    let back = from_stix(indicator).unwrap();
    assert!(back.revoked);
    assert_eq!(back.withheld, withheld);
    assert_eq!(back.indicator, released);
}

#[test]
fn an_indicator_with_nothing_observable_is_refused() {
    let mut released = stored_vessel();
    released["vessel"] = json!({});
    assert_eq!(
        to_stix(&released, Export::default()),
        Err(MapError::NothingObservable)
    );
}

#[test]
fn a_foreign_indicator_imports_from_its_pattern_alone() {
    let foreign = json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--1d6b8c7a-4a3e-4a7b-9c1e-2f3a4b5c6d7e",
        "created": "2026-10-01T00:00:00.000Z",
        "modified": "2026-10-01T00:00:00.000Z",
        "pattern": "[salw-euc:number = 'MOD/2026/0042' AND salw-euc:issuing_country = 'NE' AND salw-euc:status = 'forged']",
        "pattern_type": "stix",
        "valid_from": "2026-10-01T00:00:00Z",
        "confidence": 60,
        "labels": ["forged-euc"],
        "description": "Forged certificate seen at two brokers.",
        "object_marking_refs": ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"]
    });
    let imported = from_stix(&foreign).unwrap();
    assert_eq!(
        imported.indicator,
        json!({
            "validFrom": "2026-10-01T00:00:00Z",
            "confidence": 60,
            "tags": ["forged-euc"],
            "narrative": "Forged certificate seen at two brokers.",
            "tlp": "TLP_AMBER",
            "endUserCertificate": {"number": "MOD/2026/0042", "issuingCountry": "NE", "status": "EUC_STATUS_FORGED"}
        })
    );
}

#[test]
fn unmappable_indicators_say_why() {
    let base = |pattern: &str, pattern_type: &str| {
        json!({
            "type": "indicator", "spec_version": "2.1",
            "id": "indicator--1d6b8c7a-4a3e-4a7b-9c1e-2f3a4b5c6d7e",
            "created": "2026-10-01T00:00:00.000Z", "modified": "2026-10-01T00:00:00.000Z",
            "valid_from": "2026-10-01T00:00:00Z", "pattern": pattern, "pattern_type": pattern_type
        })
    };
    let cases = [
        (
            base("[ipv4-addr:value = '198.51.100.1']", "stix"),
            "ipv4-addr",
        ),
        (
            base("[salw-vessel:imo = '1' AND salw-party:name = 'x']", "stix"),
            "one observable",
        ),
        (
            base("[salw-vessel:tonnage = '1']", "stix"),
            "no property tonnage",
        ),
        (
            base("[salw-vessel:imo = '1' AND salw-vessel:imo = '2']", "stix"),
            "compared twice",
        ),
        (
            base("[salw-consignment:route[1] = 'X']", "stix"),
            "in order",
        ),
        (base("alert tcp any any", "snort"), "pattern_type"),
        (
            {
                let mut marked = base("[salw-vessel:imo = '9319466']", "stix");
                marked["granular_markings"] = json!([{"selectors": ["pattern"],
                    "marking_ref": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"}]);
                marked
            },
            "granular_markings",
        ),
    ];
    for (object, wanted) in cases {
        let err = from_stix(&object).unwrap_err().to_string();
        assert!(err.contains(wanted), "{wanted}: {err}");
    }
}

fn bundle(objects: Value) -> Value {
    json!({"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": objects})
}

#[test]
fn a_bundle_imports_its_indicators_and_reports_the_rest() {
    let mut objects = to_stix(&stored_vessel(), Export::default()).unwrap();
    objects.extend(objects::vocabulary());
    objects.push(json!({
        "type": "malware", "spec_version": "2.1",
        "id": "malware--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061",
        "created": "2026-10-01T00:00:00.000Z", "modified": "2026-10-01T00:00:00.000Z",
        "name": "not ours", "is_family": false
    }));
    objects.push(json!({
        "type": "indicator", "spec_version": "2.1",
        "id": "indicator--2d6b8c7a-4a3e-4a7b-9c1e-2f3a4b5c6d7e",
        "created": "2026-10-01T00:00:00.000Z", "modified": "2026-10-01T00:00:00.000Z",
        "valid_from": "2026-10-01T00:00:00Z", "pattern": "[file:name = 'x']", "pattern_type": "stix"
    }));
    let import = read_bundle(&bundle(json!(objects))).unwrap();
    assert_eq!(import.indicators.len(), 1);
    assert_eq!(import.indicators[0].indicator, stored_vessel());
    let reported: Vec<&str> = import.unmapped.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        reported,
        [
            "indicator--2d6b8c7a-4a3e-4a7b-9c1e-2f3a4b5c6d7e",
            "malware--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061",
        ]
    );
}

#[test]
fn bad_bundles_are_refused_naming_the_property() {
    let good_object = to_stix(&stored_vessel(), Export::default()).unwrap()[1].clone();
    let mut wrong_version = good_object.clone();
    wrong_version["spec_version"] = json!("2.0");
    let mut bad_id = good_object.clone();
    bad_id["id"] = json!("indicator--1234");
    let mut mistyped_id = good_object.clone();
    mistyped_id["id"] = json!("malware--1d6b8c7a-4a3e-4a7b-9c1e-2f3a4b5c6d7e");
    let cases = [
        (bundle(json!([wrong_version])), "objects[0].spec_version"),
        (bundle(json!([bad_id])), "objects[0].id"),
        (
            bundle(json!([good_object.clone(), mistyped_id])),
            "objects[1].id",
        ),
        (bundle(json!({"not": "a list"})), "objects: expected a list"),
        (
            json!({"type": "bundle", "id": "bundle--x", "objects": []}),
            "id:",
        ),
        (
            json!({"type": "bundle", "spec_version": "2.0",
                   "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": []}),
            "STIX 2.0",
        ),
        (json!([]), "bundle: expected"),
    ];
    for (bundle, wanted) in cases {
        let err = read_bundle(&bundle).unwrap_err().to_string();
        assert!(err.contains(wanted), "{wanted}: {err}");
    }
}

#[test]
fn a_misp_event_maps_what_it_can_and_reports_the_rest() {
    let event = json!({"Event": {
        "uuid": "5f0c7a38-7a3b-4b8e-9d61-0c1a2b3c4d5e",
        "info": "Payments for a diverted consignment",
        "date": "2026-11-20",
        "Tag": [{"name": "tlp:amber"}, {"name": "misp:tool=\"cordon-test\""}],
        "Attribute": [
            {"uuid": "a1", "type": "iban", "value": "DE89370400440532013000", "comment": "paid the broker"},
            {"uuid": "a2", "type": "ip-dst", "value": "198.51.100.7"},
            {"uuid": "a3", "type": "bic", "value": "NWBKGB2L", "Tag": [{"name": "tlp:red"}]},
            {"uuid": "a4", "type": "bic", "value": "COBADEFF", "Tag": [{"name": "tlp:clear"}]}
        ],
        "Object": [
            {"uuid": "o1", "name": "bank-account", "Attribute": [
                {"object_relation": "iban", "type": "iban", "value": "GB29NWBK60161331926819"},
                {"object_relation": "swift", "type": "bic", "value": "NWBKGB2L"},
                {"object_relation": "holder-name", "type": "text", "value": "Example Ltd",
                 "Tag": [{"name": "tlp:amber+strict"}]},
                {"object_relation": "currency", "type": "text", "value": "GBP"}
            ]},
            {"uuid": "o2", "name": "salw-vessel", "Attribute": [
                {"object_relation": "imo", "type": "text", "value": "9234563"},
                {"object_relation": "flag", "type": "text", "value": "LR"}
            ]},
            {"uuid": "o3", "name": "domain-ip", "Attribute": []}
        ]
    }});
    let import = misp::read_event(&event).unwrap();
    let indicators: Vec<&Value> = import.indicators.iter().map(|i| &i.indicator).collect();
    assert_eq!(
        indicators,
        [
            &json!({"tlp": "TLP_AMBER", "narrative": "Payments for a diverted consignment: paid the broker",
                    "validFrom": "2026-11-20T00:00:00Z", "account": {"iban": "DE89370400440532013000"}}),
            // An attribute's own tag makes it stricter, never looser, than the event.
            &json!({"tlp": "TLP_RED", "narrative": "Payments for a diverted consignment",
                    "validFrom": "2026-11-20T00:00:00Z", "account": {"bic": "NWBKGB2L"}}),
            &json!({"tlp": "TLP_AMBER", "narrative": "Payments for a diverted consignment",
                    "validFrom": "2026-11-20T00:00:00Z", "account": {"bic": "COBADEFF"}}),
            // An object's attribute tagged stricter makes the whole object stricter.
            &json!({"tlp": "TLP_AMBER_STRICT", "narrative": "Payments for a diverted consignment",
                    "validFrom": "2026-11-20T00:00:00Z",
                    "account": {"iban": "GB29NWBK60161331926819", "bic": "NWBKGB2L", "holder": "Example Ltd"}}),
            &json!({"tlp": "TLP_AMBER", "narrative": "Payments for a diverted consignment",
                    "validFrom": "2026-11-20T00:00:00Z", "vessel": {"imo": "9234563", "flag": "LR"}}),
        ]
    );
    let reported: Vec<(&str, &str)> = import
        .unmapped
        .iter()
        .map(|u| (u.id.as_str(), u.reason.as_str()))
        .collect();
    assert_eq!(
        reported,
        [
            ("a2", "attribute type ip-dst has no Cordon mapping"),
            (
                "o1 currency",
                "object relation currency of bank-account has no Cordon field"
            ),
            ("o3", "object domain-ip has no Cordon mapping"),
        ]
    );
}

#[test]
fn timestamps_get_millisecond_precision_and_read_back_as_cordon_wrote_them() {
    use mapping::{proto_timestamp, stix_timestamp};
    for (cordon, stix) in [
        ("2026-11-01T00:00:00Z", "2026-11-01T00:00:00.000Z"),
        ("2026-11-01T00:00:00.5Z", "2026-11-01T00:00:00.500Z"),
        ("2026-11-01T00:00:00.120Z", "2026-11-01T00:00:00.120Z"),
        ("2026-11-01T00:00:00.123456Z", "2026-11-01T00:00:00.123456Z"),
        (
            "2026-11-01T00:00:00.123456789Z",
            "2026-11-01T00:00:00.123456789Z",
        ),
    ] {
        assert_eq!(stix_timestamp(cordon), stix);
        let proto_form = if cordon.ends_with(".5Z") {
            "2026-11-01T00:00:00.500Z"
        } else {
            cordon
        };
        assert_eq!(proto_timestamp(stix), proto_form);
    }
    assert_eq!(
        proto_timestamp("2026-11-01T00:00:00.123000Z"),
        "2026-11-01T00:00:00.123Z"
    );
    assert_eq!(
        proto_timestamp("2026-11-01T00:00:00.123450000Z"),
        "2026-11-01T00:00:00.123450Z"
    );
}

#[test]
fn indicator_ids_turn_back_into_cordon_ids() {
    let v7 = "0193a0c4-5e1f-7a2b-8c3d-4e5f60718293";
    let stix = indicator_id(v7);
    assert_eq!(stix, "indicator--0193a0c4-5e1f-4a2b-8c3d-4e5f60718293");
    assert_eq!(cordon_id_candidates(&stix), [v7.to_string()]);
    // A client's UUIDv4 chosen to equal a UUIDv7's STIX id does not collide with it.
    let squatter = stix.trim_start_matches("indicator--");
    assert_ne!(indicator_id(squatter), stix);
    assert!(ids::is_valid(&indicator_id(squatter), "indicator"));
    assert!(!cordon_id_candidates(&indicator_id(squatter)).contains(&squatter.to_string()));
    // Not a UUID: hashed, and it cannot be turned back.
    let other = indicator_id("not-a-uuid");
    assert!(ids::is_valid(&other, "indicator"));
    assert!(!cordon_id_candidates(&other).contains(&"not-a-uuid".to_string()));
    assert!(cordon_id_candidates("malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f").is_empty());
}
