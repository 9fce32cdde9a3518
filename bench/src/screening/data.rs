//! Synthetic intelligence and declarations for the screening scenario.
//!
//! Everything is derived from a number: indicator `i` is the same in every run, so a
//! declaration meant to match indicator `j` rebuilds it and copies one of its identifiers or
//! names, written the way declarations write them (another case, spaces, a prefix, a typo).
//! Identifiers carry valid check digits, as intelligence does. Names are built from a large
//! invented vocabulary plus the common words of company names ("trading", "logistics"), so
//! that name postings have the skew of real registers: most words rare, a few everywhere.

use cordon_proto::v1::declaration::{
    Aircraft as DeclaredAircraft, EndUserCertificate as DeclaredEuc, Goods, Party, Payment,
    Transport, Vessel as DeclaredVessel, Weapon as DeclaredWeapon,
};
use cordon_proto::v1::{
    Account, Aircraft, Consignment, Declaration, DeclarationKind, EndUserCertificate, Entity,
    EntityRole, EucStatus, Indicator, PartyRole, Route, Severity, Tlp, Vessel, Weapon, indicator,
};

/// SplitMix64: a small deterministic generator for test data (not for anything secret).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn digits(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn letters(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| char::from(b'A' + self.below(26) as u8))
            .collect()
    }
}

const CONSONANTS: &[u8] = b"bdfghklmnprstvz";
const VOWELS: &[u8] = b"aeiou";
const COMMON: [&str; 16] = [
    "trading",
    "general",
    "logistics",
    "international",
    "services",
    "shipping",
    "global",
    "import",
    "export",
    "holdings",
    "industries",
    "security",
    "marine",
    "supplies",
    "group",
    "africa",
];
const LEGAL_FORMS: [&str; 10] = [
    "Ltd", "SARL", "S.A.R.L.", "FZE", "LLC", "Limited", "GmbH", "S.A.", "Inc.", "PLC",
];
const COUNTRIES: [&str; 30] = [
    "GH", "NG", "SN", "CI", "TG", "BF", "ML", "NE", "LR", "SL", "GN", "BJ", "CM", "TR", "AE", "DE",
    "FR", "GB", "US", "CN", "IN", "PA", "LB", "EG", "MA", "ZA", "KE", "TZ", "BE", "NL",
];
/// Countries and ports of route indicators (embargoed or flagged): declarations name them
/// rarely.
const FLAGGED_COUNTRIES: [&str; 8] = ["LY", "SD", "SO", "YE", "CF", "SS", "ER", "SY"];
const FLAGGED_PORTS: [&str; 4] = ["LYTIP", "SDPZU", "SOMGQ", "YEADE"];
const PORTS: [&str; 16] = [
    "GHTEM", "NGLOS", "SNDKR", "CIABJ", "TGLFW", "BJCOO", "TRMER", "AEJEA", "DEHAM", "NLRTM",
    "BEANR", "CNSHA", "FRLEH", "GBFXT", "PAONX", "LRMLW",
];
const MAKES: [&str; 12] = [
    "Kalashnikov Concern",
    "Norinco",
    "FN Herstal",
    "Heckler & Koch",
    "Beretta",
    "Glock",
    "Zastava",
    "MKE",
    "Colt",
    "Sig Sauer",
    "Ceska zbrojovka",
    "Arsenal",
];
const GOODS: [(&str, &str); 8] = [
    ("843320", "agricultural machinery"),
    ("870421", "trucks"),
    ("930190", "rifles"),
    ("930630", "cartridges"),
    ("851762", "radio equipment"),
    ("880240", "aircraft parts"),
    ("392690", "plastic articles"),
    ("621010", "protective clothing"),
];
/// Route indicators among the first indicators: few, and through flagged places (their
/// origin is any country).
pub const ROUTES: u64 = 20;

