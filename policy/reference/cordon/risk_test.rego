# Tests of the reference risk policy: one per red flag, the levels, and the board's data.
# Run them with `cordon policy test <dir>`.
package cordon.risk_test

import data.cordon.risk
import rego.v1

## Fixtures.

clean := {
	"reference": "T-1",
	"kind": "DECLARATION_KIND_IMPORT",
	"parties": [{"role": "PARTY_ROLE_CONSIGNEE", "name": "Accra Hospital Equipment", "country": "GH"}],
	"goods": [{"hsCode": "901890", "description": "surgical instruments", "quantity": 50}],
	"transport": {"portOfLoading": "NLRTM", "portOfDischarge": "GHTEM"},
}

with_field(declaration, field, value) := object.union(declaration, {field: value})

request(declaration, matches, findings) := {
	"declaration": declaration,
	"matches": matches,
	"findings": findings,
	"context": {"member": "GH", "agency": "GH/customs", "now": "2026-11-25T00:00:00Z"},
}

assess(declaration) := a if {
	a := risk.assessment with input as request(declaration, [], [])
		with data.embargoes.un_arms as ["SS", "SD"]
}

assess_matches(matches) := a if {
	a := risk.assessment with input as request(clean, matches, [])
		with data.embargoes.un_arms as []
}

flags(assessment) := {reason.flag | some reason in assessment.reasons}

match(kind, feature, severity) := {
	"declarationField": "transport.containers[0]",
	"value": "MSCU1234566",
	"indicatorId": sprintf("id-%s-%s", [kind, feature]),
	"kind": kind,
	"indicatorField": "consignment.containerNumber",
	"method": "normalised",
	"similarity": 1,
	"feature": feature,
	"tlp": "TLP_GREEN",
	"originator": "NG",
	"severity": severity,
	"indicator": {},
}

euc_match(status) := object.union(match("endUserCertificate", "euc_number", "SEVERITY_CRITICAL"), {
	"value": "EUC/2026/7731",
	"indicator": {"endUserCertificate": {"number": "EUC/2026/7731", "status": status}},
})

arms := with_field(clean, "goods", [{"hsCode": "930190", "description": "assault rifles", "quantity": 400}])

## Levels.

test_a_clean_declaration_is_low_with_no_reason if {
	a := assess(clean)
	a.score == 0
	a.level == "LOW"
	a.reasons == []
}

test_levels_follow_the_thresholds if {
	assess_matches([match("vessel", "imo", "SEVERITY_MEDIUM")]).level == "MEDIUM"
	assess_matches([match("consignment", "container", "SEVERITY_CRITICAL"), match("vessel", "imo", "SEVERITY_MEDIUM")]).level == "HIGH"
	assess(with_field(arms, "parties", [{"role": "PARTY_ROLE_END_USER", "name": "X", "country": "SS"}])).level == "CRITICAL"
}

test_the_score_is_capped_at_100 if {
	a := assess_matches([euc_match("EUC_STATUS_FORGED"), euc_match("EUC_STATUS_SUSPICIOUS"), match("account", "iban", "SEVERITY_CRITICAL")])
	a.score == 100
	a.level == "CRITICAL"
}

test_the_board_sets_weights_and_thresholds if {
	a := risk.assessment with input as request(clean, [match("vessel", "imo", "SEVERITY_MEDIUM")], [])
		with data.screening as {"severity_weights": {"SEVERITY_MEDIUM": 55}, "levels": {"high": 60, "critical": 90}}
	a.score == 55
	a.level == "MEDIUM"
}

## Matches with indicators.

test_a_forged_euc_weighs_most if {
	a := assess_matches([euc_match("EUC_STATUS_FORGED")])
	flags(a) == {"forged_euc"}
	a.score == 60
	a.level == "HIGH"
}

test_a_reused_or_revoked_euc_is_flagged if {
	a := assess_matches([euc_match("EUC_STATUS_SUSPICIOUS")])
	flags(a) == {"flagged_euc"}
	contains(a.reasons[0].explanation, "suspicious")
}

test_matches_weigh_by_severity_once_per_indicator if {
	container := match("consignment", "container", "SEVERITY_HIGH")
	bill := object.union(container, {"declarationField": "transport.billOfLading", "feature": "bill_of_lading"})
	a := assess_matches([container, bill])
	count(a.reasons) == 1
	a.reasons[0].flag == "indicator_matched"
	a.score == 30
	contains(a.reasons[0].explanation, "transport.billOfLading, transport.containers[0]")
}

test_a_fuzzy_name_match_counts_by_its_similarity if {
	name := object.union(match("entity", "party_name", "SEVERITY_HIGH"), {"method": "fuzzy", "similarity": 0.9})
	assess_matches([name]).score == 27
}

