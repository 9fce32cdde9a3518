# Reference risk policy for screening, installed by `cordon init` beside the sharing policy.
#
# When an agency screens a declaration, the gateway finds every indicator it may show that
# agency and that matches the declaration, and evaluates `data.cordon.risk.assessment` with
#
#   input.declaration  the declaration in its proto3 JSON form (defaults omitted)
#   input.matches      [{"declarationField", "value", "indicatorId", "kind", "indicatorField",
#                        "method": "exact"|"normalised"|"fuzzy", "similarity", "feature",
#                        "tlp", "originator", "severity", "confidence", "tags",
#                        "indicator": the indicator as released to the agency}]
#   input.findings     [{"field", "flag", "explanation"}]: red flags of the declaration's own
#                      identifiers (failed_check_digit, malformed_identifier,
#                      not_a_ship_station, mmsi_flag_mismatch)
#   input.context      {"member", "agency", "now"}
#
# and expects {"score": 0-100, "level": "LOW"|"MEDIUM"|"HIGH"|"CRITICAL",
# "reasons": [{"flag", "weight", "explanation"}]}. Anything else, or an error, is level
# UNASSESSED: never LOW.
#
# The red flags weighed here are those of consignment screening (forged or reused end-user
# certificates, arms under HS chapter 93, embargoed destinations and transits, transshipment
# through flagged ports, payers not on the contract, identifiers that fail their checks,
# unregistered brokers, trading companies as end users) and every match with an indicator,
# by its severity. Weights and level thresholds are in data.screening; keep risk_test.rego
# passing, or the gateway keeps the previous policy.
package cordon.risk

import rego.v1

assessment := {
	"score": score,
	"level": level,
	"reasons": reasons,
}

reasons := [reason | some reason in reason_set]

score := min([100, sum([reason.weight | some reason in reason_set])])

# The board's settings in data.screening and data.embargoes, each optional.
default configured_levels := {}

configured_levels := data.screening.levels

default configured_weights := {}

configured_weights := data.screening.weights

default configured_severity_weights := {}

configured_severity_weights := data.screening.severity_weights

default weak_control_ports := []

weak_control_ports := data.screening.weak_control_ports

default embargoes := []

embargoes := data.embargoes.un_arms

thresholds := object.union(
	{"medium": 20, "high": 50, "critical": 80},
	configured_levels,
)

default level := "LOW"

level := "MEDIUM" if {
	score >= thresholds.medium
	score < thresholds.high
}

level := "HIGH" if {
	score >= thresholds.high
	score < thresholds.critical
}

level := "CRITICAL" if score >= thresholds.critical

weights := object.union(
	{
		"forged_euc": 60,
		"flagged_euc": 30,
		"arms_goods": 15,
		"arms_outside_chapter_93": 30,
		"missing_euc": 30,
		"embargoed_destination": 50,
		"embargoed_transit": 40,
		"flagged_transshipment": 25,
		"weak_control_port": 20,
		"route_matched": 10,
		"payer_not_on_contract": 20,
		"unregistered_broker": 15,
		"trading_company_as_end_user": 15,
		"failed_check_digit": 15,
		"malformed_identifier": 10,
		"not_a_ship_station": 20,
		"mmsi_flag_mismatch": 15,
	},
	configured_weights,
)

# A match with an indicator weighs by the indicator's severity.
severity_weights := object.union(
	{
		"SEVERITY_CRITICAL": 40,
		"SEVERITY_HIGH": 30,
		"SEVERITY_MEDIUM": 20,
		"SEVERITY_LOW": 10,
	},
	configured_severity_weights,
)

flagged(flag, explanation) := {"flag": flag, "weight": weights[flag], "explanation": explanation}

## The declaration.

declaration := input.declaration

parties := object.get(declaration, "parties", [])

goods := object.get(declaration, "goods", [])

transport := object.get(declaration, "transport", {})

payments := object.get(declaration, "payments", [])

transshipment_ports := object.get(transport, "transshipmentPorts", [])

euc_number := object.get(declaration, ["endUserCertificate", "number"], "")

embargoed := {country | some country in embargoes}

# UN/LOCODEs begin with their country's ISO 3166-1 code.
port_country(port) := upper(substring(trim_space(port), 0, 2))

destination_countries contains port_country(transport.portOfDischarge) if transport.portOfDischarge

destination_countries contains upper(party.country) if {
	some party in parties
	party.role in {"PARTY_ROLE_CONSIGNEE", "PARTY_ROLE_END_USER", "PARTY_ROLE_IMPORTER"}
	party.country
}

arms_goods if {
	some item in goods
	startswith(trim_space(object.get(item, "hsCode", "")), "93")
}

arms_words := {"rifle", "pistol", "revolver", "firearm", "weapon", "gun", "ammunition", "munition", "cartridge", "grenade", "mortar"}

described_as_arms(item) if {
	description := lower(object.get(item, "description", ""))
	some word in arms_words
	contains(description, word)
}

