//! Validation of each indicator kind's fields, with the risk signals each kind can raise.

use cordon_proto::v1::indicator::Kind;
use cordon_proto::v1::{
    Account, Aircraft, Consignment, EndUserCertificate, Entity, EntityRole, EucStatus, Indicator,
    MarkingStatus, Route, Vessel, Weapon,
};

use super::Report;
use crate::KIND_NAMES;
use crate::checks::{self, CheckFailure};

const COUNTRY: &str = "an ISO 3166-1 alpha-2 country code";

pub(super) fn validate_kind(report: &mut Report, indicator: &Indicator) {
    match &indicator.kind {
        None => report.error(
            "kind",
            format!("no kind is set, expected one of {}", KIND_NAMES.join(", ")),
        ),
        Some(Kind::Vessel(vessel)) => validate_vessel(report, vessel),
        Some(Kind::Aircraft(aircraft)) => validate_aircraft(report, aircraft),
        Some(Kind::Entity(entity)) => validate_entity(report, entity),
        Some(Kind::EndUserCertificate(certificate)) => {
            validate_end_user_certificate(report, certificate)
        }
        Some(Kind::Consignment(consignment)) => validate_consignment(report, consignment),
        Some(Kind::Weapon(weapon)) => validate_weapon(report, weapon),
        Some(Kind::Account(account)) => validate_account(report, account),
        Some(Kind::Route(route)) => validate_route(report, route),
    }
}

fn validate_vessel(report: &mut Report, vessel: &Vessel) {
    if vessel.imo.is_empty() && vessel.mmsi.is_empty() {
        report.error(
            "vessel",
            "has neither imo nor mmsi, expected at least one of them",
        );
    }
    if !vessel.imo.is_empty() && report.short_string("vessel.imo", &vessel.imo) {
        match checks::check_imo(&vessel.imo) {
            Ok(()) => {}
            // Real ships sometimes carry IMO numbers with bad check digits: the publisher says
            // so explicitly, and recipients still see that the number does not check.
            Err(failure @ CheckFailure::CheckDigit { .. }) if vessel.imo_check_digit_override => {
                report.warning(
                    "vessel.imo",
                    format!("{failure}; accepted because imoCheckDigitOverride is set"),
                );
            }
            Err(failure) => report.error("vessel.imo", failure.to_string()),
        }
    }
    let mid = report.identifier("vessel.mmsi", &vessel.mmsi, checks::ship_station_mid);
    let flag = report
        .identifier("vessel.flag", &vessel.flag, checks::check_country_code)
        .map(|()| vessel.flag.as_str());
    report.short_string("vessel.name", &vessel.name);

    // A ship keeps its MMSI's MID only under the flag that assigned it: a mismatch suggests a
    // spoofed MMSI or a false flag (DOMAIN.md red flags).
    if let (Some(mid), Some(flag)) = (mid, flag)
        && let Some(mid_country) = checks::mid_country(mid)
        && !checks::same_state_or_dependency(mid_country, flag)
    {
        report.warning(
            "vessel.mmsi",
            format!("MID {mid} is allocated to {mid_country}, but the flag is {flag}"),
        );
    }
}

fn validate_aircraft(report: &mut Report, aircraft: &Aircraft) {
    let address = report.required_identifier(
        "aircraft.icao24",
        &aircraft.icao24,
        "6 hexadecimal characters",
        checks::check_icao24,
    );
    report.short_string("aircraft.registration", &aircraft.registration);
    let state = report
        .identifier(
            "aircraft.stateOfRegistry",
            &aircraft.state_of_registry,
            checks::check_country_code,
        )
        .map(|()| aircraft.state_of_registry.as_str());

    if let (Some(address), Some(state)) = (address, state)
        && let Some(block_state) = checks::icao24_state(address)
        && !checks::same_state_or_dependency(block_state, state)
    {
        report.warning(
            "aircraft.icao24",
            format!(
                "address is in the block of {block_state}, but the state of registry is {state}"
            ),
        );
    }
}

fn validate_entity(report: &mut Report, entity: &Entity) {
    report.required_text(
        "entity.name",
        &entity.name,
        "the name of the person or company",
    );
    report.enumeration::<EntityRole>("entity.role", entity.role, false, EntityRole::as_str_name);
    report.identifier(
        "entity.country",
        &entity.country,
        checks::check_country_code,
    );
    report.short_string("entity.registrationNumber", &entity.registration_number);
    report.identifier("entity.lei", &entity.lei, checks::check_lei);
}

fn validate_end_user_certificate(report: &mut Report, certificate: &EndUserCertificate) {
    report.required_text(
        "endUserCertificate.number",
        &certificate.number,
        "the certificate number",
    );
    report.required_identifier(
        "endUserCertificate.issuingCountry",
        &certificate.issuing_country,
        COUNTRY,
        checks::check_country_code,
    );
    report.short_string(
        "endUserCertificate.issuingAuthority",
        &certificate.issuing_authority,
    );
    report.short_string("endUserCertificate.endUser", &certificate.end_user);
    report.enumeration::<EucStatus>(
        "endUserCertificate.status",
        certificate.status,
        false,
        EucStatus::as_str_name,
    );
}

