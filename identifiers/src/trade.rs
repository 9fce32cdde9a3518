//! Trade identifiers: ISO 6346 container numbers, HS codes and UN/LOCODEs.

use super::{CheckFailure, is_country_code};

/// ISO 6346 values of the letters A to Z: counting up from 10 and skipping the multiples of
/// 11 (11, 22, 33), so that no letter weighs the same as another after mod 11.
const CONTAINER_LETTER_VALUES: [u32; 26] = [
    10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 34, 35, 36,
    37, 38,
];

/// The ISO 6346 check digit of the first 10 characters of a container number (owner code,
/// category, serial): each character's value times 2^position, summed, mod 11, mod 10 (a
/// remainder of 10 becomes 0). `None` unless given 10 capital letters and digits.
pub fn iso6346_check_digit(first_ten: &str) -> Option<u32> {
    if first_ten.len() != 10 {
        return None;
    }
    let mut sum = 0;
    for (position, byte) in first_ten.bytes().enumerate() {
        let value = match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b'A'..=b'Z' => CONTAINER_LETTER_VALUES[usize::from(byte - b'A')],
            _ => return None,
        };
        sum += value << position;
    }
    Some(sum % 11 % 10)
}

/// Checks an ISO 6346 container number: 3-letter owner code, category U, J or Z, 6-digit
/// serial and check digit, for example `CSQU3054383`. Spaces, as in the painted form
/// `CSQU 305438 3`, are ignored.
pub fn check_container_number(value: &str) -> Result<(), CheckFailure> {
    let compact: String = value
        .chars()
        .filter(|character| *character != ' ')
        .collect();
    if compact.len() != 11 || !compact.is_ascii() {
        return Err(CheckFailure::form(
            "expected 11 characters: owner code, category, 6-digit serial, check digit (for example CSQU3054383)",
        ));
    }
    let (owner, rest) = compact.split_at(3);
    let (category, rest) = rest.split_at(1);
    let (serial, found) = rest.split_at(6);
    if !owner.bytes().all(|byte| byte.is_ascii_uppercase()) {
        return Err(CheckFailure::form(
            "owner code (first 3 characters) must be capital letters",
        ));
    }
    if !matches!(category, "U" | "J" | "Z") {
        return Err(CheckFailure::form(
            "category (4th character) must be U (freight container), J (detachable equipment) or Z (trailer or chassis)",
        ));
    }
    if !serial.bytes().all(|byte| byte.is_ascii_digit())
        || !found.bytes().all(|byte| byte.is_ascii_digit())
    {
        return Err(CheckFailure::form(
            "serial number and check digit (last 7 characters) must be digits",
        ));
    }
    let expected = iso6346_check_digit(&compact[..10]).expect("letters and digits checked above");
    if found != expected.to_string() {
        return Err(CheckFailure::CheckDigit {
            found: found.to_string(),
            expected: expected.to_string(),
        });
    }
    Ok(())
}

/// Checks the form of a Harmonized System code: 4 to 10 digits (heading, subheading and
/// national extensions), without dots.
pub fn check_hs_code(value: &str) -> Result<(), CheckFailure> {
    if !(4..=10).contains(&value.len()) || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CheckFailure::form(
            "expected 4 to 10 digits without dots (for example 930190)",
        ));
    }
    Ok(())
}

/// Whether an HS code is of chapter 93, arms and ammunition.
pub fn is_arms_hs_code(value: &str) -> bool {
    value.starts_with("93")
}

/// Checks the form of a UN/LOCODE: a country code and 3 characters of A-Z and 2-9 (no 0 or 1,
/// which read as O and I), written `NLRTM` or `NL RTM`. Whether the place exists needs the
/// UNECE list.
pub fn check_unlocode(value: &str) -> Result<(), CheckFailure> {
    // ASCII first, so that splitting at byte offsets stays on character boundaries.
    let (country, location) = match value.len() {
        5 if value.is_ascii() => value.split_at(2),
        6 if value.is_ascii() && value.as_bytes()[2] == b' ' => (&value[..2], &value[3..]),
        _ => {
            return Err(CheckFailure::form(
                "expected a UN/LOCODE: country code and 3 characters, as NLRTM or NL RTM",
            ));
        }
    };
    if !is_country_code(country) {
        return Err(CheckFailure::form(
            "the first 2 characters must be an ISO 3166-1 alpha-2 country code",
        ));
    }
    if !location
        .bytes()
        .all(|byte| byte.is_ascii_uppercase() || (b'2'..=b'9').contains(&byte))
    {
        return Err(CheckFailure::form(
            "the location code (last 3 characters) may only contain A-Z and 2-9",
        ));
    }
    Ok(())
}