/// A pronounceable invented word of three or four syllables (about 32 million of them).
fn word(rng: &mut Rng) -> String {
    let syllables = 3 + rng.below(2);
    let mut word = String::new();
    for _ in 0..syllables {
        word.push(char::from(
            CONSONANTS[rng.below(CONSONANTS.len() as u64) as usize],
        ));
        word.push(char::from(VOWELS[rng.below(VOWELS.len() as u64) as usize]));
    }
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn company(rng: &mut Rng) -> String {
    let mut name = word(rng);
    if rng.chance(30) {
        name.push(' ');
        name.push_str(&word(rng));
    }
    if rng.chance(50) {
        name.push(' ');
        name.push_str(rng.pick(&COMMON));
    }
    name.push(' ');
    name.push_str(rng.pick(&LEGAL_FORMS));
    name
}

fn vessel_name(rng: &mut Rng) -> String {
    let mut name = format!("MV {}", word(rng).to_uppercase());
    if rng.chance(30) {
        name.push(' ');
        name.push_str(&word(rng).to_uppercase());
    }
    name
}

/// Identifiers of held intelligence and of declarations come from disjoint ranges (IMO numbers
/// from 1 or 5, ICAO addresses below or above 0x800000, ...), so a declaration matches an
/// indicator when it was built to, not because a small number space was filled: a million
/// indicators would otherwise hold a quarter of all IMO numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Intelligence,
    Declared,
}

fn imo(rng: &mut Rng, side: Side) -> String {
    let first = match side {
        Side::Intelligence => 1 + rng.below(4),
        Side::Declared => 5 + rng.below(5),
    };
    let first_six = format!("{first}{}", rng.digits(5));
    let check = cordon_identifiers::imo_check_digit(&first_six).expect("six digits");
    format!("{first_six}{check}")
}

fn mmsi(rng: &mut Rng) -> String {
    format!(
        "{}{}",
        rng.pick(&["636", "538", "351", "657", "627"]),
        rng.digits(6)
    )
}

fn container(rng: &mut Rng) -> String {
    let first_ten = format!("{}U{}", rng.letters(3), rng.digits(6));
    let check = cordon_identifiers::iso6346_check_digit(&first_ten).expect("ten characters");
    format!("{first_ten}{check}")
}

/// A German-format IBAN with valid check digits (ISO 13616: 98 minus the mod 97 of the
/// rearranged number).
fn iban(rng: &mut Rng) -> String {
    let account = rng.digits(18);
    // "DE00" moved to the end, letters as numbers: D = 13, E = 14.
    let rearranged = format!("{account}131400");
    let remainder = rearranged.bytes().fold(0u64, |rest, digit| {
        (rest * 10 + u64::from(digit - b'0')) % 97
    });
    let iban = format!("DE{:02}{account}", 98 - remainder);
    debug_assert!(cordon_identifiers::iban_is_valid(&iban), "{iban}");
    iban
}

fn icao24(rng: &mut Rng, side: Side) -> String {
    let address = match side {
        Side::Intelligence => 1 + rng.below(0x7F_FFFF),
        Side::Declared => 0x80_0000 + rng.below(0x7F_FFFE),
    };
    format!("{address:06X}")
}

fn timestamp(seconds: i64) -> Option<cordon_proto::Timestamp> {
    Some(cordon_proto::Timestamp { seconds, nanos: 0 })
}

/// Indicator number `i` of the held intelligence: TLP:GREEN, valid since 2026, no source (so
/// the screening agency of the same member may see all of it).
pub fn indicator(i: u64) -> Indicator {
    let mut rng = Rng::new(i);
    let kind = if i < ROUTES {
        indicator::Kind::Route(Route {
            origin_country: rng.pick(&COUNTRIES).into(),
            transit_countries: vec![rng.pick(&FLAGGED_COUNTRIES).into()],
            destination_country: rng.pick(&FLAGGED_COUNTRIES).into(),
            ports: vec![rng.pick(&FLAGGED_PORTS).into()],
        })
    } else {
        match rng.below(20) {
            0..5 => indicator::Kind::Vessel(Vessel {
                imo: imo(&mut rng, Side::Intelligence),
                mmsi: if rng.chance(50) {
                    mmsi(&mut rng)
                } else {
                    String::new()
                },
                name: vessel_name(&mut rng),
                ..Vessel::default()
            }),
            5..9 => indicator::Kind::Consignment(Consignment {
                container_number: container(&mut rng),
                bill_of_lading: format!("BL{}", rng.digits(10)),
                ..Consignment::default()
            }),
            9..12 => indicator::Kind::Entity(Entity {
                name: company(&mut rng),
                role: EntityRole::Broker as i32,
                country: rng.pick(&COUNTRIES).into(),
                registration_number: format!("RC{}", rng.digits(7)),
                ..Entity::default()
            }),
            12..15 => indicator::Kind::Account(Account {
                iban: iban(&mut rng),
                holder: company(&mut rng),
                ..Account::default()
            }),
            15..17 => indicator::Kind::EndUserCertificate(EndUserCertificate {
                number: format!("EUC/2026/{}", rng.digits(6)),
                issuing_country: rng.pick(&COUNTRIES).into(),
                status: EucStatus::Forged as i32,
                ..EndUserCertificate::default()
            }),
            17..19 => indicator::Kind::Weapon(Weapon {
                manufacturer: rng.pick(&MAKES).into(),
                serial_number: format!("{}{}", rng.letters(2), rng.digits(6)),
                ..Weapon::default()
            }),
            _ => indicator::Kind::Aircraft(Aircraft {
                icao24: icao24(&mut rng, Side::Intelligence),
                registration: format!("5N-{}", rng.letters(3)),
                ..Aircraft::default()
            }),
        }
    };
    Indicator {
        tlp: Tlp::Green as i32,
        severity: Severity::High as i32,
        confidence: 60,
        valid_from: timestamp(1_767_225_600),
        narrative: format!("bench screening intelligence {i}"),
        kind: Some(kind),
        ..Indicator::default()
    }
}

