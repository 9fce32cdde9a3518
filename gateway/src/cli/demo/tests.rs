//! The demo end to end, asserted.

use super::*;

/// The demo end to end: GREEN reaches everyone with a verified signature,
/// AMBER stops at NG, source-protected never leaves GH outside a circle, every
/// withheld indicator has reasons, and the retraction reaches every holder; in
/// the circle NG decrypts what GH sends while it is a member and nothing after
/// its removal, and SN never sees any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_federation_shares_withholds_and_retracts() {
    let directory = tempfile::tempdir().unwrap();
    let report = run_in(directory.path()).await.unwrap();
    let examples = EXAMPLES
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count();
    assert_eq!(report.published.len(), examples + 1);
    let member = |id: &str| {
        report
            .members
            .iter()
            .find(|member| member.member == id)
            .unwrap()
    };
    let (ghana, nigeria, senegal) = (member("GH"), member("NG"), member("SN"));
    assert!(nigeria.received.len() > senegal.received.len());
    for member in &report.members {
        assert!(member.received.iter().all(|held| held.signature_verified));
        for item in &member.withheld {
            assert!(
                item.reasons.values().all(|reasons| !reasons.is_empty()),
                "{} {} has no reason",
                member.member,
                item.id
            );
        }
        // Source-protected intelligence is held by its originator only.
        assert!(member.received.iter().all(|held| {
            report
                .published
                .iter()
                .any(|item| item.id == held.id && item.protection == "standard")
        }));
    }
    // GH receives NG's own indicator (and nothing of its own back); SN has it too, relayed or
    // direct.
    assert!(!ghana.received.is_empty());
    assert!(ghana.received.iter().all(|held| held.originator == "NG"));
    assert!(senegal.received.iter().any(|held| held.originator == "NG"));
    // GREEN from GH reached SN; AMBER from GH reached NG and stopped there.
    assert!(
        senegal
            .received
            .iter()
            .any(|held| held.handling == "TLP:GREEN" && held.originator == "GH")
    );
    assert!(
        senegal
            .received
            .iter()
            .all(|held| !held.handling.starts_with("TLP:AMBER"))
    );
    // GH's board withholds `source` from NG (trust 2): NG holds GH's sourced indicators
    // without it, GH's signature verifies over the rest, and NG's agency receives them told
    // which fields were withheld.
    let sourced: Vec<&Held> = nigeria
        .received
        .iter()
        .filter(|held| held.originator == "GH" && !held.withheld_fields.is_empty())
        .collect();
    assert!(!sourced.is_empty(), "{:?}", nigeria.received);
    for held in &sourced {
        assert!(held.signature_verified, "{held:?}");
        assert!(
            held.withheld_fields
                .iter()
                .all(|path| path.starts_with("source.")),
            "{held:?}"
        );
        assert!(held.agency_received, "{held:?}");
        assert!(
            held.agency_told_withheld
                .iter()
                .any(|path| path == "source.description"),
            "{held:?}"
        );
    }
    let rule = report
        .third_party_rule
        .as_ref()
        .expect("an AMBER indicator stopped at NG");
    assert!(nigeria.received.iter().any(|held| held.id == rule.id));
    assert!(senegal.withheld.iter().any(|item| item.id == rule.id));
    assert!(rule.reason.contains("third-party"), "{}", rule.reason);
    assert_eq!(report.retraction.retracted_at.len(), 3);
    assert!(
        report
            .retraction
            .retracted_at
            .values()
            .all(|retracted| *retracted)
    );

    // Screening at GH: the clean declaration is LOW with no match; the others match; NG's
    // later intelligence raises an alert for the clean one.
    let screening = &report.screening;
    assert_eq!(screening.results.len(), 4);
    let clean = screening
        .results
        .iter()
        .find(|item| item.reference == "GH-EXP-0003")
        .expect("GH-EXP-0003 screened");
    assert_eq!(clean.level, "LOW");
    assert!(clean.matches.is_empty(), "{:?}", clean.matches);
    assert!(
        screening
            .results
            .iter()
            .filter(|item| item.reference != "GH-EXP-0003")
            .all(|item| !item.matches.is_empty() && item.level != "LOW"),
        "{:?}",
        screening.results
    );
    assert_eq!(screening.alert.reference, "GH-EXP-0003");
    assert_eq!(screening.alert.originator, "NG");
    assert_eq!(screening.alert.level_before, "LOW");
    assert_ne!(screening.alert.level, "LOW");

    // The circle: GH and NG in it, SN outside.
    let circle = &report.circle;
    assert_eq!(circle.members, ["GH", "NG"]);
    assert_eq!(circle.members_after_removal, ["GH"]);
    let [shared, after] = &circle.items[..] else {
        panic!("two circle items: {:?}", circle.items)
    };
    assert_eq!(shared.sent_to, ["NG"]);
    assert!(after.sent_to.is_empty(), "{:?}", after.sent_to);
    assert!(
        circle
            .items
            .iter()
            .all(|item| item.protection == "source-protected")
    );
    assert!(shared.narrative.contains(&shared.marker));
    assert!(after.narrative.contains(&after.marker));
    let view = |id: &str| {
        circle
            .views
            .iter()
            .find(|view| view.member == id)
            .unwrap_or_else(|| panic!("a circle view of {id}"))
    };
    let (hub, removed, outsider) = (view("GH"), view("NG"), view("SN"));
    // The hub holds both, and so does its own agency.
    for sighting in &hub.items {
        assert!(
            sighting.gateway_holds && sighting.agency_sees,
            "{sighting:?}"
        );
        assert_eq!(sighting.in_database_file, Some(true), "{sighting:?}");
    }
    // NG decrypted the first (GH's verified signature) and its agency saw it...
    let first = &removed.items[0];
    assert!(first.gateway_holds, "{first:?}");
    assert_eq!(first.via.as_deref(), Some("GH"));
    assert!(first.signature_verified && first.agency_sees, "{first:?}");
    assert_eq!(first.in_database_file, Some(true));
    // ...and after its removal received nothing new: it read the hub's log up to the
    // commit that removed it, and the second is nowhere at NG.
    assert_eq!(removed.status, "removed");
    assert_eq!(removed.position, circle.removed_at_position);
    assert!(hub.position > circle.removed_at_position);
    let second = &removed.items[1];
    assert!(!second.gateway_holds && !second.agency_sees, "{second:?}");
    assert_eq!(second.in_database_file, Some(false));
    // SN, following both GH and NG, never saw either: not its gateway, not its
    // agency, not a byte of the marker in its database file.
    assert_eq!(outsider.status, "not a member");
    for sighting in &outsider.items {
        assert!(
            !sighting.gateway_holds && !sighting.agency_sees,
            "{sighting:?}"
        );
        assert_eq!(sighting.in_database_file, Some(false), "{sighting:?}");
    }
    assert_eq!(
        circle.withheld_from_outsider.keys().collect::<Vec<_>>(),
        ["GH", "NG"]
    );
    for reasons in circle.withheld_from_outsider.values() {
        assert!(
            reasons
                .iter()
                .any(|reason| reason.contains("only inside a circle")),
            "{reasons:?}"
        );
    }
    // Every gateway's log: a checkpoint signed with its key, every entry proven in it; GH
    // published, received NG's indicator and retracted one.
    assert_eq!(
        report
            .audit
            .iter()
            .map(|audit| audit.member.as_str())
            .collect::<Vec<_>>(),
        MEMBERS
    );
    for audit in &report.audit {
        assert!(audit.signature_verified, "{audit:?}");
        assert!(audit.size > 0, "{audit:?}");
        assert_eq!(audit.entries_verified, audit.size, "{audit:?}");
        assert_eq!(
            audit.origin,
            format!("{}/{}", ca::DEFAULT_FEDERATION, audit.member)
        );
    }
    let gh = &report.audit[0];
    assert!(gh.size > examples as u64, "{gh:?}");
}
