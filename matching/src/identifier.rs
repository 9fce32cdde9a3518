//! Identifiers as written in the field ("IMO 9234563", "mscu 123456-6", IBANs in groups of
//! four) brought to one form before they are compared, and checked for what they claim to be.

use cordon_identifiers::{self as checks, CheckFailure};

/// What an identifier identifies. Two identifiers match only when their kinds are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    /// IMO ship number.
    Imo,
    /// Maritime Mobile Service Identity.
    Mmsi,
    /// ICAO 24-bit aircraft address.
    Icao24,
    AircraftRegistration,
    /// ISO 6346 container number.
    Container,
    BillOfLading,
    /// End-user certificate number; its issuing country is the qualifier.
    EucNumber,
    Iban,
    Bic,
    /// Legal Entity Identifier.
    Lei,
    /// A company's registration number.
    RegistrationNumber,
    /// A weapon's serial number; its manufacturer is the qualifier.
    WeaponSerial,
    /// A UN/LOCODE on a route: a transit port of a declaration, a port of a route indicator.
    RoutePort,
    /// ISO 3166-1 alpha-2 country where a route starts.
    OriginCountry,
    /// A country a route passes through.
    TransitCountry,
    /// The country where a route ends.
    DestinationCountry,
}

impl IdKind {
    pub const ALL: [IdKind; 16] = [
        IdKind::Imo,
        IdKind::Mmsi,
        IdKind::Icao24,
        IdKind::AircraftRegistration,
        IdKind::Container,
        IdKind::BillOfLading,
        IdKind::EucNumber,
        IdKind::Iban,
        IdKind::Bic,
        IdKind::Lei,
        IdKind::RegistrationNumber,
        IdKind::WeaponSerial,
        IdKind::RoutePort,
        IdKind::OriginCountry,
        IdKind::TransitCountry,
        IdKind::DestinationCountry,
    ];

    /// The name used in match features and explanations (`imo`, `container`, …).
    pub fn name(self) -> &'static str {
        match self {
            IdKind::Imo => "imo",
            IdKind::Mmsi => "mmsi",
            IdKind::Icao24 => "icao24",
            IdKind::AircraftRegistration => "aircraft_registration",
            IdKind::Container => "container",
            IdKind::BillOfLading => "bill_of_lading",
            IdKind::EucNumber => "euc_number",
            IdKind::Iban => "iban",
            IdKind::Bic => "bic",
            IdKind::Lei => "lei",
            IdKind::RegistrationNumber => "registration_number",
            IdKind::WeaponSerial => "weapon_serial",
            IdKind::RoutePort => "route_port",
            IdKind::OriginCountry => "origin_country",
            IdKind::TransitCountry => "transit_country",
            IdKind::DestinationCountry => "destination_country",
        }
    }

    /// The kind named `name` (see [`IdKind::name`]).
    pub fn parse(name: &str) -> Option<IdKind> {
        IdKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// An identifier in its one form: `value` is what a match reports (`EUC/2026/7731`,
/// `MSCU1234566`), `key` what is compared (the value without the separators people write
/// differently, such as `EUC20267731`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    pub value: String,
    pub key: String,
}

/// Longest identifier value considered; anything longer is not an identifier of these kinds
/// and is not matched (which also bounds the work a hostile value can cause).
pub const MAX_IDENTIFIER_LENGTH: usize = 64;

fn upper_without(raw: &str, dropped: impl Fn(char) -> bool) -> String {
    raw.chars()
        .filter(|character| !dropped(*character))
        .flat_map(char::to_uppercase)
        .collect()
}

fn alphanumeric_upper(raw: &str) -> String {
    upper_without(raw, |character| !character.is_alphanumeric())
}

fn plain(value: String) -> Option<Normalised> {
    (!value.is_empty()).then(|| Normalised {
        key: value.clone(),
        value,
    })
}

