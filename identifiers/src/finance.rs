//! Financial identifiers: IBAN (ISO 13616), BIC (ISO 9362) and LEI (ISO 17442).

use super::{CheckFailure, is_country_code, is_upper_alphanumeric, mod97};

/// IBAN length per country, from SWIFT's IBAN registry (89 countries as of 2025).
/// Territories that use their state's prefix (Åland FI, the French overseas lands FR, Jersey,
/// Guernsey and Man GB) have no entry of their own in the registry.
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BI", 27), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22),
    ("CY", 28), ("CZ", 24), ("DE", 22), ("DJ", 27), ("DK", 18), ("DO", 28), ("EE", 20),
    ("EG", 29), ("ES", 24), ("FI", 18), ("FK", 18), ("FO", 18), ("FR", 27), ("GB", 22),
    ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27), ("GT", 28), ("HN", 28), ("HR", 21),
    ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26), ("IT", 27), ("JO", 30),
    ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20),
    ("LV", 21), ("LY", 25), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MN", 20),
    ("MR", 27), ("MT", 31), ("MU", 30), ("NI", 28), ("NL", 18), ("NO", 15), ("OM", 23),
    ("PK", 24), ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22),
    ("RU", 33), ("SA", 24), ("SC", 31), ("SD", 18), ("SE", 24), ("SI", 19), ("SK", 24),
    ("SM", 27), ("SO", 23), ("ST", 25), ("SV", 28), ("TL", 23), ("TN", 24), ("TR", 26),
    ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20), ("YE", 30),
];

/// Countries whose banks issue IBANs although they are not (yet) in SWIFT's registry: the
/// West and Central African monetary unions (UEMOA, CEMAC) and a few others. Accounts there
/// are central to this project's region, so rejecting them as unknown would refuse real data.
#[rustfmt::skip]
const NATIONAL_IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AO", 25), ("BF", 28), ("BJ", 28), ("CF", 27), ("CG", 27), ("CI", 28), ("CM", 27),
    ("CV", 25), ("DZ", 26), ("GA", 27), ("GQ", 27), ("GW", 25), ("IR", 26), ("KM", 27),
    ("MA", 28), ("MG", 27), ("ML", 28), ("MZ", 25), ("NE", 28), ("SN", 28), ("TD", 27),
    ("TG", 28),
];

/// The IBAN length of a country of the SWIFT IBAN registry, or of a country whose banks
/// issue IBANs outside it ([`NATIONAL_IBAN_LENGTHS`]).
pub fn iban_length(country: &str) -> Option<usize> {
    [IBAN_LENGTHS, NATIONAL_IBAN_LENGTHS]
        .into_iter()
        .find_map(|table| {
            table
                .binary_search_by(|(code, _)| (*code).cmp(country))
                .ok()
                .map(|index| table[index].1)
        })
}

/// Checks an IBAN: capital letters and digits (spaces, as in the printed form, are ignored),
/// a registry country, that country's length, and the MOD 97-10 check digits.
pub fn check_iban(value: &str) -> Result<(), CheckFailure> {
    let compact: String = value
        .chars()
        .filter(|character| *character != ' ')
        .collect();
    if !is_upper_alphanumeric(&compact) {
        return Err(CheckFailure::form(
            "expected capital letters and digits (spaces allowed)",
        ));
    }
    if compact.len() > 34 {
        return Err(CheckFailure::form(format!(
            "is {} characters long, expected at most 34",
            compact.len()
        )));
    }
    let bytes = compact.as_bytes();
    if compact.len() < 5
        || !bytes[..2].iter().all(u8::is_ascii_uppercase)
        || !bytes[2..4].iter().all(u8::is_ascii_digit)
    {
        return Err(CheckFailure::form(
            "expected a 2-letter country code, 2 check digits, then the account number",
        ));
    }
    let (country, check_digits, account) = (&compact[..2], &compact[2..4], &compact[4..]);
    let Some(expected_length) = iban_length(country) else {
        return Err(CheckFailure::form(format!(
            "unknown IBAN country {country}, expected a country of the SWIFT IBAN registry"
        )));
    };
    if compact.len() != expected_length {
        return Err(CheckFailure::form(format!(
            "is {} characters long, expected {expected_length} for {country}",
            compact.len()
        )));
    }
    // ISO 13616: the check digits make (account, country, check digits) ≡ 1 mod 97,
    // so they are 98 minus the remainder with "00" in their place.
    let remainder = mod97(&format!("{account}{country}00")).expect("capital letters and digits");
    let expected = format!("{:02}", 98 - remainder);
    if check_digits != expected {
        return Err(CheckFailure::CheckDigit {
            found: check_digits.to_string(),
            expected,
        });
    }
    Ok(())
}

