# Tests of the reference outbound policy. Run them with `cordon policy test <dir>`; the gateway
# activates a policy only when they all pass.
#
# Each test mocks the data it depends on (`with data.… as`), so that a board may change
# data.json (partners, trust levels, embargoes) without breaking these tests.
package cordon.outbound_test

import data.cordon.outbound
import rego.v1

## Fixtures.

# An indicator as the gateway hands it over: proto3 JSON, defaults omitted.
indicator(tlp, kind) := {
	"id": "0190c2a4-6f7e-7d1a-9c1e-000000000001",
	"originator": "GH",
	"publisher": "GH/customs",
	"created": "2026-11-01T00:00:00Z",
	"tlp": tlp,
	"narrative": "test indicator",
	"source": {"description": "informant report", "reliability": "B", "credibility": 2},
	kind: {"name": "Example Trading FZE"},
}

without_source(ind) := object.remove(ind, ["source"])

red_for(names) := object.union(indicator("TLP_RED", "account"), {"releasableTo": names})

protected(ind) := object.union(ind, {"protection": "PROTECTION_SOURCE_PROTECTED"})

partner := {"id": "NG", "kind": "member", "member": "NG", "country": "NG", "trust": 4}

low_trust_member := {"id": "CI", "kind": "member", "member": "CI", "country": "CI", "trust": 2}

organisation := {"id": "ECOWAS", "kind": "organization", "member": "ECOWAS", "trust": 3}

own_agency := {"id": "GH/customs", "kind": "agency", "member": "GH"}

own_other_agency := {"id": "GH/police", "kind": "agency", "member": "GH"}

partner_agency := {"id": "NG/customs", "kind": "agency", "member": "NG", "country": "NG", "trust": 4}

embargoed_member := {"id": "SS", "kind": "member", "member": "SS", "country": "SS", "trust": 1}

request(ind, recipient) := request_on(ind, recipient, "subscribe")

request_on(ind, recipient, channel) := {
	"indicator": ind,
	"recipient": recipient,
	"context": {"gateway": "GH", "channel": channel, "now": "2026-11-15T12:00:00Z"},
}

agreements := {"NG": {"amber_kinds": ["entity", "endUserCertificate", "account", "consignment"]}}

## TLP:CLEAR

test_clear_to_everyone if {
	every recipient in [partner, low_trust_member, organisation, own_agency, partner_agency] {
		d := outbound.decision with input as request(indicator("TLP_CLEAR", "vessel"), recipient)
			with data.embargoes.un_arms as []
		d.allow
		"TLP:CLEAR released to everyone" in d.reasons
	}
}

## TLP:GREEN

test_green_to_member if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "consignment"), partner)
		with data.settings.source_min_trust as 3
	d == {
		"allow": true,
		"redact": [],
		"reasons": ["TLP:GREEN shared with federation member NG"],
	}
}

test_green_to_regional_organisation if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "weapon"), organisation)
	d.allow
	"TLP:GREEN shared with regional organisation ECOWAS" in d.reasons
}

test_green_to_own_agency if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "aircraft"), own_agency)
	d.allow
	"TLP:GREEN shared with own agency GH/customs" in d.reasons
}

test_green_not_to_other_members_agency_outside_crisis if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "aircraft"), partner_agency)
		with data.crisis.active as false
	not d.allow
	d.reasons == ["TLP:GREEN reaches agencies of other members only during a declared crisis, not NG/customs"]
}

test_green_to_other_members_agency_during_crisis if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "aircraft"), partner_agency)
		with data.crisis.active as true
	d.allow
	"TLP:GREEN shared with agency NG/customs during a declared crisis" in d.reasons
}

test_crisis_does_not_widen_amber if {
	d := outbound.decision with input as request(indicator("TLP_AMBER", "vessel"), partner_agency)
		with data.crisis.active as true
		with data.agreements as agreements
	not d.allow
}

## TLP:AMBER

test_amber_to_own_agency if {
	d := outbound.decision with input as request(indicator("TLP_AMBER", "vessel"), own_agency)
	d.allow
	"TLP:AMBER shared with own agency GH/customs" in d.reasons
}

test_amber_to_partner_for_agreed_kind if {
	every kind in agreements.NG.amber_kinds {
		d := outbound.decision with input as request(indicator("TLP_AMBER", kind), partner)
			with data.agreements as agreements
		d.allow
		sprintf("TLP:AMBER shared with bilateral partner NG for %s", [kind]) in d.reasons
	}
}

test_amber_to_partner_agency_for_agreed_kind if {
	d := outbound.decision with input as request(indicator("TLP_AMBER", "entity"), partner_agency)
		with data.agreements as agreements
	d.allow
	"TLP:AMBER shared with bilateral partner NG for entity" in d.reasons
}

test_amber_not_to_partner_for_other_kind if {
	d := outbound.decision with input as request(indicator("TLP_AMBER", "vessel"), partner)
		with data.agreements as agreements
	not d.allow
	d.reasons == ["TLP:AMBER not shared with NG: its agreement does not cover vessel"]
}