/// `raw` in its one form, or `None` when nothing of the kind's form remains (empty, or
/// too long, or the wrong length for kinds of fixed length). A value with a wrong check digit
/// still normalises: the same wrong number in an indicator is a match, and [`check`] reports
/// the failure separately.
pub fn normalise(kind: IdKind, raw: &str) -> Option<Normalised> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > MAX_IDENTIFIER_LENGTH * 4 {
        return None;
    }
    let normalised = match kind {
        IdKind::Imo => {
            let upper = alphanumeric_upper(raw);
            let digits = upper.strip_prefix("IMO").unwrap_or(&upper);
            (digits.len() == 7 && digits.bytes().all(|byte| byte.is_ascii_digit()))
                .then(|| digits.to_string())
                .and_then(plain)
        }
        IdKind::Mmsi => {
            let digits = alphanumeric_upper(raw);
            (digits.len() == 9 && digits.bytes().all(|byte| byte.is_ascii_digit()))
                .then_some(digits)
                .and_then(plain)
        }
        IdKind::Icao24 => {
            let hex = alphanumeric_upper(raw);
            (hex.len() == 6 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
                .then_some(hex)
                .and_then(plain)
        }
        IdKind::Container => {
            let compact = alphanumeric_upper(raw);
            (compact.len() == 11 && compact.is_ascii())
                .then_some(compact)
                .and_then(plain)
        }
        IdKind::Bic => {
            let compact = alphanumeric_upper(raw);
            match compact.len() {
                8 => plain(compact),
                // The primary office written with its branch code XXX is the same BIC.
                11 if compact.ends_with("XXX") => plain(compact[..8].to_string()),
                11 => plain(compact),
                _ => None,
            }
        }
        IdKind::Lei => {
            let compact = alphanumeric_upper(raw);
            (compact.len() == 20).then_some(compact).and_then(plain)
        }
        IdKind::Iban | IdKind::BillOfLading | IdKind::RoutePort => plain(alphanumeric_upper(raw)),
        IdKind::OriginCountry | IdKind::TransitCountry | IdKind::DestinationCountry => {
            let code = alphanumeric_upper(raw);
            (code.len() == 2 && code.is_ascii())
                .then_some(code)
                .and_then(plain)
        }
        // Numbers people write with their own separators: reported as written (upper case,
        // without spaces), compared without any separator.
        IdKind::EucNumber
        | IdKind::RegistrationNumber
        | IdKind::WeaponSerial
        | IdKind::AircraftRegistration => {
            let value = upper_without(raw, char::is_whitespace);
            let key = alphanumeric_upper(raw);
            (!key.is_empty()).then_some(Normalised { value, key })
        }
    }?;
    (normalised.key.len() <= MAX_IDENTIFIER_LENGTH).then_some(normalised)
}

/// A red flag about one identifier as written, found without any indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where it is (the caller's field path).
    pub field: String,
    /// `failed_check_digit`, `malformed_identifier`, `not_a_ship_station`,
    /// `mmsi_flag_mismatch`.
    pub flag: &'static str,
    pub explanation: String,
}

/// Checks `raw`, an identifier of `kind` at `field`, as DOMAIN.md's identifier checks do, and
/// returns what is wrong with it, if anything. The checks of kinds without any (bills of
/// lading, registration numbers, serials) find nothing.
pub fn check(kind: IdKind, raw: &str, field: &str) -> Option<Finding> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let compact = alphanumeric_upper(raw);
    let failure: Result<(), CheckFailure> = match kind {
        IdKind::Imo => {
            let digits = compact.strip_prefix("IMO").unwrap_or(&compact);
            checks::check_imo(digits)
        }
        IdKind::Mmsi => match checks::mmsi_kind(&compact) {
            Ok(checks::MmsiKind::ShipStation { .. }) => Ok(()),
            Ok(other) => {
                return Some(Finding {
                    field: field.to_string(),
                    flag: "not_a_ship_station",
                    explanation: format!(
                        "{field}: MMSI {compact} is not a ship station ({other:?})"
                    ),
                });
            }
            Err(failure) => Err(failure),
        },
        IdKind::Icao24 => checks::check_icao24(&compact).map(|_| ()),
        IdKind::Container => checks::check_container_number(&compact),
        IdKind::Iban => checks::check_iban(&compact),
        IdKind::Bic => checks::bic_form(&compact).map(|_| ()),
        IdKind::Lei => checks::check_lei(&compact),
        IdKind::RoutePort => checks::check_unlocode(&compact),
        IdKind::OriginCountry | IdKind::TransitCountry | IdKind::DestinationCountry => {
            checks::check_country_code(&compact)
        }
        IdKind::AircraftRegistration
        | IdKind::BillOfLading
        | IdKind::EucNumber
        | IdKind::RegistrationNumber
        | IdKind::WeaponSerial => Ok(()),
    };
    let failure = failure.err()?;
    let flag = match failure {
        CheckFailure::CheckDigit { .. } => "failed_check_digit",
        CheckFailure::Form(_) => "malformed_identifier",
    };
    Some(Finding {
        field: field.to_string(),
        flag,
        explanation: format!("{field}: {} {failure}", kind.name()),
    })
}