/// Whether [`check_iban`] accepts the value.
pub fn iban_is_valid(value: &str) -> bool {
    check_iban(value).is_ok()
}

/// The parts of a BIC (ISO 9362).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bic<'a> {
    /// Party prefix: 4 letters naming the institution.
    pub party: &'a str,
    /// ISO 3166-1 alpha-2 country code (or XK).
    pub country: &'a str,
    /// Party suffix: 2 letters or digits.
    pub location: &'a str,
    /// Branch code: 3 letters or digits, absent in an 8-character BIC.
    pub branch: Option<&'a str>,
}

impl Bic<'_> {
    /// A `0` as second location character marks a test BIC, not one used on the live network:
    /// real payments named with it are a risk signal.
    pub fn is_test(&self) -> bool {
        self.location.as_bytes()[1] == b'0'
    }
}

/// Splits a BIC into its parts if it has the form of ISO 9362: 4 letters, a country code,
/// 2 letters or digits, and optionally 3 more. The form only: whether it exists needs SWIFT's
/// directory.
pub fn bic_form(value: &str) -> Result<Bic<'_>, CheckFailure> {
    if !(value.len() == 8 || value.len() == 11) || !is_upper_alphanumeric(value) {
        return Err(CheckFailure::form(
            "expected 8 or 11 capital letters and digits",
        ));
    }
    let party = &value[..4];
    let country = &value[4..6];
    if !party.bytes().all(|byte| byte.is_ascii_uppercase()) {
        return Err(CheckFailure::form(
            "the first 4 characters (party prefix) must be letters",
        ));
    }
    if !is_country_code(country) {
        return Err(CheckFailure::form(format!(
            "characters 5 and 6 ({country}) must be an ISO 3166-1 alpha-2 country code"
        )));
    }
    Ok(Bic {
        party,
        country,
        location: &value[6..8],
        branch: (value.len() == 11).then(|| &value[8..]),
    })
}

/// Checks a Legal Entity Identifier: 20 capital letters and digits, the last two digits
/// making the whole ≡ 1 mod 97 (ISO 17442, letters counting A = 10 … Z = 35).
pub fn check_lei(value: &str) -> Result<(), CheckFailure> {
    if value.len() != 20 || !is_upper_alphanumeric(value) {
        return Err(CheckFailure::form("expected 20 capital letters and digits"));
    }
    let (body, check_digits) = value.split_at(18);
    if !check_digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CheckFailure::form(
            "the last 2 characters must be check digits",
        ));
    }
    let remainder = mod97(&format!("{body}00")).expect("capital letters and digits");
    let expected = format!("{:02}", 98 - remainder);
    if check_digits != expected {
        return Err(CheckFailure::CheckDigit {
            found: check_digits.to_string(),
            expected,
        });
    }
    Ok(())
}

