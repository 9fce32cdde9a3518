//! Whether declarations can be read. A declaration is data from the field, so almost nothing
//! is refused: identifiers with wrong check digits, unknown ports or odd spellings are red
//! flags of the result, not errors. What is refused is what cannot be read or would hold the
//! gateway to an unbounded amount of work: no reference, an unknown enum value, a number that is
//! not a number, a text or a list past its limit, too many declarations in one call.

use cordon_proto::v1::Declaration;
use cordon_proto::v1::PartyRole;

/// Declarations screened in one call at most.
pub const MAX_DECLARATIONS_PER_CALL: usize = 1_000;
/// Any text field of a declaration: 16 KiB (a 10,000-character name is read, and matched on
/// its first 512 bytes).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// The reference: 256 bytes, no control characters (it is printed and stored).
pub const MAX_REFERENCE_BYTES: usize = 256;
/// Items of any list of a declaration.
pub const MAX_ITEMS: usize = 1_000;

struct Errors {
    prefix: String,
    found: Vec<(String, String)>,
}

impl Errors {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.found
            .push((format!("{}{path}", self.prefix), message.into()));
    }

    fn text(&mut self, path: &str, value: &str) {
        if value.len() > MAX_TEXT_BYTES {
            self.add(path, format!("longer than {MAX_TEXT_BYTES} bytes"));
        }
    }

    fn items(&mut self, path: &str, count: usize) {
        if count > MAX_ITEMS {
            self.add(path, format!("more than {MAX_ITEMS} items"));
        }
    }

    fn number(&mut self, path: &str, value: f64) {
        if !value.is_finite() || value < 0.0 {
            self.add(path, "must be a finite number, 0 or more");
        }
    }
}

/// Every reason a batch of declarations cannot be read, as `(field path, message)` with paths
/// such as `declarations[2].parties[0].role`; empty when it can be.
pub fn check_batch(declarations: &[Declaration]) -> Vec<(String, String)> {
    if declarations.is_empty() {
        return vec![("declarations".into(), "no declaration to screen".into())];
    }
    if declarations.len() > MAX_DECLARATIONS_PER_CALL {
        return vec![(
            "declarations".into(),
            format!(
                "{} declarations; at most {MAX_DECLARATIONS_PER_CALL} are screened per call",
                declarations.len()
            ),
        )];
    }
    let mut errors = Errors {
        prefix: String::new(),
        found: Vec::new(),
    };
    for (index, declaration) in declarations.iter().enumerate() {
        errors.prefix = format!("declarations[{index}].");
        check_declaration(declaration, &mut errors);
    }
    errors.found
}