fn validate_consignment(report: &mut Report, consignment: &Consignment) {
    if consignment.container_number.is_empty() && consignment.bill_of_lading.is_empty() {
        report.error(
            "consignment",
            "has neither containerNumber nor billOfLading, expected at least one of them",
        );
    }
    report.identifier(
        "consignment.containerNumber",
        &consignment.container_number,
        checks::check_container_number,
    );
    report.short_string("consignment.billOfLading", &consignment.bill_of_lading);

    let max_list_items = report.limits.max_list_items;
    if report.list_length(
        "consignment.hsCodes",
        consignment.hs_codes.len(),
        max_list_items,
    ) {
        for (index, hs_code) in consignment.hs_codes.iter().enumerate() {
            let path = format!("consignment.hsCodes[{index}]");
            let valid =
                report.required_identifier(&path, hs_code, "4 to 10 digits", checks::check_hs_code);
            if valid.is_some() && !checks::is_arms_hs_code(hs_code) {
                report.warning(
                    &path,
                    format!("{hs_code} is outside chapter 93 (arms and ammunition); arms declared under another chapter are a red flag"),
                );
            }
        }
    }

    report.identifier(
        "consignment.portOfLoading",
        &consignment.port_of_loading,
        checks::check_unlocode,
    );
    report.identifier(
        "consignment.portOfDischarge",
        &consignment.port_of_discharge,
        checks::check_unlocode,
    );
    if report.list_length("consignment.route", consignment.route.len(), max_list_items) {
        for (index, port) in consignment.route.iter().enumerate() {
            let path = format!("consignment.route[{index}]");
            report.required_identifier(&path, port, "a UN/LOCODE", checks::check_unlocode);
        }
    }
}

fn validate_weapon(report: &mut Report, weapon: &Weapon) {
    let marking = report.enumeration::<MarkingStatus>(
        "weapon.markingStatus",
        weapon.marking_status,
        false,
        MarkingStatus::as_str_name,
    );
    let marking_defaced = matches!(
        marking,
        Some(MarkingStatus::Altered | MarkingStatus::Obliterated)
    );
    report.short_string("weapon.manufacturer", &weapon.manufacturer);
    report.short_string("weapon.model", &weapon.model);
    report.short_string("weapon.calibre", &weapon.calibre);
    report.identifier(
        "weapon.countryOfManufacture",
        &weapon.country_of_manufacture,
        checks::check_country_code,
    );

    if weapon.serial_number.trim().is_empty() {
        if !marking_defaced {
            report.error(
                "weapon.serialNumber",
                "is empty, expected the serial number (only a markingStatus of MARKING_STATUS_ALTERED or MARKING_STATUS_OBLITERATED allows none)",
            );
        } else if weapon.manufacturer.trim().is_empty() && weapon.model.trim().is_empty() {
            report.error(
                "weapon",
                "has no manufacturer, model or serialNumber, expected at least one of them",
            );
        }
    } else {
        report.short_string("weapon.serialNumber", &weapon.serial_number);
    }
}

fn validate_account(report: &mut Report, account: &Account) {
    if account.iban.is_empty() && account.bic.is_empty() {
        report.error(
            "account",
            "has neither iban nor bic, expected at least one of them",
        );
    }
    report.identifier("account.iban", &account.iban, checks::check_iban);
    if let Some(bic) = report.identifier("account.bic", &account.bic, checks::bic_form)
        && bic.is_test()
    {
        report.warning(
            "account.bic",
            format!("location code {} marks a test BIC (0 as second character), not one used for live payments", bic.location),
        );
    }
    report.short_string("account.holder", &account.holder);
}

fn validate_route(report: &mut Report, route: &Route) {
    if route.origin_country.is_empty()
        && route.destination_country.is_empty()
        && route.transit_countries.is_empty()
        && route.ports.is_empty()
    {
        report.error(
            "route",
            "is empty, expected at least one of originCountry, transitCountries, destinationCountry, ports",
        );
    }
    report.identifier(
        "route.originCountry",
        &route.origin_country,
        checks::check_country_code,
    );
    report.identifier(
        "route.destinationCountry",
        &route.destination_country,
        checks::check_country_code,
    );

    let max_list_items = report.limits.max_list_items;
    if report.list_length(
        "route.transitCountries",
        route.transit_countries.len(),
        max_list_items,
    ) {
        for (index, country) in route.transit_countries.iter().enumerate() {
            let path = format!("route.transitCountries[{index}]");
            report.required_identifier(&path, country, COUNTRY, checks::check_country_code);
        }
    }
    if report.list_length("route.ports", route.ports.len(), max_list_items) {
        for (index, port) in route.ports.iter().enumerate() {
            let path = format!("route.ports[{index}]");
            report.required_identifier(&path, port, "a UN/LOCODE", checks::check_unlocode);
        }
    }
}