test_an_unknown_severity_weighs_little if {
	assess_matches([match("weapon", "weapon_serial", "SEVERITY_UNSPECIFIED")]).score == 10
}

test_transshipment_through_a_route_port if {
	a := assess_matches([match("route", "route_port", "SEVERITY_LOW"), match("route", "destination_country", "SEVERITY_LOW")])
	flags(a) == {"flagged_transshipment", "route_matched"}
}

test_a_route_matched_on_several_countries_counts_once if {
	destination := object.union(match("route", "destination_country", "SEVERITY_LOW"), {"indicatorId": "route-1"})
	origin := object.union(match("route", "origin_country", "SEVERITY_LOW"), {"indicatorId": "route-1"})
	a := assess_matches([destination, origin])
	count(a.reasons) == 1
	a.score == 10
	contains(a.reasons[0].explanation, "destination_country, origin_country")
}

test_a_certificate_matched_twice_counts_once if {
	by_name := object.union(euc_match("EUC_STATUS_FORGED"), {"feature": "party_name", "value": "example security services"})
	a := assess_matches([euc_match("EUC_STATUS_FORGED"), by_name])
	count(a.reasons) == 1
	a.score == 60
	contains(a.reasons[0].explanation, "EUC/2026/7731")
}

## The declaration's own red flags.

test_arms_under_chapter_93 if {
	flags(assess(with_field(arms, "endUserCertificate", {"number": "EUC/1", "issuingCountry": "SN"}))) == {"arms_goods"}
}

test_arms_without_an_end_user_certificate if {
	flags(assess(arms)) == {"arms_goods", "missing_euc"}
}

test_arms_declared_under_another_chapter if {
	machinery := with_field(clean, "goods", [{"hsCode": "847989", "description": "Machinery parts (rifle barrels)"}])
	flags(assess(machinery)) == {"arms_outside_chapter_93"}
}

test_embargoed_destination_by_port_or_party if {
	by_port := with_field(clean, "transport", {"portOfLoading": "NLRTM", "portOfDischarge": "SSJUB"})
	flags(assess(by_port)) == {"embargoed_destination"}
	by_party := with_field(clean, "parties", [{"role": "PARTY_ROLE_END_USER", "name": "Juba Supplies", "country": "ss"}])
	flags(assess(by_party)) == {"embargoed_destination"}
}

test_embargoed_transit if {
	via := with_field(clean, "transport", {"portOfLoading": "NLRTM", "transshipmentPorts": ["SDPZU"], "portOfDischarge": "GHTEM"})
	flags(assess(via)) == {"embargoed_transit"}
}

test_transshipment_through_a_weakly_controlled_port if {
	via := with_field(clean, "transport", {"transshipmentPorts": ["tglfw"], "portOfDischarge": "GHTEM"})
	a := risk.assessment with input as request(via, [], [])
		with data.embargoes.un_arms as []
		with data.screening.weak_control_ports as ["TGLFW"]
	flags(a) == {"weak_control_port"}
}

test_a_payer_not_on_the_contract if {
	paid := with_field(clean, "payments", [{"iban": "DE89370400440532013000", "payer": "Example Trading FZE"}])
	flags(assess(paid)) == {"payer_not_on_contract"}
	by_party := with_field(clean, "payments", [{"payer": "ACCRA HOSPITAL EQUIPMENT"}])
	flags(assess(by_party)) == set()
	punctuated := with_field(clean, "payments", [{"payer": "Accra-Hospital (Equipment)."}])
	flags(assess(punctuated)) == set()
}

test_an_unregistered_broker if {
	broker := {"role": "PARTY_ROLE_BROKER", "name": "Example Brokers", "country": "AE"}
	flags(assess(with_field(clean, "parties", [broker]))) == {"unregistered_broker"}
	registered := object.union(broker, {"registrationNumber": "FZE-1"})
	flags(assess(with_field(clean, "parties", [registered]))) == set()
}

test_a_trading_company_as_end_user if {
	end_user := {"role": "PARTY_ROLE_END_USER", "name": "Example Trading FZE", "country": "AE"}
	flags(assess(with_field(clean, "parties", [end_user]))) == {"trading_company_as_end_user"}
}

test_identifier_findings_weigh_by_flag if {
	findings := [
		{"field": "transport.containers[0]", "flag": "failed_check_digit", "explanation": "check digit is 7, expected 6"},
		{"field": "transport.vessel.mmsi", "flag": "mmsi_flag_mismatch", "explanation": "MID of LR, flag PA"},
		{"field": "transport.vessel.imo", "flag": "something_else", "explanation": "not weighed"},
	]
	a := risk.assessment with input as request(clean, [], findings)
		with data.embargoes.un_arms as []
	flags(a) == {"failed_check_digit", "mmsi_flag_mismatch"}
	a.score == 30
}
