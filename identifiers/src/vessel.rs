//! Ship identifiers: IMO numbers (check digit), MMSIs (station kinds) and the ITU table of
//! Maritime Identification Digits.

use super::CheckFailure;

/// The IMO check digit of the first six digits of an IMO number:
/// (7·d1 + 6·d2 + 5·d3 + 4·d4 + 3·d5 + 2·d6) mod 10. `None` unless given exactly six digits.
pub fn imo_check_digit(first_six_digits: &str) -> Option<u32> {
    if first_six_digits.len() != 6 {
        return None;
    }
    let mut sum = 0;
    for (position, character) in first_six_digits.chars().enumerate() {
        let weight = 7 - position as u32;
        sum += character.to_digit(10)? * weight;
    }
    Some(sum % 10)
}

/// Checks an IMO ship number: seven digits, optionally written after `"IMO "`, whose last digit
/// is [`imo_check_digit`] of the first six.
pub fn check_imo(value: &str) -> Result<(), CheckFailure> {
    let digits = value.strip_prefix("IMO ").unwrap_or(value);
    if digits.len() != 7 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CheckFailure::form(
            "expected 7 digits, optionally after \"IMO \" (for example IMO 9319466)",
        ));
    }
    let (first_six, found) = digits.split_at(6);
    let expected = imo_check_digit(first_six).expect("six ASCII digits");
    if found != expected.to_string() {
        return Err(CheckFailure::CheckDigit {
            found: found.to_string(),
            expected: expected.to_string(),
        });
    }
    Ok(())
}

/// What kind of station an MMSI identifies (ITU-R M.585), by its leading digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmsiKind {
    /// `MIDxxxxxx` with MID 201-775: a ship.
    ShipStation { mid: u16 },
    /// `0MIDxxxxx`: a group of ships.
    GroupOfShips,
    /// `00MIDxxxx`: a coast station.
    CoastStation,
    /// `111MIDxxx`: a search-and-rescue aircraft.
    SarAircraft,
    /// `8MIDxxxxx`: a handheld VHF radio with DSC.
    HandheldRadio,
    /// `970xxxxxx`: an AIS search-and-rescue transmitter.
    AisSart,
    /// `972xxxxxx`: a man-overboard device.
    ManOverboard,
    /// `974xxxxxx`: an EPIRB with AIS.
    Epirb,
    /// `98MIDxxxx`: a craft associated with a parent ship (tender, lifeboat).
    CraftOfParentShip,
    /// `99MIDxxxx`: an aid to navigation.
    AidToNavigation,
    /// Nine digits in no allocated range (for example a MID outside 201-775).
    Unallocated,
}

impl MmsiKind {
    /// What the station is, as words that complete "the MMSI is …".
    pub fn description(&self) -> &'static str {
        match self {
            MmsiKind::ShipStation { .. } => "a ship station",
            MmsiKind::GroupOfShips => "a group of ships number (0 then a MID)",
            MmsiKind::CoastStation => "a coast station (00 then a MID)",
            MmsiKind::SarAircraft => "a search-and-rescue aircraft (111 then a MID)",
            MmsiKind::HandheldRadio => "a handheld VHF radio (8 then a MID)",
            MmsiKind::AisSart => "an AIS-SART search-and-rescue transmitter (970)",
            MmsiKind::ManOverboard => "a man-overboard device (972)",
            MmsiKind::Epirb => "an EPIRB emergency beacon (974)",
            MmsiKind::CraftOfParentShip => "a craft associated with a parent ship (98 then a MID)",
            MmsiKind::AidToNavigation => "an aid to navigation (99 then a MID)",
            MmsiKind::Unallocated => "in no allocated range",
        }
    }
}

/// Classifies a nine-digit MMSI by its leading digits.
pub fn mmsi_kind(value: &str) -> Result<MmsiKind, CheckFailure> {
    if value.len() != 9 || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CheckFailure::form("expected exactly 9 digits"));
    }
    let digits = value.as_bytes();
    let leading = |count: usize| &value[..count];
    let kind = match digits[0] {
        b'0' if digits[1] == b'0' => MmsiKind::CoastStation,
        b'0' => MmsiKind::GroupOfShips,
        b'1' if leading(3) == "111" => MmsiKind::SarAircraft,
        b'2'..=b'7' => {
            let mid: u16 = leading(3).parse().expect("three ASCII digits");
            if (201..=775).contains(&mid) {
                MmsiKind::ShipStation { mid }
            } else {
                MmsiKind::Unallocated
            }
        }
        b'8' => MmsiKind::HandheldRadio,
        b'9' => match leading(3) {
            "970" => MmsiKind::AisSart,
            "972" => MmsiKind::ManOverboard,
            "974" => MmsiKind::Epirb,
            _ if digits[1] == b'8' => MmsiKind::CraftOfParentShip,
            _ if digits[1] == b'9' => MmsiKind::AidToNavigation,
            _ => MmsiKind::Unallocated,
        },
        _ => MmsiKind::Unallocated,
    };
    Ok(kind)
}

