//! What matching compares: declarations, indicators and watchlist entries turned into
//! [`Subject`]s, each identifier and name with its field path in proto3 JSON form, and the
//! red flags of a declaration's own identifiers.

use cordon_matching::{Finding, IdKind, NameClass, Subject};
use cordon_proto::v1::PartyRole;
use cordon_proto::v1::{Declaration, Indicator, WatchEntry, indicator};

/// The country of a UN/LOCODE (its first two letters), when it has one.
fn port_country(port: &str) -> Option<String> {
    let compact: String = port
        .chars()
        .filter(|character| character.is_ascii_alphanumeric())
        .collect();
    (compact.len() == 5).then(|| compact[..2].to_ascii_uppercase())
}

/// Whether a party of this role says where the goods go.
fn receives(role: i32) -> bool {
    [
        PartyRole::Consignee,
        PartyRole::EndUser,
        PartyRole::Importer,
    ]
    .iter()
    .any(|receiving| *receiving as i32 == role)
}

/// Everything a declaration offers to match on.
pub fn declaration_subject(declaration: &Declaration) -> Subject {
    let mut subject = Subject::default();
    for (index, party) in declaration.parties.iter().enumerate() {
        let field = |name: &str| format!("parties[{index}].{name}");
        subject.name(NameClass::Party, &party.name, field("name"));
        subject.identifier(IdKind::Lei, &party.lei, field("lei"));
        subject.identifier(
            IdKind::RegistrationNumber,
            &party.registration_number,
            field("registrationNumber"),
        );
        if receives(party.role) {
            subject.identifier(IdKind::DestinationCountry, &party.country, field("country"));
        }
    }
    if let Some(transport) = &declaration.transport {
        if let Some(vessel) = &transport.vessel {
            subject.identifier(IdKind::Imo, &vessel.imo, "transport.vessel.imo");
            subject.identifier(IdKind::Mmsi, &vessel.mmsi, "transport.vessel.mmsi");
            subject.name(NameClass::Vessel, &vessel.name, "transport.vessel.name");
        }
        if let Some(aircraft) = &transport.aircraft {
            subject.identifier(
                IdKind::Icao24,
                &aircraft.icao24,
                "transport.aircraft.icao24",
            );
            subject.identifier(
                IdKind::AircraftRegistration,
                &aircraft.registration,
                "transport.aircraft.registration",
            );
        }
        for (index, container) in transport.containers.iter().enumerate() {
            subject.identifier(
                IdKind::Container,
                container,
                format!("transport.containers[{index}]"),
            );
        }
        subject.identifier(
            IdKind::BillOfLading,
            &transport.bill_of_lading,
            "transport.billOfLading",
        );
        for (index, port) in transport.transshipment_ports.iter().enumerate() {
            let field = format!("transport.transshipmentPorts[{index}]");
            subject.identifier(IdKind::RoutePort, port, field.clone());
            if let Some(country) = port_country(port) {
                subject.identifier(IdKind::TransitCountry, &country, field);
            }
        }
        if let Some(country) = port_country(&transport.port_of_loading) {
            subject.identifier(IdKind::OriginCountry, &country, "transport.portOfLoading");
        }
        if let Some(country) = port_country(&transport.port_of_discharge) {
            subject.identifier(
                IdKind::DestinationCountry,
                &country,
                "transport.portOfDischarge",
            );
        }
    }
    if let Some(certificate) = &declaration.end_user_certificate {
        subject.qualified(
            IdKind::EucNumber,
            &certificate.number,
            Some(&certificate.issuing_country),
            "endUserCertificate.number",
        );
    }
    for (index, payment) in declaration.payments.iter().enumerate() {
        let field = |name: &str| format!("payments[{index}].{name}");
        subject.identifier(IdKind::Iban, &payment.iban, field("iban"));
        subject.identifier(IdKind::Bic, &payment.bic, field("bic"));
        subject.name(NameClass::Party, &payment.payer, field("payer"));
    }
    for (index, weapon) in declaration.weapons.iter().enumerate() {
        subject.qualified(
            IdKind::WeaponSerial,
            &weapon.serial_number,
            Some(&weapon.manufacturer),
            format!("weapons[{index}].serialNumber"),
        );
    }
    subject
}

