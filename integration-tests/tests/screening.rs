//! Screening and alerts with real `cordon serve` processes: the example declarations against
//! the example indicators, what the policy withholds or a retraction takes away never matching,
//! alerts for intelligence arriving later from a peer (at least once, surviving a SIGKILL, no
//! duplicate on resume), watchlist entries, and bad input.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use cordon_integration_tests::{
    Federation, GatewayProcess, MemberDir, cordon_bin, example_indicators, indicator_client,
    patience, wait_until,
};
use cordon_proto::v1::alert_service_client::AlertServiceClient;
use cordon_proto::v1::policy_service_client::PolicyServiceClient;
use cordon_proto::v1::screening_service_client::ScreeningServiceClient;
use cordon_proto::v1::{
    AddWatchRequest, Alert, AlertSubscribeRequest, DecisionsRequest, Declaration, GetRequest,
    GetScreeningRequest, Indicator, PublishRequest, RetractRequest, RiskLevel, ScreenRequest,
    ScreeningResult,
};
use tonic::transport::Channel;

fn example_declarations() -> Result<Vec<Declaration>> {
    let text = include_str!("../../gateway/demo/declarations.jsonl");
    let (declarations, _) =
        cordon_gateway::cli::read_declarations(text.as_bytes(), "declarations.jsonl")?;
    Ok(declarations)
}

async fn screening_client(
    endpoint: &str,
    identity: &Path,
) -> Result<ScreeningServiceClient<Channel>> {
    Ok(ScreeningServiceClient::new(
        cordon_gateway::cli::client::channel(endpoint, identity).await?,
    ))
}

async fn alert_client(endpoint: &str, identity: &Path) -> Result<AlertServiceClient<Channel>> {
    Ok(AlertServiceClient::new(
        cordon_gateway::cli::client::channel(endpoint, identity).await?,
    ))
}

async fn screen(
    endpoint: &str,
    identity: &Path,
    declarations: Vec<Declaration>,
) -> Result<Vec<ScreeningResult>> {
    let mut client = screening_client(endpoint, identity).await?;
    Ok(client
        .screen(ScreenRequest { declarations })
        .await?
        .into_inner()
        .results)
}

/// Publishes `indicators` as `agency`; returns the accepted ids in order.
async fn publish(endpoint: &str, agency: &Path, indicators: Vec<Indicator>) -> Result<Vec<String>> {
    let mut client = indicator_client(endpoint, agency).await?;
    let accepted = client
        .publish(PublishRequest {
            indicators,
            circle: String::new(),
        })
        .await?
        .into_inner()
        .accepted;
    Ok(accepted.into_iter().map(|accepted| accepted.id).collect())
}

/// `(declarationField, value, indicatorId)` of every match of `result`.
fn matched(result: &ScreeningResult) -> Vec<(String, String, String)> {
    result
        .matches
        .iter()
        .map(|found| {
            (
                found.declaration_field.clone(),
                found.value.clone(),
                found.indicator_id.clone(),
            )
        })
        .collect()
}

fn has_match(result: &ScreeningResult, field: &str, value: &str) -> bool {
    result
        .matches
        .iter()
        .any(|found| found.declaration_field == field && found.value == value)
}

