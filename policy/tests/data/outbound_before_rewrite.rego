# The reference outbound policy as first written, before it was reworded for speed (one
# object.filter instead of a lookup per kind, no function with `else`, which the bytecode VM
# of regorus 0.14.1 gets wrong). tests/diff.rs checks that both decide alike.
#
# Reference outbound sharing policy, installed by `cordon init`.
#
# The gateway asks one question per indicator and recipient: may this recipient see this
# indicator, and with which fields removed? It evaluates `data.cordon.outbound.decision` with
#
#   input.indicator  the indicator in its proto3 JSON form (default values are omitted)
#   input.recipient  {"id", "kind": "member"|"agency"|"organization", "member", ...} merged with
#                    data.recipients[id] (country, trust 0-5, ...)
#   input.context    {"gateway": own member id, "channel": "subscribe"|"federation"|"circle", "now"}
#
# and expects {"allow": bool, "redact": [field paths], "reasons": [sentences]}. Anything else
# denies. The gateway's hard floor (third-party rule, source protection outside circles) applies
# after this policy and cannot be loosened by it.
#
# Edit data.json for the facts (partners, agreements, embargoes, trust); edit this file for the
# rules; keep outbound_test.rego passing, or the gateway keeps the previous policy.
package cordon.outbound

import rego.v1

# Fail closed with an explanation when no rule below has anything to say.
default decision := {
	"allow": false,
	"redact": [],
	"reasons": ["no rule releases this indicator to this recipient"],
}

decision := {
	"allow": true,
	"redact": sort([path | some path in redactions]),
	"reasons": array.concat(sort([reason | some reason in releases]), sort([reason | some reason in redaction_reasons])),
} if {
	allowed
}

decision := {
	"allow": false,
	"redact": [],
	"reasons": sort([reason | some reason in denial_reasons]),
} if {
	not allowed
	count(denial_reasons) > 0
}

# A release needs at least one rule that grants it and no rule that forbids it.
allowed if {
	count(releases) > 0
	count(prohibitions) == 0
}

# When something forbids the release, that is the answer; otherwise explain what was missing.
denial_reasons := prohibitions if {
	count(prohibitions) > 0
} else := refusals

## Facts about the indicator.

tlp := object.get(input.indicator, "tlp", "TLP_UNSPECIFIED")

tlp_names := {
	"TLP_CLEAR": "TLP:CLEAR",
	"TLP_GREEN": "TLP:GREEN",
	"TLP_AMBER": "TLP:AMBER",
	"TLP_AMBER_STRICT": "TLP:AMBER+STRICT",
	"TLP_RED": "TLP:RED",
}

indicator_kinds := [
	"vessel", "aircraft", "entity", "endUserCertificate",
	"consignment", "weapon", "account", "route",
]

# The proto oneof guarantees one kind; a set keeps a malformed indicator from erroring here.
kinds_present := {kind | some kind in indicator_kinds; object.get(input.indicator, kind, null) != null}

indicator_kind := kind if {
	count(kinds_present) == 1
	some kind in kinds_present
}

# Named in reasons even when the indicator is malformed and has no single kind.
default indicator_kind_label := "indicators of unknown kind"

indicator_kind_label := indicator_kind

source_protected if input.indicator.protection == "PROTECTION_SOURCE_PROTECTED"

has_source if object.get(input.indicator, "source", null) != null

## Facts about the recipient.

recipient_id := input.recipient.id

recipient_kind := object.get(input.recipient, "kind", "")

recipient_member := object.get(input.recipient, "member", "")

own_member := input.context.gateway

# A missing channel must not pass for "circle".
default channel := ""

channel := input.context.channel

own_agency if {
	recipient_kind == "agency"
	recipient_member == own_member
}

other_agency if {
	recipient_kind == "agency"
	recipient_member != own_member
}

# An agency inherits its member's country and trust when the board lists only the member.
recipient_attribute(name) := value if {
	value := input.recipient[name]
} else := value if {
	value := data.recipients[recipient_member][name]
}

default recipient_trust := 0

recipient_trust := trust if {
	trust := recipient_attribute("trust")
	is_number(trust)
}

recipient_country := recipient_attribute("country")

## Board settings, with the defaults a fresh installation needs.

default source_min_trust := 3

source_min_trust := data.settings.source_min_trust

default crisis_active := false

