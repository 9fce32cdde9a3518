//! Aircraft identifiers: ICAO 24-bit addresses and the blocks ICAO allocates to states.

use super::CheckFailure;

/// Checks an ICAO 24-bit aircraft address written as 6 hexadecimal characters (either case)
/// and returns its value. `000000` is never assigned.
pub fn check_icao24(value: &str) -> Result<u32, CheckFailure> {
    if value.len() != 6 || !value.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(CheckFailure::form(
            "expected 6 hexadecimal characters (for example 4B1805)",
        ));
    }
    let address = u32::from_str_radix(value, 16).expect("six hexadecimal digits");
    if address == 0 {
        return Err(CheckFailure::form(
            "000000 is never assigned to an aircraft",
        ));
    }
    Ok(address)
}

/// Address blocks that ICAO (Annex 10, Volume III, chapter 9) allocates to states, as inclusive
/// ranges. Partial: states whose block we could not confirm are left out, which only means no
/// risk signal for them. Territories use their state's block (see `same_state_or_dependency`).
#[rustfmt::skip]
const ICAO24_BLOCKS: &[(u32, u32, &str)] = &[
    (0x004000, 0x0043FF, "ZW"), (0x006000, 0x006FFF, "MZ"), (0x008000, 0x00FFFF, "ZA"),
    (0x010000, 0x017FFF, "EG"), (0x018000, 0x01FFFF, "LY"), (0x020000, 0x027FFF, "MA"),
    (0x028000, 0x02FFFF, "TN"), (0x030000, 0x0303FF, "BW"), (0x032000, 0x032FFF, "BI"),
    (0x034000, 0x034FFF, "CM"), (0x035000, 0x0353FF, "KM"), (0x036000, 0x036FFF, "CG"),
    (0x038000, 0x038FFF, "CI"), (0x03E000, 0x03EFFF, "GA"), (0x040000, 0x040FFF, "ET"),
    (0x042000, 0x042FFF, "GQ"), (0x044000, 0x044FFF, "GH"), (0x046000, 0x046FFF, "GN"),
    (0x048000, 0x0483FF, "GW"), (0x04A000, 0x04A3FF, "LS"), (0x04C000, 0x04CFFF, "KE"),
    (0x050000, 0x050FFF, "LR"), (0x054000, 0x054FFF, "MG"), (0x058000, 0x058FFF, "MW"),
    (0x05C000, 0x05CFFF, "ML"), (0x05E000, 0x05E3FF, "MR"), (0x060000, 0x0603FF, "MU"),
    (0x062000, 0x062FFF, "NE"), (0x064000, 0x064FFF, "NG"), (0x068000, 0x068FFF, "UG"),
    (0x06C000, 0x06CFFF, "CF"), (0x06E000, 0x06EFFF, "RW"), (0x070000, 0x070FFF, "SN"),
    (0x074000, 0x0743FF, "SC"), (0x076000, 0x0763FF, "SL"), (0x078000, 0x078FFF, "SO"),
    (0x07C000, 0x07CFFF, "SD"), (0x080000, 0x080FFF, "TZ"), (0x084000, 0x084FFF, "TD"),
    (0x088000, 0x088FFF, "TG"), (0x08A000, 0x08AFFF, "ZM"), (0x08C000, 0x08CFFF, "CD"),
    (0x090000, 0x090FFF, "AO"), (0x094000, 0x0943FF, "BJ"), (0x096000, 0x0963FF, "CV"),
    (0x098000, 0x0983FF, "DJ"), (0x09A000, 0x09AFFF, "GM"), (0x09C000, 0x09CFFF, "BF"),
    (0x0A0000, 0x0A7FFF, "DZ"), (0x0D0000, 0x0D7FFF, "MX"), (0x0D8000, 0x0DFFFF, "VE"),
    (0x100000, 0x1FFFFF, "RU"),
    (0x300000, 0x33FFFF, "IT"), (0x340000, 0x37FFFF, "ES"), (0x380000, 0x3BFFFF, "FR"),
    (0x3C0000, 0x3FFFFF, "DE"), (0x400000, 0x43FFFF, "GB"), (0x440000, 0x447FFF, "AT"),
    (0x448000, 0x44FFFF, "BE"), (0x450000, 0x457FFF, "BG"), (0x458000, 0x45FFFF, "DK"),
    (0x460000, 0x467FFF, "FI"), (0x468000, 0x46FFFF, "GR"), (0x470000, 0x477FFF, "HU"),
    (0x478000, 0x47FFFF, "NO"), (0x480000, 0x487FFF, "NL"), (0x488000, 0x48FFFF, "PL"),
    (0x490000, 0x497FFF, "PT"), (0x498000, 0x49FFFF, "CZ"), (0x4A0000, 0x4A7FFF, "RO"),
    (0x4A8000, 0x4AFFFF, "SE"), (0x4B0000, 0x4B7FFF, "CH"), (0x4B8000, 0x4BFFFF, "TR"),
    (0x4C0000, 0x4C7FFF, "RS"), (0x4CA000, 0x4CAFFF, "IE"), (0x508000, 0x50FFFF, "UA"),
    (0x700000, 0x700FFF, "AF"), (0x710000, 0x717FFF, "SA"), (0x718000, 0x71FFFF, "KR"),
    (0x720000, 0x727FFF, "KP"), (0x728000, 0x72FFFF, "IQ"), (0x730000, 0x737FFF, "IR"),
    (0x738000, 0x73FFFF, "IL"), (0x740000, 0x747FFF, "JO"), (0x748000, 0x74FFFF, "LB"),
    (0x750000, 0x757FFF, "MY"), (0x758000, 0x75FFFF, "PH"), (0x760000, 0x767FFF, "PK"),
    (0x768000, 0x76FFFF, "SG"), (0x770000, 0x777FFF, "LK"), (0x778000, 0x77FFFF, "SY"),
    (0x780000, 0x7BFFFF, "CN"), (0x7C0000, 0x7FFFFF, "AU"), (0x800000, 0x83FFFF, "IN"),
    (0x840000, 0x87FFFF, "JP"), (0x880000, 0x887FFF, "TH"), (0x888000, 0x88FFFF, "VN"),
    (0x890000, 0x890FFF, "YE"), (0x896000, 0x896FFF, "AE"), (0x8A0000, 0x8A7FFF, "ID"),
    (0xA00000, 0xAFFFFF, "US"), (0xC00000, 0xC3FFFF, "CA"), (0xC80000, 0xC87FFF, "NZ"),
    (0xE00000, 0xE3FFFF, "AR"), (0xE40000, 0xE7FFFF, "BR"),
];