/// A vessel's MMSI whose Maritime Identification Digits belong to another state than the
/// declared flag: a risk signal (DOMAIN.md), not an error.
pub fn mmsi_flag_mismatch(mmsi: &str, flag: &str, field: &str) -> Option<Finding> {
    let compact = alphanumeric_upper(mmsi);
    let flag = alphanumeric_upper(flag);
    let mid = checks::ship_station_mid(&compact).ok()?;
    let country = checks::mid_country(mid)?;
    (!flag.is_empty() && !checks::same_state_or_dependency(country, &flag)).then(|| Finding {
        field: field.to_string(),
        flag: "mmsi_flag_mismatch",
        explanation: format!(
            "{field}: MMSI {compact} belongs to {country}, but the vessel's declared flag is {flag}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_normalised(kind: IdKind, raw: &str, expected: Option<(&str, &str)>) {
        let normalised = normalise(kind, raw);
        let got = normalised
            .as_ref()
            .map(|normalised| (normalised.value.as_str(), normalised.key.as_str()));
        assert_eq!(got, expected, "{kind:?} {raw:?}");
    }

    #[test]
    fn identifiers_as_written_in_the_field() {
        use IdKind::*;
        check_normalised(Imo, "IMO 9234563", Some(("9234563", "9234563")));
        check_normalised(Imo, "imo:9234563", Some(("9234563", "9234563")));
        check_normalised(Imo, "9234563", Some(("9234563", "9234563")));
        check_normalised(Imo, "923456", None);
        check_normalised(
            Container,
            "mscu 123456-6",
            Some(("MSCU1234566", "MSCU1234566")),
        );
        check_normalised(Container, "MSCU 123456", None);
        check_normalised(
            Iban,
            "de89 3704 0044 0532 0130 00",
            Some(("DE89370400440532013000", "DE89370400440532013000")),
        );
        check_normalised(Icao24, "4b1805", Some(("4B1805", "4B1805")));
        check_normalised(Icao24, "4g1805", None);
        check_normalised(
            EucNumber,
            "euc/2026/7731",
            Some(("EUC/2026/7731", "EUC20267731")),
        );
        check_normalised(
            EucNumber,
            " EUC / 2026 / 7731 ",
            Some(("EUC/2026/7731", "EUC20267731")),
        );
        check_normalised(Bic, "COBADEFFXXX", Some(("COBADEFF", "COBADEFF")));
        check_normalised(Bic, "cobade ff", Some(("COBADEFF", "COBADEFF")));
        check_normalised(RoutePort, "tg lfw", Some(("TGLFW", "TGLFW")));
        check_normalised(DestinationCountry, "bf", Some(("BF", "BF")));
        check_normalised(DestinationCountry, "BFA", None);
        check_normalised(
            AircraftRegistration,
            "ex-12345",
            Some(("EX-12345", "EX12345")),
        );
        check_normalised(Mmsi, "636 012 345", Some(("636012345", "636012345")));
        check_normalised(Imo, "", None);
        check_normalised(Imo, &"9".repeat(10_000), None);
        check_normalised(BillOfLading, &"A".repeat(65), None);
    }

    #[test]
    fn failed_checks_are_findings_not_errors() {
        let finding = check(IdKind::Container, "MSCU1234567", "transport.containers[0]").unwrap();
        assert_eq!(finding.flag, "failed_check_digit");
        assert_eq!(finding.field, "transport.containers[0]");
        assert!(finding.explanation.contains("expected 6"), "{finding:?}");
        assert_eq!(check(IdKind::Container, "mscu 123456-6", "x"), None);
        assert_eq!(
            check(IdKind::Imo, "IMO 9234564", "transport.vessel.imo")
                .unwrap()
                .flag,
            "failed_check_digit"
        );
        assert_eq!(check(IdKind::Imo, "IMO 9234563", "x"), None);
        assert_eq!(
            check(IdKind::Iban, "DE88370400440532013000", "payments[0].iban")
                .unwrap()
                .flag,
            "failed_check_digit"
        );
        assert_eq!(
            check(IdKind::Lei, "5493001KJTIIGC8Y1R12", "parties[0].lei"),
            None
        );
        assert_eq!(
            check(IdKind::Icao24, "000000", "transport.aircraft.icao24")
                .unwrap()
                .flag,
            "malformed_identifier"
        );
        assert_eq!(
            check(IdKind::Mmsi, "970123456", "transport.vessel.mmsi")
                .unwrap()
                .flag,
            "not_a_ship_station"
        );
        assert_eq!(check(IdKind::BillOfLading, "anything at all", "x"), None);
    }

    #[test]
    fn mmsi_and_flag() {
        // 636 is Liberia.
        assert_eq!(mmsi_flag_mismatch("636012345", "LR", "v"), None);
        let finding = mmsi_flag_mismatch("636012345", "PA", "transport.vessel.mmsi").unwrap();
        assert_eq!(finding.flag, "mmsi_flag_mismatch");
        assert!(finding.explanation.contains("LR"), "{finding:?}");
        assert_eq!(mmsi_flag_mismatch("636012345", "", "v"), None);
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in IdKind::ALL {
            assert_eq!(IdKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(IdKind::parse("shoe_size"), None);
    }
}
