//! The demo's report as text.

use super::*;

pub(super) fn print_text(report: &DemoReport) {
    println!("Cordon demo: a federation of three gateways on loopback (mutual TLS)");
    for gateway in &report.gateways {
        let follows = if gateway.follows.is_empty() {
            "follows no one".to_string()
        } else {
            format!("follows {}", gateway.follows.join(" and "))
        };
        println!(
            "  {} at {}, {follows}, policy {}",
            gateway.member,
            gateway.endpoint,
            shorten(&gateway.policy_revision, 19)
        );
    }
    println!();
    println!("published:");
    let labels: HashMap<&str, usize> = report
        .published
        .iter()
        .enumerate()
        .map(|(index, item)| (item.id.as_str(), index + 1))
        .collect();
    for (index, item) in report.published.iter().enumerate() {
        let protection = if item.protection == "standard" {
            String::new()
        } else {
            format!(", {}", item.protection)
        };
        println!(
            "  [{:>2}] {:<11} {:<19} {:<28} {}",
            index + 1,
            item.publisher,
            item.kind,
            format!("{}{protection}", item.handling),
            shorten(&item.narrative, 50)
        );
    }
    for member in &report.members {
        println!();
        println!(
            "{}: holds {} indicators of other members; its agency {} sees {}",
            member.member,
            member.received.len(),
            member.agency,
            member.agency_received
        );
        for held in &member.received {
            println!(
                "  received [{:>2}] {:<19} {:<28} from {} via {}, signature {}",
                labels.get(held.id.as_str()).copied().unwrap_or(0),
                held.kind,
                held.handling,
                held.originator,
                held.via,
                if held.signature_verified {
                    "verified"
                } else {
                    "NOT VERIFIED"
                }
            );
            if !held.withheld_fields.is_empty() {
                println!(
                    "       withheld from {}: {}; {}",
                    member.member,
                    held.withheld_fields.join(", "),
                    if held.agency_received {
                        format!(
                            "relayed to {} told of {}",
                            member.agency,
                            held.agency_told_withheld.join(", ")
                        )
                    } else {
                        format!("not relayed to {}", member.agency)
                    }
                );
            }
        }
        for item in &member.withheld {
            let reasons: Vec<String> = item
                .reasons
                .iter()
                .map(|(gateway, reasons)| format!("{gateway}: {}", reasons.join("; ")))
                .collect();
            println!(
                "  withheld [{:>2}] {:<19} {:<28} — {}",
                labels.get(item.id.as_str()).copied().unwrap_or(0),
                item.kind,
                item.handling,
                reasons.join(" | ")
            );
        }
    }
    println!();
    match &report.third_party_rule {
        Some(rule) => println!(
            "third-party rule: [{}] {} from {} reached {} and stopped there: {}",
            labels.get(rule.id.as_str()).copied().unwrap_or(0),
            rule.handling,
            rule.originator,
            rule.reached,
            rule.reason
        ),
        None => println!("third-party rule: no AMBER indicator reached NG"),
    }
    let reached: Vec<String> = report
        .retraction
        .retracted_at
        .iter()
        .map(|(member, retracted)| {
            format!(
                "{member} {}",
                if *retracted {
                    "retracted"
                } else {
                    "NOT retracted"
                }
            )
        })
        .collect();
    println!(
        "retraction: GH withdrew [{}] \"{}\": {}",
        labels
            .get(report.retraction.id.as_str())
            .copied()
            .unwrap_or(0),
        shorten(&report.retraction.narrative, 40),
        reached.join(", ")
    );
    print_screening(&report.screening);
    print_circle(&report.circle);
    println!();
    println!("audit logs (checkpoints signed by each gateway, verified with its public key):");
    for audit in &report.audit {
        println!(
            "  {}: {} entries, root {}, signature {}, {} entries proven in it",
            audit.origin,
            audit.size,
            audit.root,
            if audit.signature_verified {
                "verified"
            } else {
                "NOT verified"
            },
            audit.entries_verified
        );
    }
    if let Some(first) = report.audit.first() {
        println!("  {}'s checkpoint:", first.member);
        for line in first.checkpoint.lines() {
            println!("    {line}");
        }
    }
}

fn print_circle(circle: &CircleReport) {
    println!();
    println!(
        "circle \"{}\" (MLS, hub {}): members {}; {} outside it, following {}",
        circle.name,
        circle.hub,
        circle.members.join(", "),
        circle.outsider,
        circle
            .withheld_from_outsider
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(" and ")
    );
    for (index, item) in circle.items.iter().enumerate() {
        let when = if index == 0 {
            format!("sent to {}", list_or_none(&item.sent_to))
        } else {
            format!(
                "after {} was removed at log position {}, sent to {}",
                circle.removed,
                circle.removed_at_position,
                list_or_none(&item.sent_to)
            )
        };
        println!(
            "  [C{}] {:<11} {:<19} {:<28} {} — {when}",
            index + 1,
            item.publisher,
            item.kind,
            format!("{}, {}", item.handling, item.protection),
            item.marker,
        );
        println!("       \"{}\"", item.narrative);
    }
    for view in &circle.views {
        let role = if view.member == circle.hub {
            format!("hub, its log at position {}", view.position)
        } else if view.status == "not a member" {
            view.status.clone()
        } else {
            format!(
                "{}, read the hub's log to position {}",
                view.status, view.position
            )
        };
        println!("  {} ({role}):", view.member);
        for (index, sighting) in view.items.iter().enumerate() {
            let gateway = match (&sighting.via, sighting.gateway_holds) {
                (_, false) => "gateway does not hold it".to_string(),
                (None, true) => "published here".to_string(),
                (Some(via), true) => format!(
                    "decrypted from {via}'s circle, signature {}",
                    if sighting.signature_verified {
                        "verified"
                    } else {
                        "NOT VERIFIED"
                    }
                ),
            };
            let agency = format!(
                "{} {}",
                view.agency,
                if sighting.agency_sees {
                    "sees it"
                } else {
                    "does not see it"
                }
            );
            let file = match sighting.in_database_file {
                Some(true) => "marker in its database file",
                Some(false) => "marker not in its database file",
                None => "database file not checked",
            };
            println!("    [C{}] {gateway}; {agency}; {file}", index + 1);
        }
    }
    for (gateway, reasons) in &circle.withheld_from_outsider {
        println!(
            "  {gateway} withheld [C1] from {}: {}",
            circle.outsider,
            reasons.join("; ")
        );
    }
}

fn list_or_none(members: &[String]) -> String {
    if members.is_empty() {
        "no one".into()
    } else {
        members.join(", ")
    }
}

fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(limit).collect::<String>())
    }
}
