//! Validation of whole indicators and batches through the public API: which fields are
//! rejected, which raise warnings, and that every error is reported at once.

use cordon_indicator::{FieldError, Limits, validate_batch, validate_indicator};
use cordon_proto::v1::Indicator;

/// The common fields of a valid indicator, to which each case adds its kind or overrides.
const BASE: &str = r#""tlp":"TLP_GREEN","validFrom":"2026-11-01T00:00:00Z""#;

fn parse(json: &str) -> Indicator {
    serde_json::from_str(json).unwrap_or_else(|error| panic!("{json}: {error}"))
}

/// An indicator from the base fields plus `fields` (JSON members without braces).
fn indicator(fields: &str) -> Indicator {
    parse(&format!("{{{BASE},{fields}}}"))
}

fn errors_of(indicator: &Indicator) -> Vec<FieldError> {
    validate_indicator(indicator, &Limits::default())
        .err()
        .unwrap_or_default()
}

/// Each expected entry must start the Display ("path: message") of the error at its position,
/// and there must be no other error.
fn assert_errors(indicator: &Indicator, expected: &[&str]) {
    let actual: Vec<String> = errors_of(indicator)
        .iter()
        .map(ToString::to_string)
        .collect();
    let matches = actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(actual, expected)| actual.starts_with(expected));
    assert!(
        matches,
        "expected errors starting with {expected:#?}\ngot {actual:#?}"
    );
}

/// Checks the errors of `base fields + fields`.
fn check(fields: &str, expected_errors: &[&str]) {
    assert_errors(&indicator(fields), expected_errors);
}

/// Checks that `base fields + fields` is valid and raises exactly the expected warnings
/// (each entry starting its warning).
fn check_warnings(fields: &str, expected: &[&str]) {
    let warnings = validate_indicator(&indicator(fields), &Limits::default())
        .unwrap_or_else(|errors| panic!("{fields}: rejected: {errors:?}"));
    let matches = warnings.len() == expected.len()
        && warnings
            .iter()
            .zip(expected)
            .all(|(actual, expected)| actual.starts_with(expected));
    assert!(
        matches,
        "{fields}: expected warnings starting with {expected:#?}\ngot {warnings:#?}"
    );
}

const VESSEL: &str = r#""vessel":{"imo":"9319466"}"#;