fn check_declaration(declaration: &Declaration, errors: &mut Errors) {
    let reference = declaration.reference.as_str();
    if reference.trim().is_empty() {
        errors.add("reference", "is required: results and alerts name it");
    } else if reference.len() > MAX_REFERENCE_BYTES {
        errors.add(
            "reference",
            format!("longer than {MAX_REFERENCE_BYTES} bytes"),
        );
    } else if reference.chars().any(char::is_control) {
        errors.add("reference", "contains control characters");
    }
    if cordon_proto::v1::DeclarationKind::try_from(declaration.kind).is_err() {
        errors.add(
            "kind",
            format!("{} is not a declaration kind", declaration.kind),
        );
    }
    if let Some(at) = &declaration.declared_at
        && (!(0..=253_402_300_799).contains(&at.seconds) || !(0..1_000_000_000).contains(&at.nanos))
    {
        errors.add("declaredAt", "is not a time between 1970 and 9999");
    }
    errors.items("parties", declaration.parties.len());
    for (index, party) in declaration.parties.iter().enumerate() {
        let path = |name: &str| format!("parties[{index}].{name}");
        if PartyRole::try_from(party.role).is_err() {
            errors.add(&path("role"), format!("{} is not a party role", party.role));
        }
        for (name, value) in [
            ("name", &party.name),
            ("country", &party.country),
            ("lei", &party.lei),
            ("registrationNumber", &party.registration_number),
            ("address", &party.address),
        ] {
            errors.text(&path(name), value);
        }
    }
    errors.items("goods", declaration.goods.len());
    for (index, goods) in declaration.goods.iter().enumerate() {
        let path = |name: &str| format!("goods[{index}].{name}");
        errors.text(&path("hsCode"), &goods.hs_code);
        errors.text(&path("description"), &goods.description);
        errors.number(&path("quantity"), goods.quantity);
        errors.number(&path("value"), goods.value);
    }
    if let Some(transport) = &declaration.transport {
        if let Some(vessel) = &transport.vessel {
            for (name, value) in [
                ("imo", &vessel.imo),
                ("mmsi", &vessel.mmsi),
                ("name", &vessel.name),
                ("flag", &vessel.flag),
            ] {
                errors.text(&format!("transport.vessel.{name}"), value);
            }
        }
        if let Some(aircraft) = &transport.aircraft {
            errors.text("transport.aircraft.icao24", &aircraft.icao24);
            errors.text("transport.aircraft.registration", &aircraft.registration);
        }
        errors.items("transport.containers", transport.containers.len());
        for (index, container) in transport.containers.iter().enumerate() {
            errors.text(&format!("transport.containers[{index}]"), container);
        }
        errors.items(
            "transport.transshipmentPorts",
            transport.transshipment_ports.len(),
        );
        for (index, port) in transport.transshipment_ports.iter().enumerate() {
            errors.text(&format!("transport.transshipmentPorts[{index}]"), port);
        }
        errors.text("transport.billOfLading", &transport.bill_of_lading);
        errors.text("transport.portOfLoading", &transport.port_of_loading);
        errors.text("transport.portOfDischarge", &transport.port_of_discharge);
    }
    if let Some(certificate) = &declaration.end_user_certificate {
        errors.text("endUserCertificate.number", &certificate.number);
        errors.text(
            "endUserCertificate.issuingCountry",
            &certificate.issuing_country,
        );
    }
    errors.items("payments", declaration.payments.len());
    for (index, payment) in declaration.payments.iter().enumerate() {
        for (name, value) in [
            ("iban", &payment.iban),
            ("bic", &payment.bic),
            ("payer", &payment.payer),
        ] {
            errors.text(&format!("payments[{index}].{name}"), value);
        }
    }
    errors.items("weapons", declaration.weapons.len());
    for (index, weapon) in declaration.weapons.iter().enumerate() {
        for (name, value) in [
            ("manufacturer", &weapon.manufacturer),
            ("model", &weapon.model),
            ("serialNumber", &weapon.serial_number),
            ("calibre", &weapon.calibre),
        ] {
            errors.text(&format!("weapons[{index}].{name}"), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_proto::v1::declaration::{Goods, Party};

    fn check(declaration: Declaration, expected: &[&str]) {
        let errors = check_batch(&[declaration]);
        let paths: Vec<&str> = errors.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(paths, expected, "{errors:?}");
    }

    fn readable() -> Declaration {
        Declaration {
            reference: "GH-1".into(),
            ..Declaration::default()
        }
    }

    #[test]
    fn only_what_cannot_be_read_is_refused() {
        check(readable(), &[]);
        check(
            Declaration {
                reference: " ".into(),
                ..readable()
            },
            &["declarations[0].reference"],
        );
        check(
            Declaration {
                reference: "a\nb".into(),
                kind: 99,
                ..readable()
            },
            &["declarations[0].reference", "declarations[0].kind"],
        );
        check(
            Declaration {
                parties: vec![Party {
                    role: 42,
                    name: "x".repeat(10_000),
                    ..Party::default()
                }],
                goods: vec![Goods {
                    quantity: f64::NAN,
                    value: -1.0,
                    ..Goods::default()
                }],
                ..readable()
            },
            &[
                "declarations[0].parties[0].role",
                "declarations[0].goods[0].quantity",
                "declarations[0].goods[0].value",
            ],
        );
        check(
            Declaration {
                parties: vec![Party {
                    name: "x".repeat(MAX_TEXT_BYTES + 1),
                    ..Party::default()
                }],
                ..readable()
            },
            &["declarations[0].parties[0].name"],
        );
    }

    #[test]
    fn batches_are_bounded() {
        assert_eq!(check_batch(&[])[0].0, "declarations");
        let oversized = vec![readable(); MAX_DECLARATIONS_PER_CALL + 1];
        let errors = check_batch(&oversized);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].1.contains("at most 1000"), "{errors:?}");
        let second_bad = vec![readable(), Declaration::default()];
        assert_eq!(check_batch(&second_bad)[0].0, "declarations[1].reference");
    }
}