test_amber_not_without_agreement if {
	d := outbound.decision with input as request(indicator("TLP_AMBER", "entity"), low_trust_member)
		with data.agreements as agreements
	not d.allow
	d.reasons == ["TLP:AMBER not shared with CI: no bilateral agreement"]
}

test_amber_not_to_organisation_without_agreement if {
	d := outbound.decision with input as request(indicator("TLP_AMBER", "entity"), organisation)
		with data.agreements as agreements
	not d.allow
}

## TLP:AMBER+STRICT

test_amber_strict_to_own_agencies if {
	every recipient in [own_agency, own_other_agency] {
		d := outbound.decision with input as request(indicator("TLP_AMBER_STRICT", "entity"), recipient)
		d.allow
		sprintf("TLP:AMBER+STRICT shared with own agency %s", [recipient.id]) in d.reasons
	}
}

test_amber_strict_not_to_partner if {
	every recipient in [partner, partner_agency, organisation] {
		d := outbound.decision with input as request(indicator("TLP_AMBER_STRICT", "entity"), recipient)
			with data.agreements as agreements
		not d.allow
		sprintf("TLP:AMBER+STRICT is shared only with agencies of GH, not %s", [recipient.id]) in d.reasons
	}
}

## TLP:RED

test_red_to_named_member if {
	d := outbound.decision with input as request(red_for(["NG"]), partner)
	d.allow
	"TLP:RED released to named recipient NG" in d.reasons
}

test_red_to_agency_of_named_member if {
	d := outbound.decision with input as request(red_for(["NG"]), partner_agency)
	d.allow
}

test_red_to_named_agency_only if {
	named := outbound.decision with input as request(red_for(["NG/customs"]), partner_agency)
	named.allow
	other := outbound.decision with input as request(red_for(["NG/customs"]), partner)
	not other.allow
}

test_red_not_to_unnamed if {
	d := outbound.decision with input as request(red_for(["NG"]), low_trust_member)
	not d.allow
	d.reasons == ["TLP:RED not released to CI: not named in releasableTo"]
}

test_red_not_to_own_agencies_unless_named if {
	d := outbound.decision with input as request(red_for(["NG"]), own_other_agency)
	not d.allow
}

test_red_back_to_publisher if {
	d := outbound.decision with input as request(red_for([]), own_agency)
	d.allow
	"TLP:RED returned to its publisher GH/customs" in d.reasons
}

## Labels the policy does not know.

test_missing_tlp_denied if {
	d := outbound.decision with input as request(object.remove(indicator("TLP_GREEN", "vessel"), ["tlp"]), partner)
	not d.allow
	d.reasons == ["indicator has no TLP label"]
}

test_unknown_tlp_denied if {
	d := outbound.decision with input as request(indicator("TLP_WHITE", "vessel"), partner)
	not d.allow
	"unknown TLP label TLP_WHITE" in d.reasons
}

test_unknown_recipient_kind_denied if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "vessel"), {"id": "X", "kind": "robot", "member": "X"})
	not d.allow
	"recipient X has unknown kind robot" in d.reasons
}

## Source protection.

test_source_protected_never_on_subscribe_or_federation if {
	every channel in ["subscribe", "federation"] {
		every recipient in [partner, own_agency] {
			d := outbound.decision with input as request_on(protected(indicator("TLP_GREEN", "consignment")), recipient, channel)
			not d.allow
			d.reasons == ["source-protected indicator is released only inside a circle"]
		}
	}
}

test_source_protected_in_circle if {
	d := outbound.decision with input as request_on(protected(indicator("TLP_GREEN", "consignment")), partner, "circle")
	d.allow
}

test_source_travels_whole_inside_a_circle_only if {
	ind := object.union(protected(indicator("TLP_GREEN", "consignment")), {"source": {"description": "informant"}})
	d := outbound.decision with input as request_on(ind, low_trust_member, "circle")
	d.allow
	d.redact == []
	plain := object.union(indicator("TLP_GREEN", "consignment"), {"source": {"description": "informant"}})
	e := outbound.decision with input as request_on(plain, low_trust_member, "federation")
	e.allow
	e.redact == ["source"]
	# A missing channel is not a circle: the source is still redacted.
	req := {"indicator": plain, "recipient": low_trust_member, "context": {"gateway": "GH"}}
	f := outbound.decision with input as req
	f.allow
	f.redact == ["source"]
}

test_source_protected_without_channel_denied if {
	req := request(protected(indicator("TLP_CLEAR", "consignment")), partner)
	d := outbound.decision with input as object.union(req, {"context": {"gateway": "GH"}})
	not d.allow
}

test_source_protected_keeps_tlp_in_circle if {
	d := outbound.decision with input as request_on(protected(indicator("TLP_AMBER_STRICT", "entity")), partner, "circle")
	not d.allow
}