/// One letter of a word of five letters or more changed: a typo the index still finds.
fn with_typo(rng: &mut Rng, name: &str) -> String {
    let mut words: Vec<String> = name.split(' ').map(str::to_string).collect();
    if let Some(word) = words.iter_mut().find(|word| word.len() >= 6) {
        let at = 1 + rng.below(word.len() as u64 - 2) as usize;
        let mut bytes = word.clone().into_bytes();
        bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
        *word = String::from_utf8(bytes).unwrap_or_default();
    }
    words.join(" ")
}

fn spaced(value: &str, every: usize) -> String {
    value
        .as_bytes()
        .chunks(every)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Declaration number `n`; with `match_percent` chance it carries an identifier or a name of
/// one of the first `indicators` indicators (a route's country or port matches anyway).
pub fn declaration(n: u64, indicators: u64, match_percent: u64) -> Declaration {
    let mut rng = Rng::new(n ^ 0x5EED_0000_0000_0000);
    let arms = rng.chance(10);
    let (hs_code, description) = if arms {
        GOODS[2 + rng.below(2) as usize]
    } else {
        let (hs_code, description) = GOODS[rng.below(GOODS.len() as u64) as usize];
        if hs_code.starts_with("93") {
            GOODS[0]
        } else {
            (hs_code, description)
        }
    };
    let by_air = rng.chance(10);
    let mut declaration = Declaration {
        reference: format!("BENCH-{n:09}"),
        kind: if rng.chance(50) {
            DeclarationKind::Export
        } else {
            DeclarationKind::Import
        } as i32,
        declared_at: timestamp(1_790_000_000),
        parties: vec![
            Party {
                role: PartyRole::Consignee as i32,
                name: company(&mut rng),
                country: rng.pick(&COUNTRIES).into(),
                ..Party::default()
            },
            Party {
                role: PartyRole::Consignor as i32,
                name: company(&mut rng),
                country: rng.pick(&COUNTRIES).into(),
                registration_number: format!("BN{}", rng.digits(7)),
                ..Party::default()
            },
        ],
        goods: vec![Goods {
            hs_code: hs_code.into(),
            description: description.into(),
            quantity: 1.0 + rng.below(500) as f64,
            value: 1000.0 + rng.below(1_000_000) as f64,
        }],
        transport: Some(Transport {
            vessel: (!by_air).then(|| DeclaredVessel {
                imo: imo(&mut rng, Side::Declared),
                name: vessel_name(&mut rng),
                ..DeclaredVessel::default()
            }),
            aircraft: by_air.then(|| DeclaredAircraft {
                icao24: icao24(&mut rng, Side::Declared),
                registration: format!("9G-{}", rng.letters(3)),
            }),
            containers: if by_air {
                Vec::new()
            } else {
                vec![container(&mut rng)]
            },
            bill_of_lading: format!("BL{}", rng.digits(10)),
            port_of_loading: rng.pick(&PORTS).into(),
            transshipment_ports: if rng.chance(3) {
                vec![rng.pick(&FLAGGED_PORTS).into()]
            } else {
                Vec::new()
            },
            port_of_discharge: rng.pick(&PORTS).into(),
        }),
        end_user_certificate: arms.then(|| DeclaredEuc {
            number: format!("EUC/2025/{}", rng.digits(6)),
            issuing_country: rng.pick(&COUNTRIES).into(),
        }),
        payments: vec![Payment {
            iban: spaced(&iban(&mut rng), 4),
            payer: String::new(),
            ..Payment::default()
        }],
        weapons: Vec::new(),
    };
    declaration.payments[0].payer = declaration.parties[0].name.clone();
    if indicators > ROUTES && rng.chance(match_percent) {
        let target = ROUTES + rng.below(indicators - ROUTES);
        copy_from(&mut rng, &mut declaration, &indicator(target));
    }
    declaration
}

/// Puts one identifier or name of `indicator` into `declaration`, written differently.
fn copy_from(rng: &mut Rng, declaration: &mut Declaration, indicator: &Indicator) {
    let transport = declaration.transport.get_or_insert_with(Transport::default);
    match &indicator.kind {
        Some(indicator::Kind::Vessel(vessel)) => {
            transport.vessel = Some(DeclaredVessel {
                imo: format!("IMO {}", vessel.imo),
                name: vessel.name.to_lowercase(),
                ..DeclaredVessel::default()
            });
        }
        Some(indicator::Kind::Consignment(consignment)) => {
            transport.containers = vec![spaced(&consignment.container_number.to_lowercase(), 4)];
        }
        Some(indicator::Kind::Entity(entity)) => {
            declaration.parties[1].name = with_typo(rng, &entity.name);
        }
        Some(indicator::Kind::Account(account)) => {
            declaration.payments[0].iban = spaced(&account.iban.to_lowercase(), 4);
        }
        Some(indicator::Kind::EndUserCertificate(euc)) => {
            declaration.end_user_certificate = Some(DeclaredEuc {
                number: euc.number.to_lowercase(),
                issuing_country: euc.issuing_country.clone(),
            });
        }
        Some(indicator::Kind::Weapon(weapon)) => {
            declaration.weapons = vec![DeclaredWeapon {
                manufacturer: weapon.manufacturer.clone(),
                serial_number: weapon.serial_number.to_lowercase(),
                ..DeclaredWeapon::default()
            }];
        }
        Some(indicator::Kind::Aircraft(aircraft)) => {
            transport.vessel = None;
            transport.aircraft = Some(DeclaredAircraft {
                icao24: aircraft.icao24.to_lowercase(),
                registration: aircraft.registration.clone(),
            });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_intelligence_passes_the_gateways_checks() {
        for i in 0..2000 {
            let indicator = indicator(i);
            cordon_indicator::validate_indicator(&indicator, &cordon_indicator::Limits::default())
                .unwrap_or_else(|errors| panic!("indicator {i}: {errors:?}"));
        }
    }

    #[test]
    fn declarations_are_readable_and_some_match() {
        let mut copied = 0;
        for n in 0..2000 {
            let declaration = declaration(n, 10_000, 10);
            let plain = super::declaration(n, 10_000, 0);
            if declaration != plain {
                copied += 1;
            }
        }
        assert!((100..300).contains(&copied), "{copied} of 2000 copied");
    }

    #[test]
    fn declarations_not_built_to_match_rarely_do() {
        use cordon_gateway::screening::subjects::{declaration_subject, indicator_subject};
        let held = 20_000;
        let mut index = cordon_matching::Index::new();
        let subjects: Vec<_> = (0..held)
            .map(|i| indicator_subject(&indicator(i)).prepare())
            .collect();
        for (i, subject) in subjects.iter().enumerate() {
            index.insert(i as u64, subject);
        }
        let matched = |percent| {
            (0..1000)
                .filter(|n| {
                    let query = declaration_subject(&declaration(*n, held, percent)).prepare();
                    index.candidates(&query, 0.9).into_iter().any(|i| {
                        !cordon_matching::compare(&query, &subjects[i as usize], 0.9).is_empty()
                    })
                })
                .count()
        };
        // Plain declarations match through a flagged transshipment port (3%) or by chance.
        let plain = matched(0);
        assert!(plain < 60, "{plain} of 1000 plain declarations matched");
        let built = matched(10);
        assert!(
            built >= plain + 80,
            "{built} of 1000 matched with 10% built to"
        );
    }
}