/// The red flags of a declaration's own identifiers: failed check digits, identifiers not of
/// their kind's form, an MMSI that is not a ship's or belongs to another state than the flag.
pub fn findings(declaration: &Declaration) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut check = |kind: IdKind, value: &str, field: &str| {
        found.extend(cordon_matching::check(kind, value, field));
    };
    for (index, party) in declaration.parties.iter().enumerate() {
        check(IdKind::Lei, &party.lei, &format!("parties[{index}].lei"));
        check(
            IdKind::DestinationCountry,
            &party.country,
            &format!("parties[{index}].country"),
        );
    }
    if let Some(transport) = &declaration.transport {
        if let Some(vessel) = &transport.vessel {
            check(IdKind::Imo, &vessel.imo, "transport.vessel.imo");
            check(IdKind::Mmsi, &vessel.mmsi, "transport.vessel.mmsi");
            check(
                IdKind::DestinationCountry,
                &vessel.flag,
                "transport.vessel.flag",
            );
        }
        if let Some(aircraft) = &transport.aircraft {
            check(
                IdKind::Icao24,
                &aircraft.icao24,
                "transport.aircraft.icao24",
            );
        }
        for (index, container) in transport.containers.iter().enumerate() {
            check(
                IdKind::Container,
                container,
                &format!("transport.containers[{index}]"),
            );
        }
        check(
            IdKind::RoutePort,
            &transport.port_of_loading,
            "transport.portOfLoading",
        );
        for (index, port) in transport.transshipment_ports.iter().enumerate() {
            check(
                IdKind::RoutePort,
                port,
                &format!("transport.transshipmentPorts[{index}]"),
            );
        }
        check(
            IdKind::RoutePort,
            &transport.port_of_discharge,
            "transport.portOfDischarge",
        );
    }
    if let Some(certificate) = &declaration.end_user_certificate {
        check(
            IdKind::DestinationCountry,
            &certificate.issuing_country,
            "endUserCertificate.issuingCountry",
        );
    }
    for (index, payment) in declaration.payments.iter().enumerate() {
        check(
            IdKind::Iban,
            &payment.iban,
            &format!("payments[{index}].iban"),
        );
        check(IdKind::Bic, &payment.bic, &format!("payments[{index}].bic"));
    }
    if let Some(vessel) = declaration
        .transport
        .as_ref()
        .and_then(|transport| transport.vessel.as_ref())
    {
        found.extend(cordon_matching::mmsi_flag_mismatch(
            &vessel.mmsi,
            &vessel.flag,
            "transport.vessel.mmsi",
        ));
    }
    found
}

/// Everything an indicator offers to match on, by its kind.
pub fn indicator_subject(indicator: &Indicator) -> Subject {
    let mut subject = Subject::default();
    match &indicator.kind {
        Some(indicator::Kind::Vessel(vessel)) => {
            subject.identifier(IdKind::Imo, &vessel.imo, "vessel.imo");
            subject.identifier(IdKind::Mmsi, &vessel.mmsi, "vessel.mmsi");
            subject.name(NameClass::Vessel, &vessel.name, "vessel.name");
        }
        Some(indicator::Kind::Aircraft(aircraft)) => {
            subject.identifier(IdKind::Icao24, &aircraft.icao24, "aircraft.icao24");
            subject.identifier(
                IdKind::AircraftRegistration,
                &aircraft.registration,
                "aircraft.registration",
            );
        }
        Some(indicator::Kind::Entity(entity)) => {
            subject.name(NameClass::Party, &entity.name, "entity.name");
            subject.identifier(
                IdKind::RegistrationNumber,
                &entity.registration_number,
                "entity.registrationNumber",
            );
            subject.identifier(IdKind::Lei, &entity.lei, "entity.lei");
        }
        Some(indicator::Kind::EndUserCertificate(certificate)) => {
            subject.qualified(
                IdKind::EucNumber,
                &certificate.number,
                Some(&certificate.issuing_country),
                "endUserCertificate.number",
            );
            subject.name(
                NameClass::Party,
                &certificate.end_user,
                "endUserCertificate.endUser",
            );
        }
        Some(indicator::Kind::Consignment(consignment)) => {
            subject.identifier(
                IdKind::Container,
                &consignment.container_number,
                "consignment.containerNumber",
            );
            subject.identifier(
                IdKind::BillOfLading,
                &consignment.bill_of_lading,
                "consignment.billOfLading",
            );
        }
        Some(indicator::Kind::Weapon(weapon)) => {
            subject.qualified(
                IdKind::WeaponSerial,
                &weapon.serial_number,
                Some(&weapon.manufacturer),
                "weapon.serialNumber",
            );
        }
        Some(indicator::Kind::Account(account)) => {
            subject.identifier(IdKind::Iban, &account.iban, "account.iban");
            subject.identifier(IdKind::Bic, &account.bic, "account.bic");
            subject.name(NameClass::Party, &account.holder, "account.holder");
        }
        Some(indicator::Kind::Route(route)) => {
            for (index, port) in route.ports.iter().enumerate() {
                subject.identifier(IdKind::RoutePort, port, format!("route.ports[{index}]"));
            }
            subject.identifier(
                IdKind::OriginCountry,
                &route.origin_country,
                "route.originCountry",
            );
            for (index, country) in route.transit_countries.iter().enumerate() {
                subject.identifier(
                    IdKind::TransitCountry,
                    country,
                    format!("route.transitCountries[{index}]"),
                );
            }
            subject.identifier(
                IdKind::DestinationCountry,
                &route.destination_country,
                "route.destinationCountry",
            );
        }
        None => {}
    }
    subject
}