/// The MID of a ship station's MMSI, or why the MMSI is not one.
pub fn ship_station_mid(value: &str) -> Result<u16, CheckFailure> {
    match mmsi_kind(value)? {
        MmsiKind::ShipStation { mid } => Ok(mid),
        other => Err(CheckFailure::form(format!(
            "is {}, expected a ship station (MID 201-775 then 6 digits)",
            other.description()
        ))),
    }
}

/// Maritime Identification Digits and the country (ISO 3166-1 alpha-2) they are allocated to,
/// from the ITU table (ITU-R M.585, Radio Regulations Appendix 42), as inclusive ranges.
/// Partial on purpose: MIDs shared by several territories (306, Caribbean Netherlands, Curaçao
/// and Sint Maarten) and the French southern lands' are left out, so no warning is raised on them.
#[rustfmt::skip]
const MID_COUNTRIES: &[(u16, u16, &str)] = &[
    (201, 201, "AL"), (202, 202, "AD"), (203, 203, "AT"), (204, 204, "PT"), (205, 205, "BE"),
    (206, 206, "BY"), (207, 207, "BG"), (208, 208, "VA"), (209, 210, "CY"), (211, 211, "DE"),
    (212, 212, "CY"), (213, 213, "GE"), (214, 214, "MD"), (215, 215, "MT"), (216, 216, "AM"),
    (218, 218, "DE"), (219, 220, "DK"), (224, 225, "ES"), (226, 228, "FR"), (229, 229, "MT"),
    (230, 230, "FI"), (231, 231, "FO"), (232, 235, "GB"), (236, 236, "GI"), (237, 237, "GR"),
    (238, 238, "HR"), (239, 241, "GR"), (242, 242, "MA"), (243, 243, "HU"), (244, 246, "NL"),
    (247, 247, "IT"), (248, 249, "MT"), (250, 250, "IE"), (251, 251, "IS"), (252, 252, "LI"),
    (253, 253, "LU"), (254, 254, "MC"), (255, 255, "PT"), (256, 256, "MT"), (257, 259, "NO"),
    (261, 261, "PL"), (262, 262, "ME"), (263, 263, "PT"), (264, 264, "RO"), (265, 266, "SE"),
    (267, 267, "SK"), (268, 268, "SM"), (269, 269, "CH"), (270, 270, "CZ"), (271, 271, "TR"),
    (272, 272, "UA"), (273, 273, "RU"), (274, 274, "MK"), (275, 275, "LV"), (276, 276, "EE"),
    (277, 277, "LT"), (278, 278, "SI"), (279, 279, "RS"),
    (301, 301, "AI"), (303, 303, "US"), (304, 305, "AG"), (307, 307, "AW"), (308, 309, "BS"),
    (310, 310, "BM"), (311, 311, "BS"), (312, 312, "BZ"), (314, 314, "BB"), (316, 316, "CA"),
    (319, 319, "KY"), (321, 321, "CR"), (323, 323, "CU"), (325, 325, "DM"), (327, 327, "DO"),
    (329, 329, "GP"), (330, 330, "GD"), (331, 331, "GL"), (332, 332, "GT"), (334, 334, "HN"),
    (336, 336, "HT"), (338, 338, "US"), (339, 339, "JM"), (341, 341, "KN"), (343, 343, "LC"),
    (345, 345, "MX"), (347, 347, "MQ"), (348, 348, "MS"), (350, 350, "NI"), (351, 357, "PA"),
    (358, 358, "PR"), (359, 359, "SV"), (361, 361, "PM"), (362, 362, "TT"), (364, 364, "TC"),
    (366, 369, "US"), (370, 374, "PA"), (375, 377, "VC"), (378, 378, "VG"), (379, 379, "VI"),
    (401, 401, "AF"), (403, 403, "SA"), (405, 405, "BD"), (408, 408, "BH"), (410, 410, "BT"),
    (412, 414, "CN"), (416, 416, "TW"), (417, 417, "LK"), (419, 419, "IN"), (422, 422, "IR"),
    (423, 423, "AZ"), (425, 425, "IQ"), (428, 428, "IL"), (431, 432, "JP"), (434, 434, "TM"),
    (436, 436, "KZ"), (437, 437, "UZ"), (438, 438, "JO"), (440, 441, "KR"), (443, 443, "PS"),
    (445, 445, "KP"), (447, 447, "KW"), (450, 450, "LB"), (451, 451, "KG"), (453, 453, "MO"),
    (455, 455, "MV"), (457, 457, "MN"), (459, 459, "NP"), (461, 461, "OM"), (463, 463, "PK"),
    (466, 466, "QA"), (468, 468, "SY"), (470, 471, "AE"), (472, 472, "TJ"), (473, 473, "YE"),
    (475, 475, "YE"), (477, 477, "HK"), (478, 478, "BA"),
    (503, 503, "AU"), (506, 506, "MM"), (508, 508, "BN"), (510, 510, "FM"), (511, 511, "PW"),
    (512, 512, "NZ"), (514, 515, "KH"), (516, 516, "CX"), (518, 518, "CK"), (520, 520, "FJ"),
    (523, 523, "CC"), (525, 525, "ID"), (529, 529, "KI"), (531, 531, "LA"), (533, 533, "MY"),
    (536, 536, "MP"), (538, 538, "MH"), (540, 540, "NC"), (542, 542, "NU"), (544, 544, "NR"),
    (546, 546, "PF"), (548, 548, "PH"), (550, 550, "TL"), (553, 553, "PG"), (555, 555, "PN"),
    (557, 557, "SB"), (559, 559, "AS"), (561, 561, "WS"), (563, 566, "SG"), (567, 567, "TH"),
    (570, 570, "TO"), (572, 572, "TV"), (574, 574, "VN"), (576, 577, "VU"), (578, 578, "WF"),
    (601, 601, "ZA"), (603, 603, "AO"), (605, 605, "DZ"), (608, 608, "SH"), (609, 609, "BI"),
    (610, 610, "BJ"), (611, 611, "BW"), (612, 612, "CF"), (613, 613, "CM"), (615, 615, "CG"),
    (616, 616, "KM"), (617, 617, "CV"), (619, 619, "CI"), (620, 620, "KM"), (621, 621, "DJ"),
    (622, 622, "EG"), (624, 624, "ET"), (625, 625, "ER"), (626, 626, "GA"), (627, 627, "GH"),
    (629, 629, "GM"), (630, 630, "GW"), (631, 631, "GQ"), (632, 632, "GN"), (633, 633, "BF"),
    (634, 634, "KE"), (636, 637, "LR"), (638, 638, "SS"), (642, 642, "LY"), (644, 644, "LS"),
    (645, 645, "MU"), (647, 647, "MG"), (649, 649, "ML"), (650, 650, "MZ"), (654, 654, "MR"),
    (655, 655, "MW"), (656, 656, "NE"), (657, 657, "NG"), (659, 659, "NA"), (660, 660, "RE"),
    (661, 661, "RW"), (662, 662, "SD"), (663, 663, "SN"), (664, 664, "SC"), (665, 665, "SH"),
    (666, 666, "SO"), (667, 667, "SL"), (668, 668, "ST"), (669, 669, "SZ"), (670, 670, "TD"),
    (671, 671, "TG"), (672, 672, "TN"), (674, 674, "TZ"), (675, 675, "UG"), (676, 676, "CD"),
    (677, 677, "TZ"), (678, 678, "ZM"), (679, 679, "ZW"),
    (701, 701, "AR"), (710, 710, "BR"), (720, 720, "BO"), (725, 725, "CL"), (730, 730, "CO"),
    (735, 735, "EC"), (740, 740, "FK"), (745, 745, "GF"), (750, 750, "GY"), (755, 755, "PY"),
    (760, 760, "PE"), (765, 765, "SR"), (770, 770, "UY"), (775, 775, "VE"),
];