/// The state whose ICAO block contains `address`, if the table knows it.
pub fn icao24_state(address: u32) -> Option<&'static str> {
    ICAO24_BLOCKS
        .iter()
        .find(|(first, last, _)| (*first..=*last).contains(&address))
        .map(|(_, _, state)| *state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::is_country_code;

    fn check(input: &str, expected: Result<u32, &str>) {
        let actual = check_icao24(input).map_err(|failure| failure.to_string());
        assert_eq!(actual, expected.map_err(str::to_string), "input {input:?}");
    }

    #[test]
    fn icao24_addresses() {
        check("4B1805", Ok(0x4B1805));
        check("4b1805", Ok(0x4B1805));
        check("000001", Ok(1));
        check("FFFFFE", Ok(0xFFFFFE));
        check("000000", Err("000000 is never assigned to an aircraft"));
        let form = Err("expected 6 hexadecimal characters (for example 4B1805)");
        check("4B180", form);
        check("4B18050", form);
        check("4B18G5", form);
        check("+4B180", form);
        check("", form);
    }

    #[test]
    fn icao24_states() {
        let cases = [
            (0x4B1805, Some("CH")),
            (0x4B8000, Some("TR")),
            (0x044123, Some("GH")),
            (0x064ABC, Some("NG")),
            (0x3C6444, Some("DE")),
            (0xA12345, Some("US")),
            (0x43FFFF, Some("GB")),
            (0x000001, None),
            (0xF00000, None),
        ];
        for (address, expected) in cases {
            assert_eq!(icao24_state(address), expected, "address {address:06X}");
        }
    }

    #[test]
    fn block_table_is_sorted_and_names_countries() {
        assert!(
            ICAO24_BLOCKS.windows(2).all(|pair| pair[0].1 < pair[1].0),
            "sorted, no overlap"
        );
        for (first, last, state) in ICAO24_BLOCKS {
            assert!(first <= last, "{first:06X}");
            assert!(is_country_code(state), "{state}");
        }
    }
}