/// Whether [`check_lei`] accepts the value.
pub fn lei_is_valid(value: &str) -> bool {
    check_lei(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_iban_case(input: &str, expected: Result<(), &str>) {
        let actual = check_iban(input).map_err(|failure| failure.to_string());
        assert_eq!(actual, expected.map_err(str::to_string), "input {input:?}");
        assert_eq!(iban_is_valid(input), expected.is_ok(), "input {input:?}");
    }

    #[test]
    fn ibans() {
        check_iban_case("DE89370400440532013000", Ok(()));
        check_iban_case("DE89 3704 0044 0532 0130 00", Ok(()));
        check_iban_case("GB82WEST12345698765432", Ok(()));
        check_iban_case("NL91ABNA0417164300", Ok(()));
        check_iban_case("NO9386011117947", Ok(()));
        check_iban_case("FR1420041010050500013M02606", Ok(()));
        check_iban_case(
            "DE89370400440532013001",
            Err("check digits are 89, expected 62"),
        );
        check_iban_case(
            "GB82WEST12345698765433",
            Err("check digits are 82, expected 55"),
        );
        // Two neighbouring digits swapped: the error mod 97 was designed to catch.
        check_iban_case(
            "DE89370400440532031000",
            Err("check digits are 89, expected 59"),
        );
        check_iban_case(
            "DE8937040044053201300",
            Err("is 21 characters long, expected 22 for DE"),
        );
        check_iban_case(
            "GB82WEST1234569876543",
            Err("is 21 characters long, expected 22 for GB"),
        );
        check_iban_case(
            "QQ89370400440532013000",
            Err("unknown IBAN country QQ, expected a country of the SWIFT IBAN registry"),
        );
        check_iban_case(
            "de89370400440532013000",
            Err("expected capital letters and digits (spaces allowed)"),
        );
        check_iban_case(
            "DE89-3704-0044-0532-0130-00",
            Err("expected capital letters and digits (spaces allowed)"),
        );
        check_iban_case(
            "DE893704004405320130001234567890123",
            Err("is 35 characters long, expected at most 34"),
        );
        let shape =
            Err("expected a 2-letter country code, 2 check digits, then the account number");
        check_iban_case("8937040044", shape);
        check_iban_case("DEXX370400440532013000", shape);
        check_iban_case("DE89", shape);
        check_iban_case("", shape);
    }

    #[test]
    fn iban_lengths() {
        // The lengths DOMAIN.md quotes.
        let cases = [
            ("DE", Some(22)),
            ("FR", Some(27)),
            ("GB", Some(22)),
            ("NL", Some(18)),
            ("NO", Some(15)),
            ("CH", Some(21)),
            ("TR", Some(26)),
            ("SA", Some(24)),
            ("AE", Some(23)),
            ("XK", Some(20)),
            ("SN", Some(28)),
            ("CM", Some(27)),
            ("US", None),
            ("GH", None),
        ];
        for (country, expected) in cases {
            assert_eq!(iban_length(country), expected, "{country}");
        }
        assert!(
            NATIONAL_IBAN_LENGTHS
                .windows(2)
                .all(|pair| pair[0].0 < pair[1].0)
                && NATIONAL_IBAN_LENGTHS
                    .iter()
                    .all(|(code, _)| !IBAN_LENGTHS.iter().any(|(swift, _)| swift == code)),
            "national table sorted and disjoint from the registry"
        );
        assert!(
            IBAN_LENGTHS.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "sorted for binary search"
        );
        assert!(
            IBAN_LENGTHS
                .iter()
                .all(|(country, length)| is_country_code(country) && (15..=34).contains(length))
        );
    }

    fn check_bic(input: &str, expected: Result<(&str, &str, &str, Option<&str>), &str>) {
        let actual = bic_form(input)
            .map(|bic| (bic.party, bic.country, bic.location, bic.branch))
            .map_err(|failure| failure.to_string());
        assert_eq!(actual, expected.map_err(str::to_string), "input {input:?}");
    }

    #[test]
    fn bics() {
        check_bic("COBADEFF", Ok(("COBA", "DE", "FF", None)));
        check_bic("NWBKGB2L", Ok(("NWBK", "GB", "2L", None)));
        check_bic("DEUTDEFF500", Ok(("DEUT", "DE", "FF", Some("500"))));
        check_bic("ABCDXK22", Ok(("ABCD", "XK", "22", None)));
        let length = Err("expected 8 or 11 capital letters and digits");
        check_bic("COBADEF", length);
        check_bic("COBADEFF5", length);
        check_bic("cobadeff", length);
        check_bic("COBA DEFF", length);
        check_bic(
            "C0BADEFF",
            Err("the first 4 characters (party prefix) must be letters"),
        );
        check_bic(
            "COBAXXFF",
            Err("characters 5 and 6 (XX) must be an ISO 3166-1 alpha-2 country code"),
        );
        check_bic(
            "COBA12FF",
            Err("characters 5 and 6 (12) must be an ISO 3166-1 alpha-2 country code"),
        );
    }

    #[test]
    fn test_bics() {
        let cases = [
            ("COBADEFF", false),
            ("COBADEF0", true),
            ("NWBKGB20XXX", true),
            ("NWBKGB2L", false),
        ];
        for (input, expected) in cases {
            assert_eq!(
                bic_form(input).map(|bic| bic.is_test()),
                Ok(expected),
                "{input}"
            );
        }
    }

    fn check_lei_case(input: &str, expected: Result<(), &str>) {
        let actual = check_lei(input).map_err(|failure| failure.to_string());
        assert_eq!(actual, expected.map_err(str::to_string), "input {input:?}");
        assert_eq!(lei_is_valid(input), expected.is_ok(), "input {input:?}");
    }

    #[test]
    fn leis() {
        check_lei_case("213800KUD8LAJWSQ9D15", Ok(()));
        check_lei_case("5493001KJTIIGC8Y1R12", Ok(()));
        check_lei_case(
            "5493001KJTIIGC8Y1R13",
            Err("check digits are 13, expected 12"),
        );
        check_lei_case(
            "213800KUD8LAJWSQ9D16",
            Err("check digits are 16, expected 15"),
        );
        // One letter changed in the body.
        check_lei_case(
            "213800KUD8LAJWSQ9E15",
            Err("check digits are 15, expected 12"),
        );
        check_lei_case(
            "213800KUD8LAJWSQ9DAB",
            Err("the last 2 characters must be check digits"),
        );
        let form = Err("expected 20 capital letters and digits");
        check_lei_case("213800KUD8LAJWSQ9D1", form);
        check_lei_case("213800KUD8LAJWSQ9D155", form);
        check_lei_case("213800kud8lajwsq9d15", form);
        check_lei_case("213800-UD8LAJWSQ9D15", form);
    }
}