fn flags(result: &ScreeningResult) -> Vec<String> {
    result
        .reasons
        .iter()
        .map(|reason| reason.flag.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_declarations_give_the_listed_matches() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let gateway = member.start(&[]).await?;
    let customs = federation.identity("GH/customs")?;
    let ids = publish(&gateway.endpoint, &customs, example_indicators()?).await?;
    // Screening sees every indicator acknowledged before the call.
    let results = screen(&gateway.endpoint, &customs, example_declarations()?).await?;
    ensure!(results.len() == 4, "{results:?}");

    let [first, second, third, fourth] = &results[..] else {
        bail!("four results");
    };
    ensure!(first.reference == "GH-EXP-0001");
    ensure!(
        has_match(first, "transport.vessel.imo", "9234563"),
        "{:?}",
        matched(first)
    );
    ensure!(
        has_match(first, "transport.containers[0]", "MSCU1234566"),
        "{:?}",
        matched(first)
    );
    ensure!(first.level > RiskLevel::Low as i32, "{first:?}");

    // Two certificate indicators (forged, and the number reused), the broker, the account.
    let euc: Vec<&str> = second
        .matches
        .iter()
        .filter(|found| found.value == "EUC/2026/7731")
        .map(|found| found.indicator_id.as_str())
        .collect();
    ensure!(
        euc == [ids[2].as_str(), ids[11].as_str()],
        "{:?}",
        matched(second)
    );
    ensure!(
        second
            .matches
            .iter()
            .any(|found| found.indicator_id == ids[3] && found.kind == "entity"),
        "{:?}",
        matched(second)
    );
    ensure!(
        has_match(second, "payments[0].iban", "DE89370400440532013000"),
        "{:?}",
        matched(second)
    );
    ensure!(second.level > RiskLevel::Low as i32);
    let second_flags = flags(second);
    ensure!(
        second_flags.contains(&"forged_euc".to_string())
            && second_flags.contains(&"arms_goods".to_string()),
        "{second_flags:?}"
    );

    ensure!(third.reference == "GH-EXP-0003");
    ensure!(third.matches.is_empty(), "{:?}", matched(third));
    ensure!(
        third.level == RiskLevel::Low as i32 && third.score == 0,
        "{third:?}"
    );

    ensure!(
        has_match(fourth, "transport.aircraft.icao24", "4B1805"),
        "{:?}",
        matched(fourth)
    );
    ensure!(
        has_match(fourth, "transport.aircraft.registration", "EX-12345"),
        "{:?}",
        matched(fourth)
    );
    ensure!(
        has_match(fourth, "transport.transshipmentPorts[0]", "TGLFW"),
        "{:?}",
        matched(fourth)
    );
    ensure!(
        has_match(fourth, "parties[0].country", "BF"),
        "{:?}",
        matched(fourth)
    );
    ensure!(
        results
            .iter()
            .all(|result| !result.policy_revision.is_empty())
    );

    // A failed check digit is a red flag of the result, not an error.
    let mut bad_digit = example_declarations()?.remove(2);
    bad_digit
        .transport
        .as_mut()
        .context("transport")?
        .containers = vec!["CSQU3054384".into()];
    let result = screen(&gateway.endpoint, &customs, vec![bad_digit])
        .await?
        .remove(0);
    ensure!(
        flags(&result).contains(&"failed_check_digit".to_string()),
        "{result:?}"
    );
    ensure!(result.level != RiskLevel::Unassessed as i32);

    // A past screening, for its agency only.
    let mut client = screening_client(&gateway.endpoint, &customs).await?;
    let again = client
        .get(GetScreeningRequest {
            id: first.id.clone(),
        })
        .await?
        .into_inner();
    ensure!(again == *first);
    let police = federation.identity("GH/police")?;
    let mut other = screening_client(&gateway.endpoint, &police).await?;
    let refused = other
        .get(GetScreeningRequest {
            id: first.id.clone(),
        })
        .await
        .expect_err("another agency's screening");
    ensure!(refused.code() == tonic::Code::NotFound, "{refused:?}");
    // Screening is for agencies of the gateway's own member.
    let partner = federation.identity("NG/customs")?;
    let mut outsider = screening_client(&gateway.endpoint, &partner).await?;
    let refused = outsider
        .screen(ScreenRequest {
            declarations: example_declarations()?,
        })
        .await
        .expect_err("another member's agency");
    ensure!(
        refused.code() == tonic::Code::PermissionDenied,
        "{refused:?}"
    );
    gateway.stop().await
}

/// A policy module that keeps AMBER intelligence from GH's port authority.
const PORTS_RULE: &str = r#"package cordon.outbound

import rego.v1

prohibitions contains "AMBER intelligence is not shared with the port authority" if {
	input.recipient.id == "GH/ports"
	tlp == "TLP_AMBER"
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_and_retracted_indicators_never_match() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    std::fs::write(member.dir.join("policy/cordon/ports.rego"), PORTS_RULE)?;
    let gateway = member.start(&[]).await?;
    let customs = federation.identity("GH/customs")?;
    let ports = federation.identity("GH/ports")?;
    let ids = publish(&gateway.endpoint, &customs, example_indicators()?).await?;
    let forged = &ids[2];
    let reused = &ids[11];
    let declaration = example_declarations()?.remove(1);

    let for_ports = screen(&gateway.endpoint, &ports, vec![declaration.clone()])
        .await?
        .remove(0);
    ensure!(
        for_ports
            .matches
            .iter()
            .all(|found| found.indicator_id != *forged && found.indicator_id != *reused),
        "AMBER certificates reached the port authority: {:?}",
        matched(&for_ports)
    );
    ensure!(!flags(&for_ports).contains(&"forged_euc".to_string()));
    // The denial is in the decision log.
    let mut policy = PolicyServiceClient::new(
        cordon_gateway::cli::client::channel(&gateway.endpoint, &member.identity()).await?,
    );
    let decisions = policy
        .decisions(DecisionsRequest {
            indicator_id: forged.clone(),
            recipient: "GH/ports".into(),
            limit: 10,
            ..DecisionsRequest::default()
        })
        .await?
        .into_inner()
        .decisions;
    ensure!(
        !decisions.is_empty() && decisions.iter().all(|decision| !decision.allow),
        "{decisions:?}"
    );

    let for_customs = screen(&gateway.endpoint, &customs, vec![declaration.clone()])
        .await?
        .remove(0);
    ensure!(
        for_customs
            .matches
            .iter()
            .any(|found| found.indicator_id == *forged),
        "{:?}",
        matched(&for_customs)
    );

    // Retracted: no longer a candidate.
    let mut client = indicator_client(&gateway.endpoint, &customs).await?;
    client
        .retract(RetractRequest {
            id: forged.clone(),
            reason: "forgery disproved".into(),
        })
        .await?;
    let after = screen(&gateway.endpoint, &customs, vec![declaration])
        .await?
        .remove(0);
    ensure!(
        after
            .matches
            .iter()
            .all(|found| found.indicator_id != *forged),
        "a retracted indicator matched: {:?}",
        matched(&after)
    );
    ensure!(
        after
            .matches
            .iter()
            .any(|found| found.indicator_id == *reused)
    );
    ensure!(
        !flags(&after).contains(&"forged_euc".to_string()),
        "{after:?}"
    );
    gateway.stop().await
}

/// Reads `agency`'s alerts after `after` (no follow) to their end.
async fn alerts_after(endpoint: &str, agency: &Path, after: u64) -> Result<Vec<Alert>> {
    let mut client = alert_client(endpoint, agency).await?;
    let mut stream = client
        .subscribe(AlertSubscribeRequest {
            after,
            follow: false,
            limit: 0,
        })
        .await?
        .into_inner();
    let mut alerts = Vec::new();
    while let Some(alert) = stream.message().await? {
        alerts.push(alert);
    }
    Ok(alerts)
}

/// The first alert of a following subscription after `after`.
async fn next_alert(endpoint: &str, agency: &Path, after: u64) -> Result<Alert> {
    let mut client = alert_client(endpoint, agency).await?;
    let mut stream = client
        .subscribe(AlertSubscribeRequest {
            after,
            follow: true,
            limit: 1,
        })
        .await?
        .into_inner();
    tokio::time::timeout(patience(), stream.message())
        .await
        .context("no alert in time")??
        .context("the alert stream ended")
}

fn two_members(federation: &Federation) -> Result<(MemberDir, MemberDir, String)> {
    let members = federation.members(&["GH", "NG"])?;
    let (gh, ng) = (members[0].clone(), members[1].clone());
    let ng_endpoint = ng.fix_listen_port()?;
    gh.follow(&ng, &ng_endpoint)?;
    Ok((gh, ng, ng_endpoint))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_for_a_peer_indicator_survives_a_kill_and_is_not_repeated() -> Result<()> {
    let federation = Federation::new()?;
    let (gh, ng, _) = two_members(&federation)?;
    let ng_gateway = ng.start(&[]).await?;
    let mut gh_gateway = gh.start(&[]).await?;
    let customs = federation.identity("GH/customs")?;

    // Screened before the intelligence exists: nothing matches.
    let screened = screen(
        &gh_gateway.endpoint,
        &customs,
        vec![example_declarations()?.remove(0)],
    )
    .await?
    .remove(0);
    ensure!(screened.matches.is_empty() && screened.level == RiskLevel::Low as i32);

    // NG's customs publishes the vessel the declaration names.
    let vessel = example_indicators()?.remove(0);
    let ng_customs = federation.identity("NG/customs")?;
    let id = publish(&ng_gateway.endpoint, &ng_customs, vec![vessel])
        .await?
        .remove(0);
    // As soon as GH holds it, GH dies: its alert may or may not have been stored.
    let endpoint = gh_gateway.endpoint.clone();
    wait_until("GH to hold NG's indicator", || {
        let (endpoint, customs, id) = (endpoint.clone(), customs.clone(), id.clone());
        async move {
            let mut client = indicator_client(&endpoint, &customs).await?;
            let held = client.get(GetRequest { id }).await.is_ok();
            Ok((held, format!("held: {held}")))
        }
    })
    .await?;
    gh_gateway.kill().await?;
    gh_gateway = gh.start(&[]).await?;

    let alert = next_alert(&gh_gateway.endpoint, &customs, 0)
        .await
        .with_context(|| gh_gateway.log_text())?;
    ensure!(alert.reference == "GH-EXP-0001", "{alert:?}");
    ensure!(alert.screening_id == screened.id);
    let found = alert.r#match.as_ref().context("the match")?;
    ensure!(
        found.indicator_id == id && found.value == "9234563",
        "{alert:?}"
    );
    ensure!(found.originator == "NG");
    ensure!(alert.level > RiskLevel::Low as i32, "{alert:?}");
    // At least once, and once: resuming from its cursor gives nothing new, and from the start
    // exactly this alert.
    ensure!(
        alerts_after(&gh_gateway.endpoint, &customs, alert.cursor)
            .await?
            .is_empty()
    );
    let all = alerts_after(&gh_gateway.endpoint, &customs, 0).await?;
    ensure!(all.len() == 1, "{all:?}");
    // Another agency of GH gets none of it.
    let police = federation.identity("GH/police")?;
    ensure!(
        alerts_after(&gh_gateway.endpoint, &police, 0)
            .await?
            .is_empty()
    );

    // A watchlist entry alerts on what comes after it.
    let mut client = alert_client(&gh_gateway.endpoint, &customs).await?;
    let entry = client
        .add_watch(AddWatchRequest {
            kind: "container".into(),
            value: "mscu 123456-6".into(),
            label: "container seen at Tema".into(),
        })
        .await?
        .into_inner();
    // Without its source: NG's policy redacts a source for a partner it does not trust, and a
    // partner gateway receives only what it can verify whole.
    let mut consignment = example_indicators()?.remove(1);
    consignment.source = None;
    let consignment_id = publish(&ng_gateway.endpoint, &ng_customs, vec![consignment])
        .await?
        .remove(0);
    // The consignment matches both the entry and the declaration (its container).
    let mut cursor = all[0].cursor;
    let mut raised = Vec::new();
    for _ in 0..2 {
        let alert = next_alert(&gh_gateway.endpoint, &customs, cursor)
            .await
            .with_context(|| gh_gateway.log_text())?;
        cursor = alert.cursor;
        raised.push(alert);
    }
    let by_entry = raised
        .iter()
        .find(|alert| alert.watch_id == entry.id)
        .context("an alert for the watchlist entry")?;
    ensure!(by_entry.reference == entry.id);
    let found = by_entry.r#match.as_ref().context("the match")?;
    ensure!(found.indicator_id == consignment_id && found.value == "MSCU1234566");
    let by_declaration = raised
        .iter()
        .find(|alert| alert.reference == "GH-EXP-0001")
        .context("an alert for the declaration")?;
    // Its assessment counts everything the agency may see now: the vessel and the consignment.
    ensure!(by_declaration.score > all[0].score, "{raised:?}");
    gh_gateway.stop().await?;
    ng_gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_declarations_are_refused_naming_the_field() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let gateway: GatewayProcess = member.start(&[]).await?;
    let customs = federation.identity("GH/customs")?;

    // The CLI names the field and the line; nothing of the batch is stored.
    let file = federation.dir.path().join("declarations.jsonl");
    std::fs::write(
        &file,
        "{\"reference\":\"GH-1\"}\n{\"kind\":\"DECLARATION_KIND_IMPORT\"}\n",
    )?;
    let screen_file = || {
        std::process::Command::new(cordon_bin())
            .args(["screen", "--endpoint", &gateway.endpoint, "--identity"])
            .arg(&customs)
            .arg("--file")
            .arg(&file)
            .output()
    };
    let output = screen_file()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(!output.status.success(), "{stderr}");
    ensure!(
        stderr.contains("declarations[1].reference (line 2)"),
        "{stderr}"
    );
    let store = cordon_storage::Store::connect(&member.sqlite_url()).await?;
    ensure!(
        store.watches_after(0, 0, 10).await?.is_empty(),
        "a refused batch stored a screening"
    );

    // A line that is not a declaration is named by the CLI.
    std::fs::write(
        &file,
        "{\"reference\":\"GH-1\",\"goods\":[{\"quantity\":\"many\"}]}\n",
    )?;
    let output = screen_file()?;
    ensure!(!output.status.success());
    ensure!(String::from_utf8_lossy(&output.stderr).contains("line 1"));

    // An oversized batch is refused whole.
    let declaration = example_declarations()?.remove(2);
    let mut client = screening_client(&gateway.endpoint, &customs).await?;
    let refused = client
        .screen(ScreenRequest {
            declarations: vec![declaration.clone(); 1_001],
        })
        .await
        .expect_err("1,001 declarations");
    ensure!(
        refused.code() == tonic::Code::InvalidArgument,
        "{refused:?}"
    );
    ensure!(refused.message().contains("declarations"), "{refused:?}");

    // A 10,000-character name and a name of thousands of common words are screened (their
    // cost is bounded by the matcher, not refused).
    let mut long = declaration.clone();
    long.reference = "GH-LONG".into();
    long.parties[0].name = "Example".repeat(1_430);
    let mut common = declaration;
    common.reference = "GH-COMMON".into();
    common.parties[0].name = "Trading Company Holding ".repeat(400);
    let results = screen(&gateway.endpoint, &customs, vec![long, common]).await?;
    ensure!(
        results.len() == 2
            && results
                .iter()
                .all(|result| result.level == RiskLevel::Low as i32)
    );
    store.close().await;
    gateway.stop().await
}