#[test]
fn common_fields() {
    check(VESSEL, &[]);
    assert_errors(
        &parse(r#"{"validFrom":"2026-11-01T00:00:00Z","vessel":{"imo":"9319466"}}"#),
        &[
            "tlp: is not set, expected one of TLP_CLEAR, TLP_GREEN, TLP_AMBER, TLP_AMBER_STRICT, TLP_RED",
        ],
    );
    assert_errors(
        &parse(r#"{"tlp":"TLP_RED","vessel":{"imo":"9319466"}}"#),
        &["validFrom: is not set"],
    );
    assert_errors(
        &parse(r#"{"tlp":"TLP_RED","validFrom":"2026-11-01T00:00:00Z"}"#),
        &[
            "kind: no kind is set, expected one of vessel, aircraft, entity, endUserCertificate, consignment, weapon, account, route",
        ],
    );
    check(&format!(r#""confidence":100,{VESSEL}"#), &[]);
    check(
        &format!(r#""confidence":101,{VESSEL}"#),
        &["confidence: is 101, expected 0 to 100"],
    );
    check(
        &format!(r#""severity":"SEVERITY_UNSPECIFIED",{VESSEL}"#),
        &[],
    );
    check(
        &format!(r#""protection":"PROTECTION_SOURCE_PROTECTED","noReshare":true,{VESSEL}"#),
        &[],
    );
}

#[test]
fn validity_times() {
    check(
        &format!(r#""validUntil":"2026-11-02T00:00:00Z",{VESSEL}"#),
        &[],
    );
    check(
        &format!(r#""validUntil":"2026-11-01T00:00:00.000000001Z",{VESSEL}"#),
        &[],
    );
    check(
        &format!(r#""validUntil":"2026-11-01T00:00:00Z",{VESSEL}"#),
        &["validUntil: must be after valid_from"],
    );
    check(
        &format!(r#""validUntil":"2026-10-01T00:00:00Z",{VESSEL}"#),
        &["validUntil: must be after valid_from"],
    );
    check(
        &format!(r#""created":"2026-10-01T00:00:00Z",{VESSEL}"#),
        &[],
    );

    // Out-of-range timestamps cannot be written in JSON; they arrive over gRPC.
    let mut out_of_range = indicator(VESSEL);
    out_of_range.valid_from.as_mut().unwrap().nanos = 1_000_000_000;
    out_of_range.created = Some(pbjson_types::Timestamp {
        seconds: 253_402_300_800,
        nanos: 0,
    });
    assert_errors(
        &out_of_range,
        &[
            "created: seconds 253402300800 outside years 0001 to 9999",
            "validFrom: nanos 1000000000 out of range, expected 0 to 999999999",
        ],
    );
}

#[test]
fn unknown_enum_numbers() {
    // The JSON form only has names; numbers the protocol does not define arrive over gRPC.
    let mut unknown = indicator(r#""weapon":{"serialNumber":"A1"}"#);
    unknown.tlp = 9;
    unknown.severity = 7;
    unknown.protection = -1;
    if let Some(cordon_proto::v1::indicator::Kind::Weapon(weapon)) = &mut unknown.kind {
        weapon.marking_status = 4;
    }
    assert_errors(
        &unknown,
        &[
            "tlp: unknown value 9, expected one of TLP_CLEAR",
            "severity: unknown value 7, expected one of SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH, SEVERITY_CRITICAL (or unset)",
            "protection: unknown value -1",
            "weapon.markingStatus: unknown value 4",
        ],
    );
}

#[test]
fn ids() {
    check(
        &format!(r#""id":"0195f3c4-7a2b-7c3d-8e4f-1a2b3c4d5e6f",{VESSEL}"#),
        &[],
    );
    check(
        &format!(r#""id":"indicator-1",{VESSEL}"#),
        &["id: expected a UUID in lowercase hyphenated form"],
    );
    check(
        &format!(r#""id":"0195F3C4-7A2B-7C3D-8E4F-1A2B3C4D5E6F",{VESSEL}"#),
        &["id: expected a UUID"],
    );
    check(
        &format!(r#""supersedes":"0195f3c4-7a2b-7c3d-8e4f-1a2b3c4d5e6f",{VESSEL}"#),
        &[],
    );
    check(
        &format!(r#""supersedes":"42",{VESSEL}"#),
        &["supersedes: expected a UUID"],
    );
    check(
        &format!(
            r#""id":"0195f3c4-7a2b-7c3d-8e4f-1a2b3c4d5e6f","supersedes":"0195f3c4-7a2b-7c3d-8e4f-1a2b3c4d5e6f",{VESSEL}"#
        ),
        &["supersedes: names the indicator itself"],
    );
    check(
        &format!(r#""originator":"GH","publisher":"GH/customs",{VESSEL}"#),
        &[],
    );
    check(
        &format!(r#""originator":"gh","publisher":"GH/Customs",{VESSEL}"#),
        &[
            "originator: expected a member id",
            "publisher: agency after '/' must be",
        ],
    );
}

#[test]
fn recipients_and_tags() {
    check(
        &format!(r#""releasableTo":["NG","NG/customs","ECOWAS"],{VESSEL}"#),
        &[],
    );
    check(
        &format!(r#""releasableTo":["NG","ng",""],{VESSEL}"#),
        &[
            "releasableTo[1]: expected a member id",
            "releasableTo[2]: is empty",
        ],
    );
    let recipients: Vec<String> = (0..65).map(|number| format!("\"M{number}\"")).collect();
    check(
        &format!(r#""releasableTo":[{}],{VESSEL}"#, recipients.join(",")),
        &["releasableTo: has 65 items, expected at most 64"],
    );

    let long_tag = "x".repeat(65);
    check(
        &format!(r#""tags":["ais-gap","{}"],{VESSEL}"#, "x".repeat(64)),
        &[],
    );
    check(
        &format!(r#""tags":["", " ", "ok", "{long_tag}", "bell\u0007"],{VESSEL}"#),
        &[
            "tags[0]: is empty",
            "tags[1]: is empty",
            "tags[3]: is 65 bytes long, expected at most 64",
            "tags[4]: contains a control character at byte 4",
        ],
    );
    let tags: Vec<String> = (0..65).map(|number| format!("\"t{number}\"")).collect();
    check(
        &format!(r#""tags":[{}],{VESSEL}"#, tags.join(",")),
        &["tags: has 65 items, expected at most 64"],
    );
}

#[test]
fn text_lengths_and_control_characters() {
    let limit = Limits::default().max_narrative_bytes;
    check(
        &format!(r#""narrative":"{}",{VESSEL}"#, "n".repeat(limit)),
        &[],
    );
    check(
        &format!(r#""narrative":"{}",{VESSEL}"#, "n".repeat(limit + 1)),
        &["narrative: is 16385 bytes long, expected at most 16384"],
    );
    // Multi-byte characters count in bytes, as stored.
    check(
        &format!(r#""narrative":"{}",{VESSEL}"#, "é".repeat(limit / 2 + 1)),
        &["narrative: is 16386 bytes long"],
    );
    check(
        &format!(r#""narrative":"line one\nline two\ttabbed",{VESSEL}"#),
        &[],
    );
    check(
        &format!(r#""narrative":"look \u001b[2J here",{VESSEL}"#),
        &[
            "narrative: contains a control character at byte 5, expected text without control characters other than line breaks and tabs",
        ],
    );
    check(
        r#""vessel":{"imo":"9319466","name":"MV\nEXAMPLE"}"#,
        &["vessel.name: contains a control character at byte 2, expected printable text"],
    );
    check(
        &format!(
            r#""vessel":{{"imo":"9319466","name":"{}"}}"#,
            "N".repeat(257)
        ),
        &["vessel.name: is 257 bytes long, expected at most 256"],
    );
    // An over-long identifier is reported once, for its length, not again for its form.
    check(
        &format!(r#""vessel":{{"imo":"{}"}}"#, "9".repeat(300)),
        &["vessel.imo: is 300 bytes long"],
    );
}

#[test]
fn custom_limits_apply() {
    let limits = Limits {
        max_short_string: 8,
        max_tags: 1,
        ..Limits::default()
    };
    let indicator = indicator(r#""tags":["a","b"],"vessel":{"imo":"9319466","name":"MV EXAMPLE"}"#);
    let paths: Vec<String> = validate_indicator(&indicator, &limits)
        .unwrap_err()
        .into_iter()
        .map(|error| error.path)
        .collect();
    assert_eq!(paths, ["tags", "vessel.name"]);
}

#[test]
fn source_block() {
    check(
        &format!(
            r#""source":{{"description":"informant","reliability":"X","credibility":0,"handlingCode":"HANDLING_CODE_H2"}},{VESSEL}"#
        ),
        &[],
    );
    check(
        &format!(r#""source":{{"reliability":"D","credibility":5}},{VESSEL}"#),
        &[
            "source.reliability: unknown grade, expected A, B, C or X",
            "source.credibility: is 5, expected 1 to 4 (or 0 when not graded)",
        ],
    );
    check(
        &format!(r#""source":{{"reliability":"a"}},{VESSEL}"#),
        &["source.reliability"],
    );
    check(
        &format!(
            r#""source":{{"description":"{}"}},{VESSEL}"#,
            "s".repeat(4097)
        ),
        &["source.description: is 4097 bytes long, expected at most 4096"],
    );
}

#[test]
fn vessels() {
    check(
        r#""vessel":{"imo":"IMO 9319466","mmsi":"636012345","name":"MV EXAMPLE STAR","flag":"LR"}"#,
        &[],
    );
    check(r#""vessel":{"mmsi":"636012345"}"#, &[]);
    check(
        r#""vessel":{"name":"MV NOBODY","flag":"LR"}"#,
        &["vessel: has neither imo nor mmsi"],
    );
    check(
        r#""vessel":{"imo":"9234564"}"#,
        &["vessel.imo: check digit is 4, expected 3"],
    );
    check(
        r#""vessel":{"imo":"923456"}"#,
        &["vessel.imo: expected 7 digits"],
    );
    check(
        r#""vessel":{"imo":"9234563","mmsi":"63601234"}"#,
        &["vessel.mmsi: expected exactly 9 digits"],
    );
    check(
        r#""vessel":{"mmsi":"002320001"}"#,
        &["vessel.mmsi: is a coast station"],
    );
    check(
        r#""vessel":{"mmsi":"023200001"}"#,
        &["vessel.mmsi: is a group of ships number"],
    );
    check(
        r#""vessel":{"mmsi":"111232001"}"#,
        &["vessel.mmsi: is a search-and-rescue aircraft"],
    );
    check(
        r#""vessel":{"mmsi":"970123456"}"#,
        &["vessel.mmsi: is an AIS-SART"],
    );
    check(
        r#""vessel":{"mmsi":"972123456"}"#,
        &["vessel.mmsi: is a man-overboard device"],
    );
    check(
        r#""vessel":{"mmsi":"974123456"}"#,
        &["vessel.mmsi: is an EPIRB"],
    );
    check(
        r#""vessel":{"mmsi":"200123456"}"#,
        &["vessel.mmsi: is in no allocated range"],
    );
    check(
        r#""vessel":{"imo":"9234563","flag":"XX"}"#,
        &["vessel.flag: XX is not an ISO 3166-1 alpha-2 country code"],
    );
    check(
        r#""vessel":{"imo":"9234563","flag":"lr"}"#,
        &["vessel.flag: expected an ISO 3166-1 alpha-2 country code"],
    );
    check(r#""vessel":{"imo":"9234563","flag":"XK"}"#, &[]);
}

#[test]
fn vessel_warnings() {
    check_warnings(r#""vessel":{"mmsi":"636012345","flag":"LR"}"#, &[]);
    check_warnings(
        r#""vessel":{"mmsi":"636012345","flag":"PA"}"#,
        &["vessel.mmsi: MID 636 is allocated to LR, but the flag is PA"],
    );
    check_warnings(r#""vessel":{"mmsi":"538001234","flag":"MH"}"#, &[]);
    check_warnings(
        r#""vessel":{"mmsi":"371001234","flag":"LR"}"#,
        &["vessel.mmsi: MID 371 is allocated to PA, but the flag is LR"],
    );
    // Bermuda's register is British: no signal for a British flag.
    check_warnings(r#""vessel":{"mmsi":"310001234","flag":"GB"}"#, &[]);
    // MID 217 is allocated to nobody we know: no signal rather than a false one.
    check_warnings(r#""vessel":{"mmsi":"217001234","flag":"DE"}"#, &[]);
    // No flag, no comparison.
    check_warnings(r#""vessel":{"mmsi":"636012345"}"#, &[]);
    check_warnings(
        r#""vessel":{"imo":"9234564","imoCheckDigitOverride":true}"#,
        &[
            "vessel.imo: check digit is 4, expected 3; accepted because imoCheckDigitOverride is set",
        ],
    );
    check_warnings(
        r#""vessel":{"imo":"9234563","imoCheckDigitOverride":true}"#,
        &[],
    );
    // The override covers the check digit only, not a malformed number.
    check(
        r#""vessel":{"imo":"92345","imoCheckDigitOverride":true}"#,
        &["vessel.imo: expected 7 digits"],
    );
}

#[test]
fn aircraft() {
    check(
        r#""aircraft":{"icao24":"4B1805","registration":"EX-12345"}"#,
        &[],
    );
    check(
        r#""aircraft":{"icao24":"4b1805","stateOfRegistry":"CH"}"#,
        &[],
    );
    check(
        r#""aircraft":{"registration":"EX-12345"}"#,
        &["aircraft.icao24: is empty, expected 6 hexadecimal characters"],
    );
    check(
        r#""aircraft":{"icao24":"000000"}"#,
        &["aircraft.icao24: 000000 is never assigned"],
    );
    check(
        r#""aircraft":{"icao24":"4B18G5"}"#,
        &["aircraft.icao24: expected 6 hexadecimal characters"],
    );
    check(
        r#""aircraft":{"icao24":"4B1805","stateOfRegistry":"SWISS"}"#,
        &["aircraft.stateOfRegistry"],
    );
    check_warnings(
        r#""aircraft":{"icao24":"4B1805","stateOfRegistry":"TR"}"#,
        &["aircraft.icao24: address is in the block of CH, but the state of registry is TR"],
    );
    check_warnings(
        r#""aircraft":{"icao24":"400123","stateOfRegistry":"BM"}"#,
        &[],
    );
}

#[test]
fn entities() {
    check(
        r#""entity":{"name":"Example Trading FZE","role":"ENTITY_ROLE_BROKER","country":"AE","lei":"5493001KJTIIGC8Y1R12"}"#,
        &[],
    );
    check(
        r#""entity":{"name":"Example Ltd","lei":"213800KUD8LAJWSQ9D15"}"#,
        &[],
    );
    check(
        r#""entity":{"country":"AE"}"#,
        &["entity.name: is empty, expected the name of the person or company"],
    );
    check(r#""entity":{"name":"   "}"#, &["entity.name: is empty"]);
    check(
        r#""entity":{"name":"Example","lei":"5493001KJTIIGC8Y1R13"}"#,
        &["entity.lei: check digits are 13, expected 12"],
    );
    check(
        r#""entity":{"name":"Example","lei":"5493001KJTIIGC8Y1R"}"#,
        &["entity.lei: expected 20 capital letters and digits"],
    );
    check(
        r#""entity":{"name":"Example","country":"UK"}"#,
        &["entity.country: UK is not an ISO 3166-1 alpha-2 country code"],
    );
}

#[test]
fn end_user_certificates() {
    check(
        r#""endUserCertificate":{"number":"EUC/2026/7731","issuingCountry":"SN","status":"EUC_STATUS_FORGED"}"#,
        &[],
    );
    check(
        r#""endUserCertificate":{"issuingAuthority":"Ministry of Defence"}"#,
        &[
            "endUserCertificate.number: is empty, expected the certificate number",
            "endUserCertificate.issuingCountry: is empty, expected an ISO 3166-1 alpha-2 country code",
        ],
    );
    check(
        r#""endUserCertificate":{"number":"7731","issuingCountry":"XX"}"#,
        &["endUserCertificate.issuingCountry: XX is not"],
    );
}

#[test]
fn consignments() {
    check(
        r#""consignment":{"containerNumber":"CSQU3054383","hsCodes":["930190"],"portOfLoading":"NL RTM","portOfDischarge":"GHTEM","route":["TGLFW"]}"#,
        &[],
    );
    check(
        r#""consignment":{"billOfLading":"EXBL-2026-0098","hsCodes":["9306"]}"#,
        &[],
    );
    check(
        r#""consignment":{"hsCodes":["9306"],"portOfLoading":"TRMER"}"#,
        &["consignment: has neither containerNumber nor billOfLading"],
    );
    check(
        r#""consignment":{"containerNumber":"MSCU1234567"}"#,
        &["consignment.containerNumber: check digit is 7, expected 6"],
    );
    check(
        r#""consignment":{"containerNumber":"MSCX1234566"}"#,
        &["consignment.containerNumber: category (4th character) must be U"],
    );
    check(
        r#""consignment":{"billOfLading":"B1","hsCodes":["9302","93","","9302.00"]}"#,
        &[
            "consignment.hsCodes[1]: expected 4 to 10 digits",
            "consignment.hsCodes[2]: is empty, expected 4 to 10 digits",
            "consignment.hsCodes[3]: expected 4 to 10 digits",
        ],
    );
    check(
        r#""consignment":{"billOfLading":"B1","portOfLoading":"TRME1","portOfDischarge":"XXTEM","route":["TGLFW","TG-LFW"]}"#,
        &[
            "consignment.portOfLoading: the location code (last 3 characters) may only contain A-Z and 2-9",
            "consignment.portOfDischarge: the first 2 characters must be an ISO 3166-1 alpha-2 country code",
            "consignment.route[1]: expected a UN/LOCODE",
        ],
    );
}

#[test]
fn consignment_warnings() {
    check_warnings(
        r#""consignment":{"billOfLading":"B1","hsCodes":["930190","843320","9306"]}"#,
        &["consignment.hsCodes[1]: 843320 is outside chapter 93 (arms and ammunition)"],
    );
}

#[test]
fn weapons() {
    check(
        r#""weapon":{"manufacturer":"Example Arms Works","serialNumber":"A12345","countryOfManufacture":"RO"}"#,
        &[],
    );
    check(
        r#""weapon":{"model":"EX-47","markingStatus":"MARKING_STATUS_OBLITERATED"}"#,
        &[],
    );
    check(
        r#""weapon":{"manufacturer":"Example","markingStatus":"MARKING_STATUS_ALTERED"}"#,
        &[],
    );
    check(
        r#""weapon":{"serialNumber":"A12","markingStatus":"MARKING_STATUS_ALTERED"}"#,
        &[],
    );
    check(
        r#""weapon":{"model":"EX-47"}"#,
        &["weapon.serialNumber: is empty, expected the serial number"],
    );
    check(
        r#""weapon":{"model":"EX-47","markingStatus":"MARKING_STATUS_INTACT"}"#,
        &["weapon.serialNumber: is empty"],
    );
    check(
        r#""weapon":{"calibre":"7.62x39mm","markingStatus":"MARKING_STATUS_OBLITERATED"}"#,
        &["weapon: has no manufacturer, model or serialNumber, expected at least one of them"],
    );
    check(
        r#""weapon":{"serialNumber":"A1","countryOfManufacture":"SU"}"#,
        &["weapon.countryOfManufacture: SU is not"],
    );
}

#[test]
fn accounts() {
    check(
        r#""account":{"iban":"DE89370400440532013000","bic":"COBADEFF","holder":"Example Trading FZE"}"#,
        &[],
    );
    check(r#""account":{"iban":"GB82 WEST 1234 5698 7654 32"}"#, &[]);
    check(r#""account":{"bic":"NWBKGB2LXXX"}"#, &[]);
    check(
        r#""account":{"holder":"Example"}"#,
        &["account: has neither iban nor bic"],
    );
    check(
        r#""account":{"iban":"DE89370400440532013001"}"#,
        &["account.iban: check digits are 89, expected 62"],
    );
    check(
        r#""account":{"iban":"US64SVBKUS6S3300958879"}"#,
        &["account.iban: unknown IBAN country US"],
    );
    check(
        r#""account":{"iban":"NO93860111179470"}"#,
        &["account.iban: is 16 characters long, expected 15 for NO"],
    );
    check(
        r#""account":{"bic":"COBAXXFF"}"#,
        &["account.bic: characters 5 and 6 (XX) must be an ISO 3166-1 alpha-2 country code"],
    );
    check(
        r#""account":{"iban":"DE89370400440532013000","bic":"COBADEF"}"#,
        &["account.bic: expected 8 or 11"],
    );
    check_warnings(
        r#""account":{"bic":"COBADEF0"}"#,
        &["account.bic: location code F0 marks a test BIC"],
    );
    check_warnings(r#""account":{"bic":"COBADEFF"}"#, &[]);
}

#[test]
fn routes() {
    check(
        r#""route":{"originCountry":"TR","transitCountries":["TG"],"destinationCountry":"BF","ports":["TRMER","TG LFW"]}"#,
        &[],
    );
    check(r#""route":{"destinationCountry":"BF"}"#, &[]);
    check(
        r#""route":{}"#,
        &[
            "route: is empty, expected at least one of originCountry, transitCountries, destinationCountry, ports",
        ],
    );
    check(
        r#""route":{"originCountry":"TUR","transitCountries":["TG","XX",""],"destinationCountry":"bf"}"#,
        &[
            "route.originCountry: expected an ISO 3166-1 alpha-2 country code",
            "route.destinationCountry: expected an ISO 3166-1 alpha-2 country code",
            "route.transitCountries[1]: XX is not",
            "route.transitCountries[2]: is empty",
        ],
    );
    check(
        r#""route":{"ports":["TRMER","TRME1"]}"#,
        &["route.ports[1]: the location code"],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let indicator = parse(
        r#"{"confidence":150,"validFrom":"2026-11-10T00:00:00Z","validUntil":"2026-11-01T00:00:00Z",
            "tags":["ok",""],"source":{"credibility":9},
            "vessel":{"imo":"9234564","mmsi":"63601234","flag":"XX","name":"MV\u0000"}}"#,
    );
    let paths: Vec<String> = errors_of(&indicator)
        .into_iter()
        .map(|error| error.path)
        .collect();
    assert_eq!(
        paths,
        [
            "validUntil",
            "tlp",
            "confidence",
            "tags[1]",
            "source.credibility",
            "vessel.imo",
            "vessel.mmsi",
            "vessel.flag",
            "vessel.name",
        ]
    );
}

#[test]
fn batches() {
    let limits = Limits::default();
    let valid = indicator(VESSEL);
    let warned = indicator(r#""vessel":{"mmsi":"636012345","flag":"PA"}"#);
    let invalid = indicator(r#""vessel":{"imo":"9234564","flag":"XX"}"#);

    let warnings = validate_batch(&[valid.clone(), warned.clone()], &limits).unwrap();
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0].is_empty(), "{warnings:?}");
    assert_eq!(warnings[1].len(), 1, "{warnings:?}");

    let errors = validate_batch(
        &[valid.clone(), invalid.clone(), valid.clone(), invalid],
        &limits,
    )
    .unwrap_err();
    let located: Vec<(usize, &str)> = errors
        .iter()
        .map(|(index, error)| (*index, error.path.as_str()))
        .collect();
    assert_eq!(
        located,
        [
            (1, "vessel.imo"),
            (1, "vessel.flag"),
            (3, "vessel.imo"),
            (3, "vessel.flag")
        ]
    );

    let errors = validate_batch(&[], &limits).unwrap_err();
    assert_eq!(
        errors,
        [(
            0,
            FieldError::new(
                "indicators",
                "batch is empty, expected 1 to 1000 indicators"
            )
        )]
    );

    let small = Limits {
        max_batch: 2,
        ..Limits::default()
    };
    assert!(validate_batch(&[valid.clone(), valid.clone()], &small).is_ok());
    let errors = validate_batch(&[valid.clone(), valid.clone(), valid], &small).unwrap_err();
    assert_eq!(
        errors,
        [(
            0,
            FieldError::new("indicators", "batch has 3 indicators, expected at most 2")
        )]
    );
}

#[test]
fn batch_ids_are_unique() {
    let with_id = |id: &str| indicator(&format!(r#""id":"{id}",{VESSEL}"#));
    let first = with_id("0195f3c4-7a2b-7c3d-8e4f-1a2b3c4d5e6f");
    let second = with_id("0195f3c4-7a2b-7c3d-8e4f-1a2b3c4d5e70");
    let without_id = indicator(VESSEL);

    // Several indicators without an id are fine: the gateway assigns each its own.
    let batch = [first.clone(), without_id.clone(), second, without_id];
    assert!(validate_batch(&batch, &Limits::default()).is_ok());

    let errors = validate_batch(
        &[first.clone(), indicator(VESSEL), first],
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        errors,
        [(
            2,
            FieldError::new(
                "id",
                "same id as indicator 0 of this batch, expected ids unique in a batch"
            )
        )]
    );
}