/// The kinds a watchlist entry may watch: an identifier kind's name, or a name class.
pub fn watch_kinds() -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = IdKind::ALL
        .iter()
        .filter(|kind| {
            !matches!(
                kind,
                IdKind::RoutePort
                    | IdKind::OriginCountry
                    | IdKind::TransitCountry
                    | IdKind::DestinationCountry
            )
        })
        .map(|kind| kind.name())
        .collect();
    kinds.extend([NameClass::Party.name(), NameClass::Vessel.name()]);
    kinds
}

/// What a watchlist entry offers to match on: its one identifier or name (`None` for an
/// unknown kind).
pub fn entry_subject(entry: &WatchEntry) -> Option<Subject> {
    let mut subject = Subject::default();
    let field = "value";
    if entry.kind == NameClass::Party.name() {
        subject.name(NameClass::Party, &entry.value, field);
    } else if entry.kind == NameClass::Vessel.name() {
        subject.name(NameClass::Vessel, &entry.value, field);
    } else {
        let kind =
            IdKind::parse(&entry.kind).filter(|_| watch_kinds().contains(&entry.kind.as_str()))?;
        subject.identifier(kind, &entry.value, field);
    }
    Some(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_declarations() -> Vec<Declaration> {
        include_str!("../../demo/declarations.jsonl")
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("an example declaration"))
            .collect()
    }

    #[test]
    fn declaration_fields_are_named_as_in_its_json() {
        let declarations = example_declarations();
        let subject = declaration_subject(&declarations[3]);
        let fields: Vec<(&str, &str)> = subject
            .identifiers
            .iter()
            .map(|identifier| (identifier.kind.name(), identifier.field.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("destination_country", "parties[0].country"),
                ("icao24", "transport.aircraft.icao24"),
                ("aircraft_registration", "transport.aircraft.registration"),
                ("route_port", "transport.transshipmentPorts[0]"),
                ("transit_country", "transport.transshipmentPorts[0]"),
                ("origin_country", "transport.portOfLoading"),
                ("destination_country", "transport.portOfDischarge"),
            ]
        );
    }

    #[test]
    fn the_example_declarations_have_no_identifier_red_flags_but_a_bad_digit_does() {
        for declaration in example_declarations() {
            assert_eq!(findings(&declaration), [], "{}", declaration.reference);
        }
        let mut declaration = example_declarations().remove(0);
        declaration
            .transport
            .as_mut()
            .expect("transport")
            .containers = vec!["MSCU1234567".into()];
        let found = findings(&declaration);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].flag, "failed_check_digit");
        assert_eq!(found[0].field, "transport.containers[0]");
    }

    #[test]
    fn entries_watch_identifiers_and_names_but_not_countries() {
        let entry = |kind: &str| WatchEntry {
            kind: kind.into(),
            value: "X".into(),
            ..WatchEntry::default()
        };
        assert!(entry_subject(&entry("imo")).is_some());
        assert!(entry_subject(&entry("party_name")).is_some());
        assert!(entry_subject(&entry("destination_country")).is_none());
        assert!(entry_subject(&entry("shoe_size")).is_none());
    }
}