crisis_active if data.crisis.active == true

default embargoed_countries := []

embargoed_countries := data.embargoes.un_arms

partner_amber_kinds contains kind if {
	some kind in data.agreements[recipient_member].amber_kinds
}

## Prohibitions: each one denies whatever the releases say.

prohibitions contains reason if {
	recipient_country in embargoed_countries
	reason := sprintf("recipient country %s is under a UN arms embargo", [recipient_country])
}

prohibitions contains reason if {
	source_protected
	channel != "circle"
	reason := "source-protected indicator is released only inside a circle"
}

## Releases, one rule per TLP 2.0 audience.

releases contains "TLP:CLEAR released to everyone" if tlp == "TLP_CLEAR"

releases contains reason if {
	tlp == "TLP_GREEN"
	recipient_kind == "member"
	reason := sprintf("TLP:GREEN shared with federation member %s", [recipient_id])
}

releases contains reason if {
	tlp == "TLP_GREEN"
	recipient_kind == "organization"
	reason := sprintf("TLP:GREEN shared with regional organisation %s", [recipient_id])
}

releases contains reason if {
	tlp in {"TLP_GREEN", "TLP_AMBER", "TLP_AMBER_STRICT"}
	own_agency
	reason := sprintf("%s shared with own agency %s", [tlp_names[tlp], recipient_id])
}

releases contains reason if {
	tlp == "TLP_GREEN"
	other_agency
	crisis_active
	reason := sprintf("TLP:GREEN shared with agency %s during a declared crisis", [recipient_id])
}

releases contains reason if {
	tlp == "TLP_AMBER"
	not own_agency
	indicator_kind in partner_amber_kinds
	reason := sprintf("TLP:AMBER shared with bilateral partner %s for %s", [recipient_member, indicator_kind])
}

releases contains reason if {
	tlp == "TLP_RED"
	some named in object.get(input.indicator, "releasableTo", [])
	named in {recipient_id, recipient_member}
	reason := sprintf("TLP:RED released to named recipient %s", [named])
}

releases contains reason if {
	tlp == "TLP_RED"
	recipient_id == input.indicator.publisher
	reason := sprintf("TLP:RED returned to its publisher %s", [recipient_id])
}

## Refusals: why no release applied, so that a deny is never unexplained.

refusals contains "indicator has no TLP label" if tlp == "TLP_UNSPECIFIED"

refusals contains reason if {
	tlp != "TLP_UNSPECIFIED"
	not tlp_names[tlp]
	reason := sprintf("unknown TLP label %s", [tlp])
}

refusals contains reason if {
	not recipient_kind in {"member", "agency", "organization"}
	reason := sprintf("recipient %s has unknown kind %s", [recipient_id, recipient_kind])
}

refusals contains reason if {
	tlp == "TLP_GREEN"
	other_agency
	not crisis_active
	reason := sprintf("TLP:GREEN reaches agencies of other members only during a declared crisis, not %s", [recipient_id])
}

refusals contains reason if {
	tlp == "TLP_AMBER"
	not own_agency
	not data.agreements[recipient_member]
	reason := sprintf("TLP:AMBER not shared with %s: no bilateral agreement", [recipient_id])
}

refusals contains reason if {
	tlp == "TLP_AMBER"
	not own_agency
	data.agreements[recipient_member]
	not indicator_kind in partner_amber_kinds
	reason := sprintf("TLP:AMBER not shared with %s: its agreement does not cover %s", [recipient_id, indicator_kind_label])
}

refusals contains reason if {
	tlp == "TLP_AMBER_STRICT"
	not own_agency
	reason := sprintf("TLP:AMBER+STRICT is shared only with agencies of %s, not %s", [own_member, recipient_id])
}

refusals contains reason if {
	tlp == "TLP_RED"
	reason := sprintf("TLP:RED not released to %s: not named in releasableTo", [recipient_id])
}

## Redactions: what an allowed recipient still may not see.

# The source block identifies people and methods; only well-trusted partners see it, and the
# member's own agencies always do; inside a circle the source travels whole.
redactions contains "source" if {
	has_source
	not own_agency
	channel != "circle"
	recipient_trust < source_min_trust
}

redaction_reasons contains reason if {
	"source" in redactions
	reason := sprintf("source redacted: trust %v below %v", [recipient_trust, source_min_trust])
}