/// Whether [`check_unlocode`] accepts the value.
pub fn is_unlocode(value: &str) -> bool {
    check_unlocode(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_letter_values() {
        // The values DOMAIN.md lists.
        let cases = [
            ('A', 10),
            ('B', 12),
            ('K', 21),
            ('L', 23),
            ('U', 32),
            ('V', 34),
            ('Z', 38),
        ];
        for (letter, value) in cases {
            assert_eq!(
                CONTAINER_LETTER_VALUES[letter as usize - 'A' as usize],
                value,
                "{letter}"
            );
        }
        assert!(CONTAINER_LETTER_VALUES.iter().all(|value| value % 11 != 0));
    }

    #[test]
    fn iso6346_check_digits() {
        // DOMAIN.md's worked example.
        assert_eq!(iso6346_check_digit("CSQU305438"), Some(3));
        assert_eq!(iso6346_check_digit("MSCU123456"), Some(6));
        assert_eq!(iso6346_check_digit("TGHU765432"), Some(0));
        assert_eq!(iso6346_check_digit("CSQU30543"), None);
        assert_eq!(iso6346_check_digit("csqu305438"), None);
    }

    fn check(input: &str, expected: Result<(), &str>) {
        let actual = check_container_number(input).map_err(|failure| failure.to_string());
        assert_eq!(actual, expected.map_err(str::to_string), "input {input:?}");
    }

    #[test]
    fn container_numbers() {
        check("CSQU3054383", Ok(()));
        check("CSQU 305438 3", Ok(()));
        check("MSCU1234566", Ok(()));
        check("TGHU7654320", Ok(()));
        check("CSQU3054384", Err("check digit is 4, expected 3"));
        check("MSCU1234567", Err("check digit is 7, expected 6"));
        // Two serial digits swapped.
        check("CSQU3504383", Err("check digit is 3, expected 8"));
        check(
            "CSQX3054383",
            Err(
                "category (4th character) must be U (freight container), J (detachable equipment) or Z (trailer or chassis)",
            ),
        );
        check(
            "C5QU3054383",
            Err("owner code (first 3 characters) must be capital letters"),
        );
        check(
            "csqu3054383",
            Err("owner code (first 3 characters) must be capital letters"),
        );
        check(
            "CSQU30543B3",
            Err("serial number and check digit (last 7 characters) must be digits"),
        );
        let length = Err(
            "expected 11 characters: owner code, category, 6-digit serial, check digit (for example CSQU3054383)",
        );
        check("CSQU305438", length);
        check("CSQU30543833", length);
        check("CSQU-3054383", length);
        check("", length);
    }

    fn check_hs(input: &str, expected_form: bool, expected_arms: bool) {
        assert_eq!(
            check_hs_code(input).is_ok(),
            expected_form,
            "form of {input:?}"
        );
        assert_eq!(
            is_arms_hs_code(input),
            expected_arms,
            "chapter of {input:?}"
        );
    }

    #[test]
    fn hs_codes() {
        check_hs("9301", true, true);
        check_hs("930200", true, true);
        check_hs("9306900000", true, true);
        check_hs("843320", true, false);
        check_hs("0193", true, false);
        check_hs("930", false, true);
        check_hs("93019000001", false, true);
        check_hs("9302.00", false, true);
        check_hs("", false, false);
    }

    fn check_locode(input: &str, expected: Result<(), &str>) {
        let actual = check_unlocode(input).map_err(|failure| failure.to_string());
        assert_eq!(actual, expected.map_err(str::to_string), "input {input:?}");
        assert_eq!(is_unlocode(input), expected.is_ok(), "input {input:?}");
    }

    #[test]
    fn unlocodes() {
        check_locode("NLRTM", Ok(()));
        check_locode("NL RTM", Ok(()));
        check_locode("GHTEM", Ok(()));
        check_locode("TGLFW", Ok(()));
        check_locode("US2AB", Ok(()));
        let location = Err("the location code (last 3 characters) may only contain A-Z and 2-9");
        check_locode("TRME1", location);
        check_locode("TRME0", location);
        check_locode(
            "nlrtm",
            Err("the first 2 characters must be an ISO 3166-1 alpha-2 country code"),
        );
        check_locode("NLrtm", location);
        check_locode(
            "XXRTM",
            Err("the first 2 characters must be an ISO 3166-1 alpha-2 country code"),
        );
        let form = Err("expected a UN/LOCODE: country code and 3 characters, as NLRTM or NL RTM");
        check_locode("NL-RTM", form);
        check_locode("NLRT", form);
        check_locode("NLRTMX", form);
        check_locode("NL  RTM", form);
        check_locode("", form);
        check_locode("Né RT", form);
    }
}