## UN arms embargoes.

test_embargoed_recipient_gets_nothing if {
	every tlp in ["TLP_CLEAR", "TLP_GREEN", "TLP_AMBER", "TLP_RED"] {
		d := outbound.decision with input as request(object.union(indicator(tlp, "account"), {"releasableTo": ["SS"]}), embargoed_member)
			with data.embargoes.un_arms as ["SS"]
			with data.agreements as {"SS": {"amber_kinds": ["account"]}}
		not d.allow
		d.reasons == ["recipient country SS is under a UN arms embargo"]
	}
}

test_embargo_reaches_agency_through_its_member if {
	d := outbound.decision with input as request(indicator("TLP_CLEAR", "vessel"), {"id": "SS/police", "kind": "agency", "member": "SS"})
		with data.embargoes.un_arms as ["SS"]
		with data.recipients as {"SS": {"country": "SS", "trust": 1}}
	not d.allow
}

test_no_embargo_list_means_no_embargo if {
	d := outbound.decision with input as request(indicator("TLP_CLEAR", "vessel"), embargoed_member)
		with data.embargoes as {}
	d.allow
}

## Source redaction.

test_source_redacted_below_min_trust if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "consignment"), low_trust_member)
		with data.settings.source_min_trust as 3
	d.allow
	d.redact == ["source"]
	"source redacted: trust 2 below 3" in d.reasons
}

test_source_kept_at_min_trust if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "consignment"), organisation)
		with data.settings.source_min_trust as 3
	d.allow
	d.redact == []
}

test_min_trust_defaults_to_three if {
	low := outbound.decision with input as request(indicator("TLP_GREEN", "consignment"), low_trust_member)
		with data.settings as {}
	low.redact == ["source"]
	enough := outbound.decision with input as request(indicator("TLP_GREEN", "consignment"), organisation)
		with data.settings as {}
	enough.redact == []
}

test_min_trust_from_data if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "consignment"), partner)
		with data.settings.source_min_trust as 5
	d.redact == ["source"]
	"source redacted: trust 4 below 5" in d.reasons
}

test_own_agencies_exempt_from_redaction if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "consignment"), own_agency)
		with data.settings.source_min_trust as 5
	d.allow
	d.redact == []
}

test_unknown_trust_redacts if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "consignment"), {"id": "XX", "kind": "member", "member": "XX"})
		with data.recipients as {}
		with data.settings.source_min_trust as 3
	d.allow
	d.redact == ["source"]
	"source redacted: trust 0 below 3" in d.reasons
}

test_agency_inherits_member_trust if {
	d := outbound.decision with input as request(indicator("TLP_GREEN", "consignment"), {"id": "CI/police", "kind": "agency", "member": "CI"})
		with data.crisis.active as true
		with data.recipients as {"CI": {"country": "CI", "trust": 2}}
	d.allow
	d.redact == ["source"]
}

test_nothing_to_redact_without_source if {
	d := outbound.decision with input as request(without_source(indicator("TLP_GREEN", "weapon")), low_trust_member)
	d.allow
	d.redact == []
}

test_denied_decisions_redact_nothing if {
	d := outbound.decision with input as request(indicator("TLP_AMBER_STRICT", "entity"), low_trust_member)
	not d.allow
	d.redact == []
}

## The decision document always has the shape the gateway expects.

test_decision_shape if {
	every tlp in ["TLP_CLEAR", "TLP_GREEN", "TLP_AMBER", "TLP_AMBER_STRICT", "TLP_RED", "TLP_UNSPECIFIED"] {
		d := outbound.decision with input as request(indicator(tlp, "entity"), low_trust_member)
		is_boolean(d.allow)
		is_array(d.redact)
		count(d.reasons) > 0
	}
}

test_empty_input_denied if {
	d := outbound.decision with input as {}
	not d.allow
	count(d.reasons) > 0
}

## The board's data.json: catch typos that would silently grant or withhold nothing.

# Read through rules with defaults: a test that walked `data` itself would evaluate every rule,
# itself included.
default board_agreements := {}

board_agreements := data.agreements

default board_recipients := {}

board_recipients := data.recipients

default board_embargoes := []

board_embargoes := data.embargoes.un_arms

known_kinds := {"vessel", "aircraft", "entity", "endUserCertificate", "consignment", "weapon", "account", "route"}

test_data_agreement_kinds_are_indicator_kinds if {
	every id, agreement in board_agreements {
		every kind in agreement.amber_kinds {
			kind in known_kinds
		}
	}
}

test_data_recipient_trust_in_range if {
	every id, recipient in board_recipients {
		trust := object.get(recipient, "trust", 0)
		is_number(trust)
		trust >= 0
		trust <= 5
	}
}

test_data_embargo_codes_are_country_codes if {
	every code in board_embargoes {
		regex.match(`^[A-Z]{2}$`, code)
	}
}
