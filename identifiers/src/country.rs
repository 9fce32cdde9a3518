//! ISO 3166-1 alpha-2 country codes, and which territories share their state's registers.

use super::CheckFailure;

/// Every code officially assigned by ISO 3166-1 alpha-2 (249), sorted for binary search.
///
/// Taken from the ISO 3166 Maintenance Agency's list as carried by Debian's `iso-codes`;
/// a test checks the count and the order.
#[rustfmt::skip]
pub const ISO_3166_ALPHA_2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ",
    "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ",
    "DE", "DJ", "DK", "DM", "DO", "DZ",
    "EC", "EE", "EG", "EH", "ER", "ES", "ET",
    "FI", "FJ", "FK", "FM", "FO", "FR",
    "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY",
    "HK", "HM", "HN", "HR", "HT", "HU",
    "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT",
    "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ",
    "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY",
    "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ",
    "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM",
    "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY",
    "QA",
    "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ",
    "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ",
    "UA", "UG", "UM", "US", "UY", "UZ",
    "VA", "VC", "VE", "VG", "VI", "VN", "VU",
    "WF", "WS",
    "YE", "YT",
    "ZA", "ZM", "ZW",
];

/// User-assigned codes accepted as countries. Kosovo (`XK`) is not assigned by ISO, but SWIFT
/// (BICs, IBANs), the EU and many national registers use it, so indicators must be able to name it.
pub const ACCEPTED_USER_ASSIGNED_CODES: [&str; 1] = ["XK"];

/// Dependent territories and the state whose ship and aircraft registers, MMSI or ICAO address
/// blocks they may share. Used only to soften risk signals, never to accept a code.
#[rustfmt::skip]
const TERRITORY_STATES: &[(&str, &str)] = &[
    ("AI", "GB"), ("BM", "GB"), ("FK", "GB"), ("GG", "GB"), ("GI", "GB"), ("GS", "GB"),
    ("IM", "GB"), ("IO", "GB"), ("JE", "GB"), ("KY", "GB"), ("MS", "GB"), ("PN", "GB"),
    ("SH", "GB"), ("TC", "GB"), ("VG", "GB"),
    ("BL", "FR"), ("GF", "FR"), ("GP", "FR"), ("MF", "FR"), ("MQ", "FR"), ("NC", "FR"),
    ("PF", "FR"), ("PM", "FR"), ("RE", "FR"), ("TF", "FR"), ("WF", "FR"), ("YT", "FR"),
    ("AW", "NL"), ("BQ", "NL"), ("CW", "NL"), ("SX", "NL"),
    ("AS", "US"), ("GU", "US"), ("MP", "US"), ("PR", "US"), ("UM", "US"), ("VI", "US"),
    ("FO", "DK"), ("GL", "DK"),
    ("BV", "NO"), ("SJ", "NO"),
    ("CC", "AU"), ("CX", "AU"), ("HM", "AU"), ("NF", "AU"),
    ("CK", "NZ"), ("NU", "NZ"), ("TK", "NZ"),
    ("HK", "CN"), ("MO", "CN"),
    ("AX", "FI"),
];

/// Whether `code` is an ISO 3166-1 alpha-2 country code (capital letters) or an accepted
/// user-assigned one (`XK`).
pub fn is_country_code(code: &str) -> bool {
    ISO_3166_ALPHA_2.binary_search(&code).is_ok() || ACCEPTED_USER_ASSIGNED_CODES.contains(&code)
}

/// [`is_country_code`] with a message saying what is wrong.
pub fn check_country_code(code: &str) -> Result<(), CheckFailure> {
    if code.len() != 2 || !code.bytes().all(|byte| byte.is_ascii_uppercase()) {
        return Err(CheckFailure::form(
            "expected an ISO 3166-1 alpha-2 country code (2 capital letters)",
        ));
    }
    if !is_country_code(code) {
        return Err(CheckFailure::form(format!(
            "{code} is not an ISO 3166-1 alpha-2 country code"
        )));
    }
    Ok(())
}

/// Whether two country codes name the same state, or a dependent territory and its state
/// (a Bermuda-registered aircraft carries a United Kingdom ICAO address).
pub fn same_state_or_dependency(first: &str, second: &str) -> bool {
    let state_of = |code: &str| {
        TERRITORY_STATES
            .iter()
            .find(|(territory, _)| *territory == code)
            .map(|(_, state)| *state)
    };
    first == second || state_of(first) == Some(second) || state_of(second) == Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(), &str>) {
        let actual = check_country_code(input).map_err(|failure| failure.to_string());
        assert_eq!(actual, expected.map_err(str::to_string), "input {input:?}");
    }

    #[test]
    fn country_codes() {
        check("GH", Ok(()));
        check("SN", Ok(()));
        check("AQ", Ok(()));
        check("SS", Ok(()));
        check("BQ", Ok(()));
        check("XK", Ok(()));
        check("XX", Err("XX is not an ISO 3166-1 alpha-2 country code"));
        // Withdrawn codes: Netherlands Antilles, Yugoslavia, and the UK's non-ISO "UK".
        check("AN", Err("AN is not an ISO 3166-1 alpha-2 country code"));
        check("YU", Err("YU is not an ISO 3166-1 alpha-2 country code"));
        check("UK", Err("UK is not an ISO 3166-1 alpha-2 country code"));
        check(
            "gh",
            Err("expected an ISO 3166-1 alpha-2 country code (2 capital letters)"),
        );
        check(
            "GHA",
            Err("expected an ISO 3166-1 alpha-2 country code (2 capital letters)"),
        );
        check(
            "",
            Err("expected an ISO 3166-1 alpha-2 country code (2 capital letters)"),
        );
    }

    #[test]
    fn list_is_complete_sorted_and_unique() {
        assert!(
            ISO_3166_ALPHA_2.windows(2).all(|pair| pair[0] < pair[1]),
            "sorted, no duplicates"
        );
        assert!(
            ISO_3166_ALPHA_2
                .iter()
                .all(|code| check_country_code(code).is_ok())
        );
        assert!(
            !ISO_3166_ALPHA_2.contains(&"XK"),
            "XK is user-assigned, listed separately"
        );
    }

    #[test]
    fn territories_and_their_states() {
        let cases = [
            ("GB", "GB", true),
            ("BM", "GB", true),
            ("GB", "BM", true),
            ("HK", "CN", true),
            ("LR", "PA", false),
            // Two territories of one state keep separate registers.
            ("BM", "KY", false),
        ];
        for (first, second, expected) in cases {
            assert_eq!(
                same_state_or_dependency(first, second),
                expected,
                "{first} {second}"
            );
        }
    }
}
