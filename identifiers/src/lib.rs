//! Identifier checks of DOMAIN.md as plain functions over strings, reusable outside indicator
//! validation (screening tools, importers).
//!
//! Each `check_*` function returns a [`CheckFailure`] whose text says what is wrong and what is
//! expected, without repeating the value: callers put the field path in front of it, and the value
//! may be long or sensitive.

mod aircraft;
mod country;
mod federation;
mod finance;
mod trade;
mod vessel;

use std::fmt;

pub use aircraft::{check_icao24, icao24_state};
pub use country::{
    ACCEPTED_USER_ASSIGNED_CODES, ISO_3166_ALPHA_2, check_country_code, is_country_code,
    same_state_or_dependency,
};
pub use federation::{check_recipient, check_uuid, is_agency_name, is_member_id};
pub use finance::{Bic, bic_form, check_iban, check_lei, iban_is_valid, iban_length, lei_is_valid};
pub use trade::{
    check_container_number, check_hs_code, check_unlocode, is_arms_hs_code, is_unlocode,
    iso6346_check_digit,
};
pub use vessel::{MmsiKind, check_imo, imo_check_digit, mid_country, mmsi_kind, ship_station_mid};

/// Why a value failed an identifier check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    /// The value does not have the identifier's form; the text says what is expected.
    Form(String),
    /// The form is right but the check digit (or pair of check digits) does not match.
    CheckDigit { found: String, expected: String },
}

impl CheckFailure {
    pub fn form(message: impl Into<String>) -> Self {
        CheckFailure::Form(message.into())
    }
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Form(message) => formatter.write_str(message),
            // IBAN and LEI carry two check digits, IMO and ISO 6346 one: say it the way the
            // standard does so that the reader recognises the number.
            CheckFailure::CheckDigit { found, expected } if found.len() == 1 => {
                write!(formatter, "check digit is {found}, expected {expected}")
            }
            CheckFailure::CheckDigit { found, expected } => {
                write!(formatter, "check digits are {found}, expected {expected}")
            }
        }
    }
}

impl std::error::Error for CheckFailure {}

/// ISO 7064 MOD 97-10 remainder of a string of digits and capital letters, letters counting as
/// two-digit numbers (A = 10 … Z = 35), as IBAN and LEI use it. `None` for any other character.
///
/// Works digit by digit so that the 34-character IBANs never overflow an integer.
pub(crate) fn mod97(text: &str) -> Option<u32> {
    let mut remainder = 0u32;
    for character in text.chars() {
        if character.is_ascii_lowercase() {
            return None;
        }
        let value = character.to_digit(36)?;
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    Some(remainder)
}

/// Whether every character is an ASCII capital letter or digit.
pub(crate) fn is_upper_alphanumeric(text: &str) -> bool {
    text.bytes()
        .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<u32>) {
        assert_eq!(mod97(input), expected, "input {input:?}");
    }

    #[test]
    fn mod97_remainders() {
        check("", Some(0));
        check("97", Some(0));
        check("98", Some(1));
        check("A", Some(10));
        // "Z" is 35, so "Z0" reads as 350 = 3·97 + 59.
        check("Z0", Some(59));
        // DE89370400440532013000 rearranged: BBAN, then DE = 1314, then 89.
        check("370400440532013000131489", Some(1));
        check("a", None);
        check("12-3", None);
    }

    #[test]
    fn check_failure_wording() {
        let one = CheckFailure::CheckDigit {
            found: "7".into(),
            expected: "6".into(),
        };
        assert_eq!(one.to_string(), "check digit is 7, expected 6");
        let two = CheckFailure::CheckDigit {
            found: "13".into(),
            expected: "12".into(),
        };
        assert_eq!(two.to_string(), "check digits are 13, expected 12");
    }
}
