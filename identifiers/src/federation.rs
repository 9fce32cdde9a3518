//! Identifiers of the federation itself: indicator ids (UUIDs), member ids and agency names.

use super::CheckFailure;

/// A member id: 2 to 16 characters of `A-Z`, `0-9` and `-`, starting with a letter (`GH`,
/// `ECOWAS`). The same rule as the gateway's identities, so that a named recipient can match a
/// certificate.
pub fn is_member_id(text: &str) -> bool {
    (2..=16).contains(&text.len())
        && text.starts_with(|character: char| character.is_ascii_uppercase())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'-')
}

/// An agency name: 1 to 32 characters of `a-z`, `0-9`, `-` and `_` (`customs`).
pub fn is_agency_name(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        })
}

/// Checks a named recipient: a member id, optionally followed by `/` and an agency name
/// (`NG`, `NG/customs`).
pub fn check_recipient(value: &str) -> Result<(), CheckFailure> {
    let (member, agency) = match value.split_once('/') {
        Some((member, agency)) => (member, Some(agency)),
        None => (value, None),
    };
    if !is_member_id(member) {
        return Err(CheckFailure::form(
            "expected a member id (2-16 of A-Z, 0-9, '-', starting with a letter), optionally followed by /agency",
        ));
    }
    if let Some(agency) = agency
        && !is_agency_name(agency)
    {
        return Err(CheckFailure::form(
            "agency after '/' must be 1-32 of a-z, 0-9, '-', '_'",
        ));
    }
    Ok(())
}

/// Checks an indicator id: a UUID in its canonical form, lowercase and hyphenated, so that one
/// indicator never has two spellings (ids are compared as text by stores and peers).
pub fn check_uuid(value: &str) -> Result<(), CheckFailure> {
    let canonical = uuid::Uuid::try_parse(value).map(|uuid| uuid.hyphenated().to_string());
    match canonical {
        Ok(canonical) if canonical == value => Ok(()),
        _ => Err(CheckFailure::form(
            "expected a UUID in lowercase hyphenated form (8-4-4-4-12 hexadecimal digits)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(), &str>) {
        let actual = check_recipient(input).map_err(|failure| failure.to_string());
        assert_eq!(actual, expected.map_err(str::to_string), "input {input:?}");
    }

    #[test]
    fn recipients() {
        check("NG", Ok(()));
        check("NG/customs", Ok(()));
        check("ECOWAS", Ok(()));
        check("GH-2/border_police", Ok(()));
        let member = Err(
            "expected a member id (2-16 of A-Z, 0-9, '-', starting with a letter), optionally followed by /agency",
        );
        check("N", member);
        check("ng", member);
        check("2G", member);
        check("NG CUSTOMS", member);
        check("ABCDEFGHIJKLMNOPQ", member);
        check("/customs", member);
        check("", member);
        let agency = Err("agency after '/' must be 1-32 of a-z, 0-9, '-', '_'");
        check("NG/", agency);
        check("NG/Customs", agency);
        check("NG/customs/port", agency);
    }

    fn check_id(input: &str, expected_valid: bool) {
        assert_eq!(check_uuid(input).is_ok(), expected_valid, "input {input:?}");
    }

    #[test]
    fn uuids() {
        check_id("0195f3c4-7a2b-7c3d-8e4f-1a2b3c4d5e6f", true);
        check_id("00000000-0000-0000-0000-000000000000", true);
        check_id("0195F3C4-7A2B-7C3D-8E4F-1A2B3C4D5E6F", false);
        check_id("0195f3c47a2b7c3d8e4f1a2b3c4d5e6f", false);
        check_id("{0195f3c4-7a2b-7c3d-8e4f-1a2b3c4d5e6f}", false);
        check_id("urn:uuid:0195f3c4-7a2b-7c3d-8e4f-1a2b3c4d5e6f", false);
        check_id("0195f3c4-7a2b-7c3d-8e4f-1a2b3c4d5e6", false);
        check_id("indicator-1", false);
        check_id("", false);
    }
}