/// The country a MID is allocated to, if the table knows it.
pub fn mid_country(mid: u16) -> Option<&'static str> {
    MID_COUNTRIES
        .iter()
        .find(|(first, last, _)| (*first..=*last).contains(&mid))
        .map(|(_, _, country)| *country)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::is_country_code;

    fn check_imo_number(input: &str, expected: Result<(), &str>) {
        let actual = check_imo(input).map_err(|failure| failure.to_string());
        assert_eq!(actual, expected.map_err(str::to_string), "input {input:?}");
    }

    #[test]
    fn imo_check_digits() {
        // The worked example of DOMAIN.md: 7·9 + 6·3 + 5·1 + 4·9 + 3·4 + 2·6 = 146.
        assert_eq!(imo_check_digit("931946"), Some(6));
        assert_eq!(imo_check_digit("923456"), Some(3));
        assert_eq!(imo_check_digit("000000"), Some(0));
        assert_eq!(imo_check_digit("93194"), None);
        assert_eq!(imo_check_digit("93194x"), None);
    }

    #[test]
    fn imo_numbers() {
        check_imo_number("9319466", Ok(()));
        check_imo_number("IMO 9319466", Ok(()));
        check_imo_number("9234563", Ok(()));
        check_imo_number("9812341", Ok(()));
        check_imo_number("9319467", Err("check digit is 7, expected 6"));
        check_imo_number("IMO 9234564", Err("check digit is 4, expected 3"));
        let form = Err("expected 7 digits, optionally after \"IMO \" (for example IMO 9319466)");
        check_imo_number("931946", form);
        check_imo_number("93194660", form);
        check_imo_number("IMO9319466", form);
        check_imo_number("imo 9319466", form);
        check_imo_number("931946a", form);
        check_imo_number("", form);
    }

    fn check_mmsi(input: &str, expected: Result<MmsiKind, &str>) {
        let actual = mmsi_kind(input).map_err(|failure| failure.to_string());
        assert_eq!(actual, expected.map_err(str::to_string), "input {input:?}");
    }

    #[test]
    fn mmsi_kinds() {
        check_mmsi("636012345", Ok(MmsiKind::ShipStation { mid: 636 }));
        check_mmsi("201000000", Ok(MmsiKind::ShipStation { mid: 201 }));
        check_mmsi("775999999", Ok(MmsiKind::ShipStation { mid: 775 }));
        check_mmsi("200123456", Ok(MmsiKind::Unallocated));
        check_mmsi("776123456", Ok(MmsiKind::Unallocated));
        check_mmsi("063601234", Ok(MmsiKind::GroupOfShips));
        check_mmsi("006360123", Ok(MmsiKind::CoastStation));
        check_mmsi("111636123", Ok(MmsiKind::SarAircraft));
        check_mmsi("123456789", Ok(MmsiKind::Unallocated));
        check_mmsi("863612345", Ok(MmsiKind::HandheldRadio));
        check_mmsi("970123456", Ok(MmsiKind::AisSart));
        check_mmsi("972123456", Ok(MmsiKind::ManOverboard));
        check_mmsi("974123456", Ok(MmsiKind::Epirb));
        check_mmsi("982361234", Ok(MmsiKind::CraftOfParentShip));
        check_mmsi("992361234", Ok(MmsiKind::AidToNavigation));
        check_mmsi("971123456", Ok(MmsiKind::Unallocated));
        check_mmsi("63601234", Err("expected exactly 9 digits"));
        check_mmsi("6360123456", Err("expected exactly 9 digits"));
        check_mmsi("63601234x", Err("expected exactly 9 digits"));
    }

    #[test]
    fn ship_station_mids() {
        assert_eq!(ship_station_mid("538001234"), Ok(538));
        let coast = ship_station_mid("002320001").unwrap_err().to_string();
        assert_eq!(
            coast,
            "is a coast station (00 then a MID), expected a ship station (MID 201-775 then 6 digits)"
        );
        let epirb = ship_station_mid("974123456").unwrap_err().to_string();
        assert!(epirb.starts_with("is an EPIRB"), "{epirb}");
    }

    #[test]
    fn mid_countries() {
        let cases = [
            (636, Some("LR")),
            (637, Some("LR")),
            (351, Some("PA")),
            (357, Some("PA")),
            (370, Some("PA")),
            (373, Some("PA")),
            (538, Some("MH")),
            (232, Some("GB")),
            (235, Some("GB")),
            (211, Some("DE")),
            (218, Some("DE")),
            (226, Some("FR")),
            (244, Some("NL")),
            (257, Some("NO")),
            (271, Some("TR")),
            (613, Some("CM")),
            (627, Some("GH")),
            (657, Some("NG")),
            (663, Some("SN")),
            (671, Some("TG")),
            (217, None),
            (306, None),
            (776, None),
        ];
        for (mid, expected) in cases {
            assert_eq!(mid_country(mid), expected, "MID {mid}");
        }
    }

    #[test]
    fn mid_table_is_sorted_and_names_countries() {
        assert!(
            MID_COUNTRIES.windows(2).all(|pair| pair[0].1 < pair[1].0),
            "sorted, no overlap"
        );
        for (first, last, country) in MID_COUNTRIES {
            assert!(first <= last && (201..=775).contains(first) && (201..=775).contains(last));
            assert!(is_country_code(country), "{country}");
        }
    }
}
