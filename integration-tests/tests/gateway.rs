//! One member's gateway as real `cordon serve` processes on loopback with
//! mutual TLS: publishing, release under the reference policy, refusals,
//! crash recovery and gap-free following under concurrent publishers.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use cordon_integration_tests::{
    Federation, GatewayProcess, clear_vessel, example_indicators, indicator_client, patience,
    postgres_url, published, read_all,
};
use cordon_proto::v1::{
    PublishRequest, RetractRequest, SubscribeRequest, Vessel, event, indicator,
};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_receive_exactly_what_the_policy_releases() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    // A declared crisis opens TLP:GREEN to other members' agencies.
    let data_path = member.dir.join("policy").join("data.json");
    let mut data: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&data_path)?)?;
    data["crisis"]["active"] = serde_json::json!(true);
    std::fs::write(&data_path, data.to_string())?;
    let gateway = member.start(&[]).await?;
    let signing_key = cordon_gateway::signing::SigningKey::load(
        &member.dir.join("identity/signing-key.pem"),
        "GH",
    )?;
    let customs = federation.identity("GH/customs")?;
    let examples = example_indicators()?;
    let mut client = indicator_client(&gateway.endpoint, &customs).await?;
    let accepted = client
        .publish(PublishRequest {
            indicators: examples.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .accepted;
    assert_eq!(accepted.len(), examples.len());
    // Line number (1-based) of examples/indicators.jsonl -> sequence.
    let line_of: BTreeMap<u64, usize> = accepted
        .iter()
        .enumerate()
        .map(|(index, item)| (item.sequence, index + 1))
        .collect();

    // What the reference policy releases (README of the policy): NG is a
    // bilateral partner with trust 4 and an AMBER agreement for entities,
    // end-user certificates, accounts and consignments, and is named on the
    // RED line; CI is a member with trust 2 and no agreement. Line 11 is
    // source-protected and never leaves on Subscribe; line 4 is AMBER+STRICT.
    // Line 2 has a source block, which the policy redacts below trust 3: CI's
    // gateway and CI's police (GREEN reaches other members' agencies in the declared
    // crisis) receive line 2 with the source withheld, still verifying against GH's key.
    let expectations: [(&str, Vec<usize>, Vec<usize>); 3] = [
        ("NG", vec![1, 2, 3, 5, 6, 7, 8, 9, 10, 12], vec![]),
        ("CI", vec![1, 2, 6, 7, 8, 10], vec![2]),
        ("CI/police", vec![1, 2, 6, 7, 8, 10], vec![2]),
    ];
    for (recipient, expected_lines, expected_redacted_lines) in expectations.clone() {
        let identity = federation.identity(recipient)?;
        let events = read_all(&gateway.endpoint, &identity, 0, 0).await?;
        let received = published(&events);
        let lines: Vec<usize> = received
            .iter()
            .map(|(sequence, _, _)| line_of[sequence])
            .collect();
        assert_eq!(lines, expected_lines, "lines released to {recipient}");
        for (sequence, indicator, redacted) in &received {
            let line = line_of[sequence];
            let original = &examples[line - 1];
            if expected_redacted_lines.contains(&line) {
                assert_eq!(
                    redacted,
                    &vec!["source".to_string()],
                    "{recipient} line {line}"
                );
                assert!(
                    indicator.source.is_none(),
                    "{recipient} line {line}: redacted source arrived"
                );
                // GH's signature still verifies through the source's commitments, whose
                // salts stayed at GH.
                cordon_gateway::signing::verify(indicator, "GH", signing_key.public_key())
                    .with_context(|| format!("{recipient} line {line}"))?;
                let fields = &indicator.signature.as_ref().context("signed")?.fields;
                assert!(
                    fields
                        .iter()
                        .filter(|field| field.path.starts_with("source."))
                        .all(|field| field.salt.is_empty()),
                    "{recipient} line {line}: a salt left with the redacted source"
                );
            } else {
                assert!(
                    redacted.is_empty(),
                    "{recipient} line {line} redacted {redacted:?}"
                );
                assert_eq!(indicator.source, original.source, "{recipient} line {line}");
                // What was not redacted arrives exactly as GH signed it.
                cordon_gateway::signing::verify(indicator, "GH", signing_key.public_key())
                    .with_context(|| format!("{recipient} line {line}"))?;
            }
            assert_eq!(indicator.narrative, original.narrative);
            assert_eq!(indicator.originator, "GH");
            assert_eq!(indicator.publisher, "GH/customs");
        }
        // The stream ends with a checkpoint at the head, past anything withheld.
        assert_eq!(
            events.last().map(|event| event.sequence),
            Some(accepted.len() as u64),
            "{recipient}"
        );
    }
    // Every release decision is stored and can be queried, and agrees with what was sent.
    let mut admin = cordon_proto::v1::policy_service_client::PolicyServiceClient::new(
        cordon_gateway::cli::client::channel(&gateway.endpoint, &federation.identity("GH")?)
            .await?,
    );
    for (recipient, expected_lines, _) in &expectations {
        let request = cordon_proto::v1::DecisionsRequest {
            recipient: recipient.to_string(),
            ..Default::default()
        };
        let decisions = admin.decisions(request).await?.into_inner().decisions;
        assert_eq!(
            decisions.len(),
            examples.len(),
            "one stored decision per indicator for {recipient}"
        );
        let sequence_of: BTreeMap<&str, u64> = accepted
            .iter()
            .map(|item| (item.id.as_str(), item.sequence))
            .collect();
        let mut allowed_lines: Vec<usize> = decisions
            .iter()
            .filter(|decision| decision.allow)
            .map(|decision| line_of[&sequence_of[decision.indicator_id.as_str()]])
            .collect();
        allowed_lines.sort();
        assert_eq!(
            &allowed_lines, expected_lines,
            "stored decisions for {recipient}"
        );
        assert!(
            decisions
                .iter()
                .all(|decision| decision.policy_revision.starts_with("sha256:")
                    && !decision.reasons.is_empty())
        );
    }
    // The CLI exports them, also in OPA's decision-log shape.
    let admin_dir = federation.identity("GH")?;
    let exported = cordon_integration_tests::cordon(&[
        "decisions",
        "--endpoint",
        &gateway.endpoint,
        "--identity",
        admin_dir.to_str().context("path")?,
        "--recipient",
        "CI",
        "--format",
        "opa",
    ])?;
    let entries: Vec<serde_json::Value> = exported
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(entries.len(), examples.len());
    for entry in &entries {
        assert_eq!(entry["path"], "cordon/outbound/decision");
        assert!(
            entry["bundles"]["cordon"]["revision"]
                .as_str()
                .is_some_and(|revision| revision.starts_with("sha256:"))
        );
        assert!(entry["result"]["allow"].is_boolean());
        assert!(
            entry["decision_id"]
                .as_str()
                .is_some_and(|id| id.len() == 36)
        );
        assert!(
            entry["input"]["indicator"].get("narrative").is_none(),
            "the log must not copy indicator contents"
        );
    }
    let limited = cordon_integration_tests::cordon(&[
        "decisions",
        "--endpoint",
        &gateway.endpoint,
        "--identity",
        admin_dir.to_str().context("path")?,
        "--indicator",
        &accepted[0].id,
        "--limit",
        "1",
    ])?;
    assert_eq!(limited.lines().count(), 1);
    // Every release decision is also logged with the policy revision.
    let log = gateway.log_text();
    let decisions = log
        .lines()
        .filter(|line| line.contains("release decision"))
        .count();
    assert!(
        decisions >= 2 * examples.len(),
        "{decisions} decisions logged"
    );
    assert!(
        log.contains("policy_revision=sha256:"),
        "decision log names the revision: {}",
        log.lines()
            .find(|line| line.contains("release decision"))
            .unwrap_or("")
    );
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_names_every_bad_field_and_stores_nothing() -> Result<()> {
    let federation = Federation::new()?;
    let gateway = federation.member("GH")?.start(&[]).await?;
    let customs = federation.identity("GH/customs")?;
    let mut client = indicator_client(&gateway.endpoint, &customs).await?;
    let mut batch = example_indicators()?;
    let mut bad_vessel = clear_vessel("bad check digit".into());
    bad_vessel.kind = Some(indicator::Kind::Vessel(Vessel {
        imo: "9234564".into(),
        ..Default::default()
    }));
    batch.push(bad_vessel);
    let mut no_tlp = clear_vessel("no tlp".into());
    no_tlp.tlp = 0;
    batch.push(no_tlp);
    let status = client
        .publish(PublishRequest {
            indicators: batch.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let violations = status
        .get_details_bad_request()
        .context("BadRequest detail")?
        .field_violations;
    let fields: Vec<&str> = violations
        .iter()
        .map(|violation| violation.field.as_str())
        .collect();
    let bad_index = batch.len() - 2;
    assert!(
        fields.contains(&format!("indicators[{bad_index}].vessel.imo").as_str()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&format!("indicators[{}].tlp", bad_index + 1).as_str()),
        "{fields:?}"
    );
    assert!(
        status.message().contains("vessel.imo"),
        "{}",
        status.message()
    );

    let reader = federation.identity("GH/police")?;
    assert!(
        read_all(&gateway.endpoint, &reader, 0, 0).await?.is_empty(),
        "nothing may be stored"
    );
    // The good part alone is accepted and numbered from 1: nothing was half-written before.
    let accepted = client
        .publish(PublishRequest {
            indicators: batch[..bad_index].to_vec(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(accepted.accepted.first().map(|item| item.sequence), Some(1));
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_enforced_from_certificates() -> Result<()> {
    let federation = Federation::new()?;
    let gateway = federation.member("GH")?.start(&[]).await?;

    // A certificate from another CA is refused at the handshake.
    let other = Federation::new()?;
    let outsider = other.identity("GH/customs")?;
    // The handshake fails (at connect, or at the first call with TLS 1.3):
    // no handler ever runs, so the refusal is a transport error, not a status
    // a handler would send.
    if let Ok(mut client) = indicator_client(&gateway.endpoint, &outsider).await {
        let published = client
            .publish(PublishRequest {
                indicators: example_indicators()?,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(published.code(), Code::Unavailable, "{published:?}");
        let subscribed = client
            .subscribe(SubscribeRequest {
                after: 0,
                follow: false,
                kinds: Vec::new(),
                limit: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(subscribed.code(), Code::Unavailable, "{subscribed:?}");
    }

    // An agency of another member, and a member gateway itself, cannot publish.
    for name in ["NG/customs", "NG", "GH"] {
        let identity = federation.identity(name)?;
        let mut client = indicator_client(&gateway.endpoint, &identity).await?;
        let status = client
            .publish(PublishRequest {
                indicators: example_indicators()?,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{name}: {status:?}");
    }

    // The originator's agency can retract; another member's agency cannot.
    let customs = federation.identity("GH/customs")?;
    let mut publisher = indicator_client(&gateway.endpoint, &customs).await?;
    let accepted = publisher
        .publish(PublishRequest {
            indicators: vec![clear_vessel("x".into())],
            ..Default::default()
        })
        .await?
        .into_inner();
    let id = accepted.accepted[0].id.clone();
    let mut foreign =
        indicator_client(&gateway.endpoint, &federation.identity("NG/customs")?).await?;
    let status = foreign
        .retract(RetractRequest {
            id: id.clone(),
            reason: "no".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let retracted = publisher
        .retract(RetractRequest {
            id: id.clone(),
            reason: "wrong ship".into(),
        })
        .await?
        .into_inner();
    assert_eq!(retracted.sequence, 2);
    // A recipient sees the retraction.
    let events = read_all(&gateway.endpoint, &federation.identity("CI")?, 0, 0).await?;
    assert!(events.iter().any(|event| matches!(&event.body, Some(event::Body::Retracted(retraction)) if retraction.indicator_id == id)));
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_publishing_agency_or_an_administrator_retracts_or_supersedes() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    // Top-level keys come before the tables.
    let config = std::fs::read_to_string(member.config())?;
    std::fs::write(
        member.config(),
        format!("administrators = [\"GH/focal-point\"]\n{config}"),
    )?;
    let gateway = member.start(&[]).await?;
    let client = |name: &'static str| {
        let identity = federation.identity(name);
        let endpoint = gateway.endpoint.clone();
        async move { indicator_client(&endpoint, &identity?).await }
    };
    let mut customs = client("GH/customs").await?;
    let mut police = client("GH/police").await?;
    let mut administrator = client("GH/focal-point").await?;
    let publish = |supersedes: &str| PublishRequest {
        indicators: vec![cordon_proto::v1::Indicator {
            supersedes: supersedes.to_string(),
            ..clear_vessel("a revision".into())
        }],
        ..Default::default()
    };
    let retract = |id: &str| RetractRequest {
        id: id.to_string(),
        reason: "withdrawn".into(),
    };
    let id = customs.publish(publish("")).await?.into_inner().accepted[0]
        .id
        .clone();
    let absent = "019a0000-0000-7000-8000-00000000abcd";

    // Another agency of the member can neither retract nor revise it, and is told exactly
    // what it is told of an indicator that does not exist.
    let refused = police.retract(retract(&id)).await.unwrap_err();
    let refused_absent = police.retract(retract(absent)).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert_eq!(refused_absent.code(), Code::NotFound, "{refused_absent:?}");
    assert_eq!(
        refused.message().replace(&id, "ID"),
        refused_absent.message().replace(absent, "ID")
    );
    let revised = police.publish(publish(&id)).await.unwrap_err();
    let revised_absent = police.publish(publish(absent)).await.unwrap_err();
    assert_eq!(revised.code(), Code::InvalidArgument, "{revised:?}");
    assert_eq!(revised.code(), revised_absent.code());
    assert_eq!(revised.message(), revised_absent.message());
    assert!(
        revised.message().contains("indicators[0].supersedes"),
        "{revised:?}"
    );
    // Nothing changed: a reader sees the indicator and no retraction or revision.
    let events = read_all(&gateway.endpoint, &federation.identity("CI")?, 0, 0).await?;
    assert_eq!(published(&events).len(), 1, "{events:?}");
    assert!(
        !events
            .iter()
            .any(|event| matches!(&event.body, Some(event::Body::Retracted(_)))),
        "{events:?}"
    );

    // An administrator may revise any of the member's indicators; the revision is its own,
    // so the first publisher cannot retract it, but the administrator can.
    let revision = administrator
        .publish(publish(&id))
        .await?
        .into_inner()
        .accepted[0]
        .id
        .clone();
    let refused = customs.retract(retract(&revision)).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    administrator.retract(retract(&revision)).await?;
    // The publishing agency retracts its own.
    customs.retract(retract(&id)).await?;
    let events = read_all(&gateway.endpoint, &federation.identity("CI")?, 0, 0).await?;
    let retracted: HashSet<String> = events
        .iter()
        .filter_map(|event| match &event.body {
            Some(event::Body::Retracted(retraction)) => Some(retraction.indicator_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(retracted, HashSet::from([id, revision]));
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_loses_nothing_acknowledged_and_subscribers_resume() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let gateway = member.start(&[]).await?;
    let customs = federation.identity("GH/customs")?;
    let reader = federation.identity("GH/police")?;
    let mut acknowledged = Vec::new();
    {
        let mut client = indicator_client(&gateway.endpoint, &customs).await?;
        for batch in 0..20 {
            let indicators = (0..25)
                .map(|item| clear_vessel(format!("batch {batch} item {item}")))
                .collect();
            let response = client
                .publish(PublishRequest {
                    indicators,
                    ..Default::default()
                })
                .await?
                .into_inner();
            acknowledged.extend(
                response
                    .accepted
                    .into_iter()
                    .map(|item| (item.sequence, item.id)),
            );
        }
    }
    // A subscriber reads part of the feed and keeps its cursor.
    let first_part = read_all(&gateway.endpoint, &reader, 0, 137).await?;
    let cursor = first_part.last().context("events")?.sequence;
    assert_eq!(cursor, 137);
    gateway.kill().await?;

    let restarted = member.start(&[]).await?;
    let rest = read_all(&restarted.endpoint, &reader, cursor, 0).await?;
    let mut seen: Vec<(u64, String)> = published(&first_part)
        .into_iter()
        .chain(published(&rest))
        .map(|(sequence, indicator, _)| (sequence, indicator.id))
        .collect();
    let sequences: Vec<u64> = seen.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(
        sequences,
        (1..=acknowledged.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    seen.sort();
    acknowledged.sort();
    assert_eq!(
        seen, acknowledged,
        "every acknowledged indicator survived SIGKILL"
    );
    restarted.stop().await
}

/// Publishers on `publish_endpoints` in parallel while a follower on
/// `follow_endpoint` reads with follow=true: it must see every sequence once, in order.
async fn follower_never_skips(
    federation: &Federation,
    publish_endpoints: &[String],
    follow_endpoint: &str,
) -> Result<()> {
    const PUBLISHERS: usize = 6;
    const BATCHES: usize = 15;
    const BATCH_SIZE: usize = 10;
    let total = (PUBLISHERS * BATCHES * BATCH_SIZE) as u64;
    let reader = federation.identity("GH/police")?;
    let mut follower_client = indicator_client(follow_endpoint, &reader).await?;
    let mut stream = follower_client
        .subscribe(SubscribeRequest {
            after: 0,
            follow: true,
            kinds: Vec::new(),
            limit: total,
        })
        .await?
        .into_inner();
    let follower = tokio::spawn(async move {
        let mut sequences = Vec::new();
        let mut ids = HashSet::new();
        while let Some(event) = stream.message().await? {
            if let Some(event::Body::Published(published)) = event.body {
                sequences.push(event.sequence);
                ids.insert(published.indicator.context("indicator")?.id);
            }
        }
        anyhow::Ok((sequences, ids))
    });
    let mut publishers = Vec::new();
    for index in 0..PUBLISHERS {
        let endpoint = publish_endpoints[index % publish_endpoints.len()].clone();
        let identity = federation.identity("GH/customs")?;
        publishers.push(tokio::spawn(async move {
            let mut client = indicator_client(&endpoint, &identity).await?;
            let mut ids = Vec::new();
            for batch in 0..BATCHES {
                let indicators = (0..BATCH_SIZE)
                    .map(|item| clear_vessel(format!("p{index} b{batch} i{item}")))
                    .collect();
                let response = client
                    .publish(PublishRequest {
                        indicators,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                ids.extend(response.accepted.into_iter().map(|item| item.id));
            }
            anyhow::Ok(ids)
        }));
    }
    let mut published_ids = HashSet::new();
    for publisher in publishers {
        published_ids.extend(publisher.await??);
    }
    let (sequences, seen_ids) = tokio::time::timeout(patience(), follower)
        .await
        .context("follower stalled")???;
    assert_eq!(
        sequences,
        (1..=total).collect::<Vec<_>>(),
        "the follower skipped or repeated an event"
    );
    assert_eq!(seen_ids, published_ids);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_never_make_a_follower_skip_on_sqlite() -> Result<()> {
    let federation = Federation::new()?;
    let gateway = federation.member("GH")?.start(&[]).await?;
    follower_never_skips(
        &federation,
        std::slice::from_ref(&gateway.endpoint),
        &gateway.endpoint,
    )
    .await?;
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_two_postgres_replicas_never_make_a_follower_skip() -> Result<()> {
    let Some(url) = postgres_url("concurrent_publishers_on_two_postgres_replicas").await? else {
        return Ok(());
    };
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let environment = [("CORDON_DATABASE_URL", url.as_str())];
    let replica_a: GatewayProcess = member.start(&environment).await?;
    let replica_b: GatewayProcess = member.start(&environment).await?;
    // Publishers write through both replicas; the follower reads from B and
    // must be woken by A's commits (LISTEN/NOTIFY), not by polling.
    let endpoints = [replica_a.endpoint.clone(), replica_b.endpoint.clone()];
    follower_never_skips(&federation, &endpoints, &replica_b.endpoint).await?;
    replica_a.stop().await?;
    replica_b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_publishes_and_subscribes_and_reports_field_errors() -> Result<()> {
    let federation = Federation::new()?;
    let gateway = federation.member("GH")?.start(&[]).await?;
    let customs = federation.identity("GH/customs")?;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/demo/indicators.jsonl");
    let args = |command: &str| {
        vec![
            command.to_string(),
            "--endpoint".to_string(),
            gateway.endpoint.clone(),
            "--identity".to_string(),
            customs.display().to_string(),
        ]
    };
    let mut publish = args("publish");
    publish.extend(["--file".to_string(), examples.display().to_string()]);
    let publish: Vec<&str> = publish.iter().map(String::as_str).collect();
    let output = cordon_integration_tests::cordon(&publish)?;
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), example_indicators()?.len());
    assert_eq!(lines[0]["sequence"], 1);
    assert!(lines[0]["id"].as_str().is_some_and(|id| id.len() == 36));

    // A bad file: non-zero exit, the field errors with their line, nothing stored.
    let bad = federation.dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"tlp\":\"TLP_CLEAR\",\"confidence\":150,\"validFrom\":\"2026-11-01T00:00:00Z\",\"vessel\":{\"imo\":\"9234563\"}}\n",
    )?;
    let mut publish_bad = args("publish");
    publish_bad.extend(["--file".to_string(), bad.display().to_string()]);
    let output = std::process::Command::new(cordon_integration_tests::cordon_bin())
        .args(&publish_bad)
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("indicators[0].confidence (line 1)"),
        "{stderr}"
    );

    let mut subscribe = args("subscribe");
    subscribe.extend([
        "--after".to_string(),
        "2".to_string(),
        "--limit".to_string(),
        "3".to_string(),
    ]);
    let subscribe: Vec<&str> = subscribe.iter().map(String::as_str).collect();
    let output = cordon_integration_tests::cordon(&subscribe)?;
    let sequences: Vec<u64> = output
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).map(|event| {
                event["sequence"]
                    .as_str()
                    .and_then(|text| text.parse().ok())
                    .or(event["sequence"].as_u64())
                    .unwrap_or(0)
            })
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(sequences, vec![3, 4, 5]);
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_over_the_message_limit_are_split_by_the_cli_and_named_by_the_gateway()
-> Result<()> {
    let federation = Federation::new()?;
    let gateway = federation.member("GH")?.start(&[]).await?;
    let customs = federation.identity("GH/customs")?;
    // 900 indicators with 6 KB narratives: under the 1,000 a batch may hold, over 4 MiB.
    let indicators: Vec<cordon_proto::v1::Indicator> = (0..900)
        .map(|n| clear_vessel(format!("{n:04} {}", "n".repeat(6_000))))
        .collect();
    let file = federation.dir.path().join("large.jsonl");
    let mut text = String::new();
    for indicator in &indicators {
        text.push_str(&serde_json::to_string(indicator)?);
        text.push('\n');
    }
    std::fs::write(&file, text)?;
    let output = std::process::Command::new(cordon_integration_tests::cordon_bin())
        .args([
            "publish",
            "--endpoint",
            &gateway.endpoint,
            "--identity",
            &customs.display().to_string(),
            "--file",
            &file.display().to_string(),
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("in 2 batches") && stderr.contains("stored or refused on its own"),
        "{stderr}"
    );
    let stdout = String::from_utf8(output.stdout)?;
    let sequences: Vec<u64> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .map(|accepted| accepted["sequence"].as_u64().unwrap_or(0))
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(sequences, (1..=900).collect::<Vec<u64>>());

    // A client that sends the whole 5 MB anyway is told the limit, and nothing is stored.
    let channel = cordon_gateway::cli::client::channel(&gateway.endpoint, &customs).await?;
    let mut unlimited =
        cordon_proto::v1::indicator_service_client::IndicatorServiceClient::new(channel)
            .max_encoding_message_size(64 << 20);
    let status = unlimited
        .publish(PublishRequest {
            indicators,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("4194304"), "{status:?}");
    let events = read_all(&gateway.endpoint, &customs, 0, 0).await?;
    assert_eq!(published(&events).len(), 900);
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served_over_mutual_tls() -> Result<()> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

    let federation = Federation::new()?;
    let gateway = federation.member("GH")?.start(&[]).await?;
    let channel =
        cordon_gateway::cli::client::channel(&gateway.endpoint, &federation.identity("CI")?)
            .await?;
    let mut health = HealthClient::new(channel.clone());
    let service = "cordon.v1.IndicatorService".to_string();
    let status = health
        .check(HealthCheckRequest { service })
        .await?
        .into_inner();
    assert_eq!(status.status, ServingStatus::Serving as i32);

    // Both reflection versions answer the same: tools such as Python's grpcio-reflection
    // speak only v1alpha.
    let listed = list_services_v1(channel.clone()).await?;
    let listed_v1alpha = list_services_v1alpha(channel).await?;
    assert_eq!(listed, listed_v1alpha);
    for expected in [
        "cordon.v1.IndicatorService",
        "cordon.v1.PolicyService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            listed.iter().any(|name| name == expected),
            "{expected} not in {listed:?}"
        );
    }
    gateway.stop().await
}

/// `async fn $name(channel) -> Result<Vec<String>>`: the services a gateway lists through
/// reflection `$version` (v1 and v1alpha have the same messages in different packages), sorted.
macro_rules! list_services {
    ($name:ident, $version:ident) => {
        async fn $name(channel: tonic::transport::Channel) -> Result<Vec<String>> {
            use tonic_reflection::pb::$version::ServerReflectionRequest;
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let response = ServerReflectionClient::new(channel)
                .server_reflection_info(futures::stream::iter([request]))
                .await?
                .into_inner()
                .message()
                .await?
                .context("a reflection response")?;
            let Some(MessageResponse::ListServicesResponse(list)) = response.message_response
            else {
                anyhow::bail!("unexpected reflection response {response:?}");
            };
            let mut names: Vec<String> = list
                .service
                .into_iter()
                .map(|service| service.name)
                .collect();
            names.sort();
            Ok(names)
        }
    };
}

list_services!(list_services_v1, v1);
list_services!(list_services_v1alpha, v1alpha);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stops_cleanly_while_partners_follow_it() -> Result<()> {
    let federation = Federation::new()?;
    let gateway = federation.member("GH")?.start(&[]).await?;
    let mut client = indicator_client(&gateway.endpoint, &federation.identity("NG")?).await?;
    let mut stream = client
        .subscribe(SubscribeRequest {
            after: 0,
            follow: true,
            kinds: Vec::new(),
            limit: 0,
        })
        .await?
        .into_inner();
    // A follower is told where the head is, then waits caught up; SIGTERM must
    // still end the process.
    let first = stream.message().await?.context("a first checkpoint")?;
    assert!(
        matches!(first.body, Some(event::Body::Checkpoint(checkpoint)) if checkpoint.head == 0),
        "{first:?}"
    );
    let waiting = tokio::spawn(async move { stream.message().await });
    gateway.stop().await?;
    let ended = tokio::time::timeout(patience(), waiting)
        .await
        .context("the stream did not end")??;
    let status = ended.expect_err("a following stream ends with a status when the gateway stops");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_cannot_hold_unbounded_subscriptions() -> Result<()> {
    let limit = cordon_gateway::MAX_SUBSCRIPTIONS_PER_IDENTITY;
    let federation = Federation::new()?;
    let gateway = federation.member("GH")?.start(&[]).await?;
    let mut client = indicator_client(&gateway.endpoint, &federation.identity("NG")?).await?;
    let follow = SubscribeRequest {
        after: 0,
        follow: true,
        kinds: Vec::new(),
        limit: 0,
    };
    let mut open = Vec::new();
    for _ in 0..limit {
        open.push(client.subscribe(follow.clone()).await?.into_inner());
    }
    let refused = client.subscribe(follow.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Another identity is not affected.
    let mut other = indicator_client(&gateway.endpoint, &federation.identity("CI")?).await?;
    other.subscribe(follow.clone()).await?;
    // Closing one stream frees its slot (the server notices the reset; wait for it).
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        match client.subscribe(follow.clone()).await {
            Ok(_) => break,
            Err(status)
                if status.code() == Code::ResourceExhausted
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(status) => anyhow::bail!("slot not released: {status:?}"),
        }
    }
    drop(open);
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_concurrent_publishing_loses_no_acknowledged_indicator() -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let gateway = member.start(&[]).await?;
    let acknowledged_count = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for index in 0..4 {
        let endpoint = gateway.endpoint.clone();
        let identity = federation.identity("GH/customs")?;
        let counter = acknowledged_count.clone();
        publishers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let Ok(mut client) = indicator_client(&endpoint, &identity).await else {
                return acknowledged;
            };
            for batch in 0.. {
                let indicators = (0..10)
                    .map(|item| clear_vessel(format!("p{index} b{batch} i{item}")))
                    .collect();
                match client
                    .publish(PublishRequest {
                        indicators,
                        ..Default::default()
                    })
                    .await
                {
                    Ok(response) => {
                        let ids: Vec<String> = response
                            .into_inner()
                            .accepted
                            .into_iter()
                            .map(|item| item.id)
                            .collect();
                        counter.fetch_add(ids.len(), Ordering::Relaxed);
                        acknowledged.extend(ids);
                    }
                    // The gateway was killed: whatever was in flight was never acknowledged.
                    Err(_) => return acknowledged,
                }
            }
            acknowledged
        }));
    }
    // Kill once publishing is well under way, while calls are in flight.
    let deadline = tokio::time::Instant::now() + patience();
    while acknowledged_count.load(Ordering::Relaxed) < 400 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "publishers made no progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    gateway.kill().await?;
    let mut acknowledged = HashSet::new();
    for publisher in publishers {
        acknowledged.extend(tokio::time::timeout(patience(), publisher).await??);
    }

    let restarted = member.start(&[]).await?;
    let events = read_all(
        &restarted.endpoint,
        &federation.identity("GH/police")?,
        0,
        0,
    )
    .await?;
    let stored = published(&events);
    let sequences: Vec<u64> = stored.iter().map(|(sequence, _, _)| *sequence).collect();
    assert_eq!(
        sequences,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    let stored_ids: HashSet<String> = stored
        .into_iter()
        .map(|(_, indicator, _)| indicator.id)
        .collect();
    let lost: Vec<&String> = acknowledged.difference(&stored_ids).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged indicators lost: {lost:?}",
        lost.len()
    );
    assert!(acknowledged.len() >= 400);
    restarted.stop().await
}

/// SIGTERM sent the moment the gateway announces its address shuts it down
/// cleanly: the handlers are installed before the announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stopped_as_soon_as_it_listens_exits_cleanly() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    for _ in 0..5 {
        member.start(&[]).await?.stop().await?;
    }
    Ok(())
}

/// A certificate the federation CA revoked is refused in the TLS handshake by a gateway whose
/// `[tls] crl` holds the CA's CRL; every other identity is served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_in_the_handshake() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let police = federation.identity("GH/police")?;
    let customs = federation.identity("GH/customs")?;
    let ca_dir = federation.ca_dir();
    let revoked = revoke(&ca_dir, &police)?;
    assert!(revoked.contains("lists 1 certificates"), "{revoked}");
    std::fs::copy(
        ca_dir.join("crl.pem"),
        member.dir.join("identity").join("crl.pem"),
    )?;
    let config = std::fs::read_to_string(member.config())?;
    let with_crl = config.replacen(
        "ca = \"identity/ca.pem\"",
        "ca = \"identity/ca.pem\"\ncrl = \"identity/crl.pem\"",
        1,
    );
    assert_ne!(
        config, with_crl,
        "the config has no [tls] ca line: {config}"
    );
    std::fs::write(member.config(), with_crl)?;
    let gateway = member.start(&[]).await?;

    // Identities the CA did not revoke are served, through the same handshake.
    let accepted = indicator_client(&gateway.endpoint, &customs)
        .await?
        .publish(PublishRequest {
            indicators: vec![clear_vessel("served".into())],
            ..Default::default()
        })
        .await?
        .into_inner()
        .accepted;
    assert_eq!(accepted.len(), 1);
    let events = read_all(&gateway.endpoint, &federation.identity("CI")?, 0, 0).await?;
    assert_eq!(published(&events).len(), 1);

    // The revoked one is not, whatever it asks.
    let refused = match indicator_client(&gateway.endpoint, &police).await {
        Err(error) => format!("{error:#}"),
        Ok(mut client) => match client
            .subscribe(SubscribeRequest {
                after: 0,
                follow: false,
                kinds: Vec::new(),
                limit: 0,
            })
            .await
        {
            Ok(_) => anyhow::bail!("a revoked certificate was served"),
            Err(status) => format!("{status:?}"),
        },
    };
    assert!(!refused.is_empty());
    cordon_integration_tests::wait_until("the gateway to log the refused handshake", || {
        let log = gateway.log_text();
        async move {
            Ok((
                log.contains("TLS handshake refused") && log.contains("Revoked"),
                log.lines().rev().take(5).collect::<Vec<_>>().join("\n"),
            ))
        }
    })
    .await?;

    // A certificate revoked while the gateway runs: the CA's new CRL replaces the gateway's
    // copy (written whole, then renamed over it), and from then on customs is refused too.
    revoke(&ca_dir, &customs)?;
    let staged = member.dir.join("identity").join("crl.pem.new");
    std::fs::copy(ca_dir.join("crl.pem"), &staged)?;
    std::fs::rename(&staged, member.dir.join("identity").join("crl.pem"))?;
    cordon_integration_tests::wait_until("customs to be refused after the new CRL", || async {
        let served = match indicator_client(&gateway.endpoint, &customs).await {
            Err(_) => false,
            Ok(mut client) => client
                .subscribe(SubscribeRequest {
                    after: 0,
                    follow: false,
                    kinds: Vec::new(),
                    limit: 0,
                })
                .await
                .is_ok(),
        };
        Ok((!served, String::new()))
    })
    .await?;
    // Identities still not revoked are served as before.
    read_all(&gateway.endpoint, &federation.identity("CI")?, 0, 0).await?;
    gateway.stop().await
}

/// `cordon ca revoke` of the certificate in the identity directory `identity`.
fn revoke(ca_dir: &std::path::Path, identity: &std::path::Path) -> Result<String> {
    cordon_integration_tests::cordon(&[
        "ca",
        "revoke",
        "--ca",
        &ca_dir.display().to_string(),
        "--cert",
        &identity.join("cert.pem").display().to_string(),
    ])
}

/// A gateway with `[tls] crl` refuses a peer whose gateway certificate the CA revoked when
/// it connects to follow it: GH never stores what NG publishes, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_a_peer_whose_certificate_is_revoked() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria] = &federation.members(&["GH", "NG"])?[..] else {
        anyhow::bail!("two members")
    };
    let ca_dir = federation.ca_dir();
    revoke(&ca_dir, &nigeria.identity())?;
    std::fs::copy(ca_dir.join("crl.pem"), ghana.identity().join("crl.pem"))?;
    let config = std::fs::read_to_string(ghana.config())?;
    std::fs::write(
        ghana.config(),
        config.replacen(
            "ca = \"identity/ca.pem\"",
            "ca = \"identity/ca.pem\"\ncrl = \"identity/crl.pem\"",
            1,
        ),
    )?;
    let ng = nigeria.start(&[]).await?;
    ghana.follow(nigeria, &ng.endpoint)?;
    let gh = ghana.start(&[]).await?;
    indicator_client(&ng.endpoint, &federation.identity("NG/customs")?)
        .await?
        .publish(PublishRequest {
            indicators: vec![clear_vessel("from a revoked gateway".into())],
            ..Default::default()
        })
        .await?;
    cordon_integration_tests::wait_until("GH to refuse NG's revoked certificate", || {
        let log = gh.log_text();
        async move {
            Ok((
                log.contains("Revoked"),
                log.lines().rev().take(5).collect::<Vec<_>>().join("\n"),
            ))
        }
    })
    .await?;
    let held = read_all(&gh.endpoint, &federation.identity("GH/customs")?, 0, 0).await?;
    assert!(published(&held).is_empty(), "{held:?}");
    gh.stop().await?;
    ng.stop().await
}

/// A loopback TCP proxy standing for one address in front of replicas: each connection goes
/// to the first of `backends` that accepts it.
async fn failover_proxy(backends: Vec<String>) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let backends = backends.clone();
            tokio::spawn(async move {
                for backend in &backends {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                }
            });
        }
    });
    Ok((format!("https://127.0.0.1:{}", address.port()), task))
}

/// Two replicas of GH on one PostgreSQL database behind one address; the one serving is
/// killed (SIGKILL) while an agency publishes and another follows through that address. The
/// follower resumes from its cursor at the other replica and receives every acknowledged
/// indicator, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_postgres_replicas_loses_nothing_for_its_subscribers() -> Result<()> {
    let Some(url) = postgres_url("killing_one_of_two_postgres_replicas").await? else {
        return Ok(());
    };
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let environment = [("CORDON_DATABASE_URL", url.as_str())];
    let replica_a = member.start(&environment).await?;
    let replica_b = member.start(&environment).await?;
    let host = |endpoint: &str| endpoint.trim_start_matches("https://").to_string();
    let (endpoint, proxy) =
        failover_proxy(vec![host(&replica_a.endpoint), host(&replica_b.endpoint)]).await?;

    // The follower: resumes from its cursor whenever its stream breaks, until it holds every
    // indicator the publisher was told was stored (sent to it once publishing is over).
    let reader = federation.identity("GH/police")?;
    let (target_sender, mut target) = tokio::sync::watch::channel::<Option<HashSet<String>>>(None);
    let follow_endpoint = endpoint.clone();
    let follower = tokio::spawn(async move {
        let mut cursor = 0;
        let mut received: Vec<(u64, String)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut reconnects = 0u32;
        let complete = |seen: &HashSet<String>, target: &Option<HashSet<String>>| {
            target.as_ref().is_some_and(|target| target.is_subset(seen))
        };
        loop {
            anyhow::ensure!(reconnects < 1_000, "the follower cannot reconnect");
            let Ok(mut client) = indicator_client(&follow_endpoint, &reader).await else {
                reconnects += 1;
                continue;
            };
            let request = SubscribeRequest {
                after: cursor,
                follow: true,
                kinds: Vec::new(),
                limit: 0,
            };
            let Ok(stream) = client.subscribe(request).await else {
                reconnects += 1;
                continue;
            };
            let mut stream = stream.into_inner();
            loop {
                if complete(&seen, &target.borrow()) {
                    return anyhow::Ok((received, reconnects));
                }
                let next = tokio::select! {
                    next = stream.message() => next,
                    _ = target.changed() => continue,
                };
                match next {
                    Ok(Some(event)) => {
                        cursor = event.sequence;
                        if let Some(event::Body::Published(published)) = event.body {
                            let id = published.indicator.context("indicator")?.id;
                            seen.insert(id.clone());
                            received.push((event.sequence, id));
                        }
                    }
                    Ok(None) | Err(_) => {
                        reconnects += 1;
                        break;
                    }
                }
            }
        }
    });

    // The publisher: batches of 10 through the one address; replica A dies after the 10th.
    // A call cut by the kill is not acknowledged and is sent again (as new indicators).
    let customs = federation.identity("GH/customs")?;
    let mut acknowledged = HashSet::new();
    let mut replica_a = Some(replica_a);
    for batch in 0..30 {
        if batch == 10
            && let Some(replica) = replica_a.take()
        {
            replica.kill().await?;
        }
        let indicators: Vec<_> = (0..10)
            .map(|item| clear_vessel(format!("b{batch} i{item}")))
            .collect();
        let mut attempts = 0;
        let accepted = loop {
            attempts += 1;
            let answer = match indicator_client(&endpoint, &customs).await {
                Ok(mut client) => client
                    .publish(PublishRequest {
                        indicators: indicators.clone(),
                        ..Default::default()
                    })
                    .await
                    .map_err(anyhow::Error::from),
                Err(error) => Err(error),
            };
            match answer {
                Ok(response) => break response.into_inner().accepted,
                Err(error) if attempts >= 50 => return Err(error),
                Err(_) => {}
            }
        };
        acknowledged.extend(accepted.into_iter().map(|item| item.id));
    }
    assert_eq!(acknowledged.len(), 300);
    target_sender.send_replace(Some(acknowledged.clone()));
    let (received, reconnects) = tokio::time::timeout(patience(), follower)
        .await
        .context("the follower did not receive every acknowledged indicator in time")???;
    assert!(
        reconnects >= 1,
        "the follower's stream never broke: the kill did not reach it"
    );
    let sequences: Vec<u64> = received.iter().map(|(sequence, _)| *sequence).collect();
    assert!(
        sequences.windows(2).all(|pair| pair[0] < pair[1]),
        "out of order or repeated: {sequences:?}"
    );
    let ids: HashSet<String> = received.into_iter().map(|(_, id)| id).collect();
    assert!(acknowledged.is_subset(&ids));
    proxy.abort();
    replica_b.stop().await
}