# Names compared as the matching compares them, roughly: lower case, without spaces and
# punctuation. (Not regex.replace: on the bytecode VM it costs a third of an assessment.)
plain_name(name) := strings.replace_n(
	{" ": "", ".": "", ",": "", "-": "", "'": "", "\"": "", "&": "", "/": "", "(": "", ")": "", "_": "", ":": "", ";": "", "+": ""},
	lower(name),
)

party_names := {plain_name(party.name) | some party in parties; party.name}

## Red flags.

# Once per certificate indicator, however many fields of the declaration match it.
reason_set contains flagged("forged_euc", sprintf("end-user certificate %s matches indicator %s: forged", [euc_of(m), m.indicatorId])) if {
	some m in input.matches
	m.kind == "endUserCertificate"
	m.indicator.endUserCertificate.status == "EUC_STATUS_FORGED"
}

reason_set contains flagged("flagged_euc", sprintf("end-user certificate %s matches indicator %s: %s", [euc_of(m), m.indicatorId, lower(trim_prefix(status, "EUC_STATUS_"))])) if {
	some m in input.matches
	m.kind == "endUserCertificate"
	status := object.get(m.indicator, ["endUserCertificate", "status"], "EUC_STATUS_UNSPECIFIED")
	status != "EUC_STATUS_FORGED"
}

euc_of(m) := object.get(m.indicator, ["endUserCertificate", "number"], m.value)

reason_set contains flagged("arms_goods", "goods under HS chapter 93 (arms and ammunition)") if arms_goods

reason_set contains flagged("arms_outside_chapter_93", sprintf("goods described as \"%s\" are declared under HS %s, outside chapter 93", [item.description, item.hsCode])) if {
	some item in goods
	described_as_arms(item)
	not startswith(trim_space(object.get(item, "hsCode", "")), "93")
}

reason_set contains flagged("missing_euc", "arms are declared without an end-user certificate number") if {
	arms_goods
	euc_number == ""
}

reason_set contains flagged("embargoed_destination", sprintf("destination %s is under a UN arms embargo", [country])) if {
	some country in destination_countries
	country in embargoed
}

reason_set contains flagged("embargoed_transit", sprintf("transit through %s, under a UN arms embargo", [port])) if {
	some port in transshipment_ports
	port_country(port) in embargoed
}

reason_set contains flagged("flagged_transshipment", sprintf("transshipment port %s is on the route of indicator %s", [m.value, m.indicatorId])) if {
	some m in input.matches
	m.feature == "route_port"
}

reason_set contains flagged("weak_control_port", sprintf("transshipment through %s, a port the board lists as weakly controlled", [port])) if {
	some port in transshipment_ports
	upper(port) in weak_ports
}

# Built once per assessment, not once per port.
weak_ports := {upper(listed) | some listed in weak_control_ports}

reason_set contains flagged("route_matched", sprintf("the route matches route indicator %s (%s)", [id, concat(", ", sort(route_features(id)))])) if {
	some m in input.matches
	m.feature in route_country_features
	id := m.indicatorId
}

route_country_features := {"origin_country", "transit_country", "destination_country"}

route_features(id) := {m.feature | some m in input.matches; m.indicatorId == id; m.feature in route_country_features}

reason_set contains flagged("payer_not_on_contract", sprintf("payer \"%s\" is not a party to the declaration", [payment.payer])) if {
	some payment in payments
	payment.payer
	not plain_name(payment.payer) in party_names
}

reason_set contains flagged("unregistered_broker", sprintf("broker \"%s\" gives no registration number or LEI", [party.name])) if {
	some party in parties
	party.role == "PARTY_ROLE_BROKER"
	object.get(party, "registrationNumber", "") == ""
	object.get(party, "lei", "") == ""
}

reason_set contains flagged("trading_company_as_end_user", sprintf("end user \"%s\" is a trading or forwarding company", [party.name])) if {
	some party in parties
	party.role == "PARTY_ROLE_END_USER"
	some word in {"trading", "logistics", "forwarding", "shipping", "freight"}
	contains(lower(party.name), word)
}

reason_set contains flagged(finding.flag, finding.explanation) if {
	some finding in input.findings
	weights[finding.flag]
}

# Every other indicator matched, once, by its severity; a fuzzy name match counts by its
# similarity.
reason_set contains {
	"flag": "indicator_matched",
	"weight": indicator_weight(id),
	"explanation": sprintf("matches %s indicator %s (%s)", [kind, id, concat(", ", sort({other.declarationField | some other in matches_of(id)}))]),
} if {
	some m in input.matches
	not m.kind in {"endUserCertificate", "route"}
	id := m.indicatorId
	kind := m.kind
}

matches_of(id) := [m | some m in input.matches; m.indicatorId == id]

match_weight(m) := round(object.get(severity_weights, object.get(m, "severity", ""), 10) * object.get(m, "similarity", 1))

indicator_weight(id) := max([match_weight(m) | some m in matches_of(id)])
