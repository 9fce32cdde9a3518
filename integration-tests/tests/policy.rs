//! The policy workflow on real gateways: broken or failing policies dropped
//! into a running gateway's policy directory are rejected while the old one
//! keeps serving; a valid change is picked up; reloads under streaming
//! subscribers never mix revisions; every decision is stored and queryable.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cordon_integration_tests::{
    Federation, MemberDir, example_indicators, indicator_client, patience,
};
use cordon_proto::v1::policy_service_client::PolicyServiceClient;
use cordon_proto::v1::{
    DecisionEntry, DecisionsRequest, PolicyStatus, PolicyStatusRequest, PublishRequest,
    ReloadRequest, SubscribeRequest, event,
};

async fn policy_client(
    endpoint: &str,
    identity: &Path,
) -> Result<PolicyServiceClient<tonic::transport::Channel>> {
    Ok(PolicyServiceClient::new(
        cordon_gateway::cli::client::channel(endpoint, identity).await?,
    ))
}

async fn status(
    client: &mut PolicyServiceClient<tonic::transport::Channel>,
) -> Result<PolicyStatus> {
    Ok(client.status(PolicyStatusRequest {}).await?.into_inner())
}

/// Polls the status RPC until `condition` holds, within the test patience.
async fn wait_for_status(
    client: &mut PolicyServiceClient<tonic::transport::Channel>,
    what: &str,
    condition: impl Fn(&PolicyStatus) -> bool,
) -> Result<PolicyStatus> {
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let current = status(client).await?;
        if condition(&current) {
            return Ok(current);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("waited for {what}; status is {current:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes a file the way a careful board does: whole, then renamed into place.
fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, contents)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

async fn all_decisions(
    client: &mut PolicyServiceClient<tonic::transport::Channel>,
    request: DecisionsRequest,
) -> Result<Vec<DecisionEntry>> {
    let mut decisions = Vec::new();
    let mut request = DecisionsRequest {
        limit: 500,
        ..request
    };
    loop {
        let page = client
            .decisions(request.clone())
            .await?
            .into_inner()
            .decisions;
        let full = page.len() == 500;
        if let Some(last) = page.last() {
            request.after_decision_id = last.decision_id.clone();
            request.after_time = last.at;
        }
        decisions.extend(page);
        if !full {
            return Ok(decisions);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_policies_are_rejected_and_a_valid_change_is_picked_up() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let gateway = member.start(&[]).await?;
    let admin = federation.identity("GH")?;
    let mut policy = policy_client(&gateway.endpoint, &admin).await?;
    let initial = status(&mut policy).await?;
    let original_revision = initial.active_revision.clone();
    let rego = member.dir.join("policy/cordon/outbound.rego");
    let original_rego = std::fs::read_to_string(&rego)?;

    // 1. A syntax error: rejected, the old revision keeps serving.
    write_atomically(
        &rego,
        &format!("{original_rego}\ndecision := {{ this is not rego\n"),
    )?;
    let after_broken = wait_for_status(&mut policy, "the broken policy to be rejected", |status| {
        status.reloads_rejected >= 1
    })
    .await?;
    assert_eq!(after_broken.active_revision, original_revision);
    assert!(after_broken.last_rejection.is_some());

    // 2. A policy whose own test fails: rejected too.
    write_atomically(&rego, &original_rego)?;
    let failing_test = member.dir.join("policy/cordon/extra_test.rego");
    write_atomically(
        &failing_test,
        "package cordon.extra_test\nimport rego.v1\ntest_that_fails if { 1 == 2 }\n",
    )?;
    let after_failing = wait_for_status(
        &mut policy,
        "the failing-test policy to be rejected",
        |status| {
            status
                .last_rejection
                .as_ref()
                .is_some_and(|rejection| rejection.reason.contains("test_that_fails"))
        },
    )
    .await?;
    assert_eq!(
        after_failing.active_revision, original_revision,
        "{after_failing:?}"
    );

    // The old policy still serves: NG (trust 4) receives a GREEN source unredacted.
    let customs = federation.identity("GH/customs")?;
    let partner = federation.identity("NG")?;
    let green_with_source = example_indicators()?.remove(1);
    assert!(green_with_source.source.is_some());
    let mut publisher = indicator_client(&gateway.endpoint, &customs).await?;
    let first = publisher
        .publish(PublishRequest {
            indicators: vec![green_with_source.clone()],
            ..Default::default()
        })
        .await?
        .into_inner();
    let events = read(&gateway.endpoint, &partner, 0).await?;
    assert_eq!(
        events,
        vec![(first.accepted[0].sequence, Vec::<String>::new())]
    );

    // 3. A valid change (the board lowers NG's trust below what sources need):
    // activated, and the next decision uses its revision.
    std::fs::remove_file(&failing_test)?;
    let data_path = member.dir.join("policy/data.json");
    let mut data: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&data_path)?)?;
    data["recipients"]["NG"]["trust"] = serde_json::json!(2);
    write_atomically(&data_path, &serde_json::to_string_pretty(&data)?)?;
    let activated = wait_for_status(&mut policy, "the valid change to be activated", |status| {
        status.active_revision != original_revision
    })
    .await?;
    assert!(activated.reloads_accepted >= 1);
    let second = publisher
        .publish(PublishRequest {
            indicators: vec![green_with_source],
            ..Default::default()
        })
        .await?
        .into_inner();
    // The new policy redacts the source for NG's gateway, which receives the rest.
    let events = read(&gateway.endpoint, &partner, first.accepted[0].sequence).await?;
    assert_eq!(
        events,
        vec![(second.accepted[0].sequence, vec!["source".to_string()])]
    );

    let decided = all_decisions(
        &mut policy,
        DecisionsRequest {
            indicator_id: second.accepted[0].id.clone(),
            recipient: "NG".into(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0].policy_revision, activated.active_revision);
    assert_eq!(decided[0].redact, vec!["source".to_string()]);
    assert!(decided[0].allow, "{:?}", decided[0]);
    assert!(decided[0].error.is_empty(), "{:?}", decided[0]);

    // A reload by RPC with nothing changed reports so; agencies may not reload.
    let unchanged = policy.reload(ReloadRequest {}).await?.into_inner();
    assert_eq!(unchanged.message, "unchanged");
    let mut agency = policy_client(&gateway.endpoint, &customs).await?;
    let refused = agency.reload(ReloadRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // Another member may not read this gateway's decisions.
    let mut outsider = policy_client(&gateway.endpoint, &partner).await?;
    assert_eq!(
        outsider
            .decisions(DecisionsRequest::default())
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    gateway.stop().await
}

/// (sequence, redacted paths) of the published events released to `identity`.
async fn read(endpoint: &str, identity: &Path, after: u64) -> Result<Vec<(u64, Vec<String>)>> {
    let mut client = indicator_client(endpoint, identity).await?;
    let mut stream = client
        .subscribe(SubscribeRequest {
            after,
            follow: false,
            kinds: Vec::new(),
            limit: 0,
        })
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await? {
        if let Some(event::Body::Published(published)) = event.body {
            events.push((event.sequence, published.redacted));
        }
    }
    Ok(events)
}

fn marker_policy(member: &MemberDir, marker: &str) -> Result<()> {
    let dir = member.dir.join("policy");
    // A policy whose every reason names the marker in its data: a decision
    // that mixed two revisions would pair one revision with the other's marker.
    write_atomically(
        &dir.join("cordon/outbound.rego"),
        "package cordon.outbound\nimport rego.v1\n\ndecision := {\"allow\": true, \"redact\": [], \"reasons\": [sprintf(\"marker %s\", [data.settings.marker])]}\n",
    )?;
    write_atomically(
        &dir.join("cordon/outbound_test.rego"),
        "package cordon.outbound_test\nimport rego.v1\nimport data.cordon.outbound\n\ntest_allows if { outbound.decision.allow }\n",
    )?;
    write_atomically(
        &dir.join("data.json"),
        &format!("{{\"settings\": {{\"marker\": \"{marker}\"}}}}\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_streaming_subscribers_never_mix_revisions() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    marker_policy(&member, "A")?;
    let gateway = member.start(&[]).await?;
    let admin = federation.identity("GH")?;
    let mut policy = policy_client(&gateway.endpoint, &admin).await?;

    const BATCHES: u64 = 40;
    const BATCH_SIZE: u64 = 10;
    let total = BATCHES * BATCH_SIZE;
    let mut followers = Vec::new();
    for recipient in ["NG", "CI", "GH/police"] {
        let identity = federation.identity(recipient)?;
        let endpoint = gateway.endpoint.clone();
        followers.push(tokio::spawn(async move {
            let mut client = indicator_client(&endpoint, &identity).await?;
            let mut stream = client
                .subscribe(SubscribeRequest {
                    after: 0,
                    follow: true,
                    kinds: Vec::new(),
                    limit: total,
                })
                .await?
                .into_inner();
            let mut count = 0;
            while let Some(event) = stream.message().await? {
                if matches!(event.body, Some(event::Body::Published(_))) {
                    count += 1;
                }
            }
            anyhow::Ok(count)
        }));
    }
    let customs = federation.identity("GH/customs")?;
    let mut publisher = indicator_client(&gateway.endpoint, &customs).await?;
    let template = example_indicators()?.remove(0);
    let mut revisions: HashMap<String, String> = HashMap::new();
    let mut lookups: u64 = 0;
    for batch in 0..BATCHES {
        let indicators = (0..BATCH_SIZE).map(|_| template.clone()).collect();
        let accepted = publisher
            .publish(PublishRequest {
                indicators,
                ..Default::default()
            })
            .await?
            .into_inner();
        // One synchronous decision per batch, so that every active revision
        // decides something whatever the followers' pace.
        let get = cordon_proto::v1::GetRequest {
            id: accepted.accepted[0].id.clone(),
        };
        publisher.get(get).await?;
        lookups += 1;
        if batch % 4 == 3 {
            let marker = if (batch / 4) % 2 == 0 { "B" } else { "A" };
            marker_policy(&member, marker)?;
            let reload = policy.reload(ReloadRequest {}).await?.into_inner();
            // The file watch may have been first; either way this marker is active now.
            revisions.insert(reload.active_revision, marker.to_string());
        }
    }
    for follower in followers {
        let count = tokio::time::timeout(patience(), follower)
            .await
            .context("follower stalled")???;
        assert_eq!(count, total);
    }
    let decisions = all_decisions(&mut policy, DecisionsRequest::default()).await?;
    assert_eq!(
        decisions.len() as u64,
        3 * total + lookups,
        "one stored decision per release"
    );
    let mut markers_by_revision: HashMap<String, String> = HashMap::new();
    for decision in &decisions {
        let marker = decision
            .reasons
            .first()
            .and_then(|reason| reason.strip_prefix("marker "))
            .context("marker")?;
        let previous =
            markers_by_revision.insert(decision.policy_revision.clone(), marker.to_string());
        if let Some(previous) = previous {
            assert_eq!(
                previous, marker,
                "revision {} decided with two policies",
                decision.policy_revision
            );
        }
    }
    for (revision, marker) in &revisions {
        if let Some(seen) = markers_by_revision.get(revision) {
            assert_eq!(seen, marker, "revision {revision}");
        }
    }
    assert!(
        markers_by_revision.len() >= 2,
        "reloads happened during the stream: {markers_by_revision:?}"
    );
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retraction_reaches_exactly_those_who_received_the_indicator() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let gateway = member.start(&[]).await?;
    let mut policy = policy_client(&gateway.endpoint, &federation.identity("GH")?).await?;
    let original_revision = status(&mut policy).await?.active_revision;
    let customs = federation.identity("GH/customs")?;
    let mut publisher = indicator_client(&gateway.endpoint, &customs).await?;
    // Line 3 of the examples: TLP:AMBER end-user certificate; NG has an agreement for it, CI not.
    let amber = example_indicators()?.remove(2);
    let accepted = publisher
        .publish(PublishRequest {
            indicators: vec![amber],
            ..Default::default()
        })
        .await?
        .into_inner();
    let id = accepted.accepted[0].id.clone();
    let partner = federation.identity("NG")?;
    let outsider = federation.identity("CI")?;
    assert_eq!(
        read(&gateway.endpoint, &partner, 0).await?.len(),
        1,
        "NG receives the AMBER indicator"
    );
    assert!(read(&gateway.endpoint, &outsider, 0).await?.is_empty());

    // The board ends the agreement with NG; then GH retracts.
    let data_path = member.dir.join("policy/data.json");
    let mut data: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&data_path)?)?;
    data["agreements"] = serde_json::json!({});
    write_atomically(&data_path, &serde_json::to_string_pretty(&data)?)?;
    wait_for_status(&mut policy, "the new agreements to be active", |status| {
        status.active_revision != original_revision
    })
    .await?;
    publisher
        .retract(cordon_proto::v1::RetractRequest {
            id: id.clone(),
            reason: "forged stamp confirmed".into(),
        })
        .await?;

    let retractions_for = |identity: std::path::PathBuf| {
        let endpoint = gateway.endpoint.clone();
        async move {
            let mut client = indicator_client(&endpoint, &identity).await?;
            let request = SubscribeRequest {
                after: 0,
                follow: false,
                kinds: Vec::new(),
                limit: 0,
            };
            let mut stream = client.subscribe(request).await?.into_inner();
            let mut retracted = Vec::new();
            while let Some(event) = stream.message().await? {
                if let Some(event::Body::Retracted(retraction)) = event.body {
                    retracted.push(retraction.indicator_id);
                }
            }
            anyhow::Ok(retracted)
        }
    };
    // NG held it, so NG hears of the retraction although the policy would no longer send it.
    assert_eq!(retractions_for(partner).await?, vec![id.clone()]);
    // CI never received it and learns nothing, not even that it was retracted.
    assert!(retractions_for(outsider).await?.is_empty());
    gateway.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_of_a_withheld_id_does_what_get_of_an_absent_one_does_and_hides_revisions() -> Result<()>
{
    use cordon_integration_tests::vessel;
    use cordon_proto::v1::{GetRequest, Indicator, Tlp};

    let federation = Federation::new()?;
    let gateway = federation.member("GH")?.start(&[]).await?;
    let mut customs =
        indicator_client(&gateway.endpoint, &federation.identity("GH/customs")?).await?;
    let mut police =
        indicator_client(&gateway.endpoint, &federation.identity("GH/police")?).await?;
    let partner = federation.identity("CI")?;
    let mut partner_client = indicator_client(&gateway.endpoint, &partner).await?;
    let mut decisions_client =
        policy_client(&gateway.endpoint, &federation.identity("GH")?).await?;
    let mut publish = async |indicator: Indicator| -> Result<String> {
        let accepted = customs
            .publish(PublishRequest {
                indicators: vec![indicator],
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(accepted.accepted[0].id.clone())
    };
    // A GREEN indicator, superseded by an AMBER revision that its own agencies see and the
    // partner member CI does not.
    let original = publish(vessel(Tlp::Green, "seen by the partner".into())).await?;
    let revision = publish(Indicator {
        supersedes: original.clone(),
        ..vessel(Tlp::Amber, "kept from the partner".into())
    })
    .await?;
    let absent = "019a0000-0000-7000-8000-00000000beef";
    let get = |id: &str| GetRequest { id: id.to_string() };
    let partner_decisions = async |client: &mut PolicyServiceClient<tonic::transport::Channel>| {
        all_decisions(
            client,
            DecisionsRequest {
                recipient: "CI".into(),
                ..DecisionsRequest::default()
            },
        )
        .await
    };

    // The withheld revision and an absent id: the same answer and the same storage work,
    // one decision stored each.
    let before = partner_decisions(&mut decisions_client).await?.len();
    let withheld = partner_client.get(get(&revision)).await.unwrap_err();
    let after_withheld = partner_decisions(&mut decisions_client).await?;
    let missing = partner_client.get(get(absent)).await.unwrap_err();
    let after_absent = partner_decisions(&mut decisions_client).await?;
    assert_eq!(withheld.code(), tonic::Code::NotFound, "{withheld:?}");
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    assert_eq!(
        withheld.message().replace(&revision, "ID"),
        missing.message().replace(absent, "ID")
    );
    assert_eq!(after_withheld.len(), before + 1);
    assert_eq!(after_absent.len(), before + 2);
    let absent_decision = after_absent
        .iter()
        .find(|decision| decision.indicator_id == absent)
        .context("the absent id's decision")?;
    assert!(!absent_decision.allow, "{absent_decision:?}");

    // The partner sees the original but is not told of the revision it may not see; an own
    // agency is.
    let seen = partner_client.get(get(&original)).await?.into_inner();
    assert!(seen.indicator.is_some());
    assert_eq!(seen.superseded_by, "", "{seen:?}");
    let seen = police.get(get(&original)).await?.into_inner();
    assert_eq!(seen.superseded_by, revision, "{seen:?}");
    gateway.stop().await
}

/// A policy on which the bytecode VM answers wrongly only on a path the load-time comparison
/// never takes (regorus' `else` bug, reached by one watched recipient): the first live
/// decision on that path is compared with the interpreter, the interpreter's deny stands,
/// and the VM is retired for the revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_that_goes_wrong_on_live_input_is_caught_and_retired() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let policy_dir = member.dir.join("policy");
    std::fs::remove_dir_all(&policy_dir)?;
    std::fs::create_dir_all(policy_dir.join("cordon"))?;
    std::fs::write(
        policy_dir.join("cordon/outbound.rego"),
        r#"package cordon.outbound
import rego.v1

attribute(name) := value if {
	value := input.recipient[name]
} else := value if {
	value := data.watch[input.recipient.id][name]
}

default decision := {"allow": true, "redact": [], "reasons": ["open"]}

decision := {"allow": false, "redact": [], "reasons": ["watchlisted"]} if attribute("watchlisted") == true
"#,
    )?;
    std::fs::write(
        policy_dir.join("data.json"),
        r#"{"watch": {"SN/customs": {"watchlisted": true}}}"#,
    )?;
    let gateway = member.start(&[]).await?;
    let mut policy = policy_client(&gateway.endpoint, &federation.identity("GH")?).await?;
    let before = status(&mut policy).await?;
    assert_eq!(before.engine, "rvm", "{before:?}");

    let marker = format!("watched-{}", std::process::id());
    indicator_client(&gateway.endpoint, &federation.identity("GH/customs")?)
        .await?
        .publish(PublishRequest {
            indicators: vec![cordon_integration_tests::clear_vessel(marker.clone())],
            ..Default::default()
        })
        .await?;
    let narratives = async |identity: &str| -> Result<Vec<String>> {
        let events = cordon_integration_tests::read_all(
            &gateway.endpoint,
            &federation.identity(identity)?,
            0,
            0,
        )
        .await?;
        Ok(cordon_integration_tests::published(&events)
            .into_iter()
            .map(|(_, indicator, _)| indicator.narrative)
            .collect())
    };
    // A recipient the policy lets through receives it; the watched one does not.
    assert_eq!(narratives("NG/customs").await?, vec![marker.clone()]);
    assert_eq!(narratives("SN/customs").await?, Vec::<String>::new());
    let after = status(&mut policy).await?;
    assert_eq!(after.engine, "interpreter", "{after:?}");
    let log = gateway.log_text();
    assert!(
        log.contains("policy moved to the interpreter") && log.contains("disagreed"),
        "{log}"
    );
    // And it stays so.
    assert_eq!(narratives("SN/customs").await?, Vec::<String>::new());
    gateway.stop().await
}
