//! Gateways following each other, as real `cordon serve` processes on loopback:
//! provenance checked at every hop, the third-party rule, no loops, crash
//! recovery of a follower, retraction and revision reaching every holder, and
//! `cordon peers`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use cordon_integration_tests::{
    Federation, MemberDir, broker, cordon, indicator_client, patience, published, read_all, vessel,
    wait_until,
};
use cordon_proto::v1::{GetRequest, GetResponse, Indicator, PublishRequest, RetractRequest, Tlp};
use prost::Message;

async fn peers(member: &MemberDir, endpoint: &str) -> Result<BTreeMap<String, serde_json::Value>> {
    cordon_integration_tests::peer_statuses(member, endpoint).await
}

/// A uint64 of proto3 JSON (a string), or 0 when absent.
fn number(value: &serde_json::Value) -> u64 {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .or_else(|| value.as_u64())
        .unwrap_or(0)
}

/// Waits until every peer of `member` is connected with no lag and a cursor of
/// at least `at_least` for the peers named there; returns that status.
async fn caught_up(
    member: &MemberDir,
    endpoint: &str,
    at_least: &[(&str, u64)],
) -> Result<BTreeMap<String, serde_json::Value>> {
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let status = peers(member, endpoint).await?;
        let done = !status.is_empty()
            && status.values().all(|peer| {
                peer["state"] == "connected"
                    && number(&peer["lag"]) == 0
                    && number(&peer["peerHead"]) > 0
            })
            && at_least.iter().all(|(peer, cursor)| {
                status
                    .get(*peer)
                    .is_some_and(|status| number(&status["cursor"]) >= *cursor)
            });
        if done {
            return Ok(status);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{} did not catch up with its peers ({at_least:?}) in {:?}: {status:?}",
                member.member,
                patience()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The ids of the indicators that `identity` receives from the gateway at `endpoint`,
/// failing if any arrives twice.
async fn received_ids(endpoint: &str, identity: &Path) -> Result<HashSet<String>> {
    let events = read_all(endpoint, identity, 0, 0).await?;
    let mut ids = HashSet::new();
    for (sequence, indicator, _) in published(&events) {
        ensure!(
            ids.insert(indicator.id.clone()),
            "indicator {} delivered twice (again at {sequence})",
            indicator.id
        );
    }
    Ok(ids)
}

async fn get(endpoint: &str, identity: &Path, id: &str) -> Result<GetResponse, tonic::Status> {
    let mut client = indicator_client(endpoint, identity)
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    client
        .get(GetRequest { id: id.to_string() })
        .await
        .map(tonic::Response::into_inner)
}

async fn publish(
    endpoint: &str,
    identity: &Path,
    indicators: Vec<Indicator>,
) -> Result<Vec<(String, u64)>> {
    let mut client = indicator_client(endpoint, identity).await?;
    let accepted = client
        .publish(PublishRequest {
            indicators,
            ..Default::default()
        })
        .await?
        .into_inner()
        .accepted;
    Ok(accepted
        .into_iter()
        .map(|item| (item.id, item.sequence))
        .collect())
}

/// GH -> NG -> SN, SN also follows GH (a triangle) and GH follows SN (a cycle
/// GH -> NG -> SN -> GH). GREEN travels everywhere with GH's signature; AMBER
/// stops at its first recipient; every indicator is held once and nothing loops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_travels_with_its_signature_amber_stops_and_nothing_loops() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria, senegal] = &federation.members(&["GH", "NG", "SN"])?[..] else {
        bail!("three members")
    };
    let endpoints: Vec<String> = [ghana, nigeria, senegal]
        .iter()
        .map(|member| member.fix_listen_port())
        .collect::<Result<_>>()?;
    let (gh_endpoint, ng_endpoint, sn_endpoint) = (&endpoints[0], &endpoints[1], &endpoints[2]);
    nigeria.follow(ghana, gh_endpoint)?;
    senegal.follow(nigeria, ng_endpoint)?;
    senegal.follow(ghana, gh_endpoint)?;
    ghana.follow(senegal, sn_endpoint)?;
    // NG's board would share AMBER entities with SN: only the hard floor stops
    // GH's AMBER indicator at NG.
    let data_path = nigeria.dir.join("policy").join("data.json");
    let mut data: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&data_path)?)?;
    data["agreements"]["SN"] = serde_json::json!({"amber_kinds": ["entity"]});
    std::fs::write(&data_path, data.to_string())?;
    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let sn = senegal.start(&[]).await?;

    let gh_customs = federation.identity("GH/customs")?;
    let ng_customs = federation.identity("NG/customs")?;
    let sn_police = federation.identity("SN/police")?;
    // GH's reference policy: GREEN to every member, AMBER entities to NG (agreement).
    let from_ghana = publish(
        &gh.endpoint,
        &gh_customs,
        vec![
            vessel(Tlp::Green, "green from GH".into()),
            broker(Tlp::Amber, "amber from GH".into()),
        ],
    )
    .await?;
    let (green, amber) = (from_ghana[0].0.clone(), from_ghana[1].0.clone());
    let from_nigeria = publish(
        &ng.endpoint,
        &ng_customs,
        vec![vessel(Tlp::Green, "green from NG".into())],
    )
    .await?;
    let nigerian_green = from_nigeria[0].0.clone();

    caught_up(nigeria, &ng.endpoint, &[("GH", 2)]).await?;
    caught_up(senegal, &sn.endpoint, &[("GH", 2), ("NG", 3)]).await?;
    let gh_peers = caught_up(ghana, &gh.endpoint, &[("SN", 2)]).await?;

    // Each gateway's own agency sees exactly what its gateway holds, once.
    let at_ng = received_ids(&ng.endpoint, &ng_customs).await?;
    assert_eq!(
        at_ng,
        HashSet::from([green.clone(), amber.clone(), nigerian_green.clone()])
    );
    let at_sn = received_ids(&sn.endpoint, &sn_police).await?;
    assert_eq!(
        at_sn,
        HashSet::from([green.clone(), nigerian_green.clone()]),
        "the AMBER indicator must stop at NG"
    );
    let at_gh = received_ids(&gh.endpoint, &gh_customs).await?;
    assert_eq!(
        at_gh,
        HashSet::from([green.clone(), amber.clone(), nigerian_green.clone()])
    );
    // NG's green reached GH over two hops (NG -> SN -> GH) with NG's signature intact.
    let relayed = get(&gh.endpoint, &gh_customs, &nigerian_green)
        .await?
        .indicator
        .context("indicator")?;
    assert_eq!(relayed.originator, "NG");
    assert_eq!(number(&gh_peers["SN"]["stored"]), 1);
    // GH's green at SN, arrived by two paths, verifies against GH's key.
    let at_senegal = get(&sn.endpoint, &sn_police, &green)
        .await?
        .indicator
        .context("indicator")?;
    let gh_key = hex_key(&ghana.public_key()?)?;
    cordon_gateway::signing::verify(&at_senegal, "GH", &gh_key)?;
    let sn_peers = peers(senegal, &sn.endpoint).await?;
    assert_eq!(
        number(&sn_peers["GH"]["stored"]) + number(&sn_peers["NG"]["stored"]),
        2,
        "two indicators stored at SN, whatever the path: {sn_peers:?}"
    );
    assert!(
        number(&sn_peers["GH"]["duplicates"]) + number(&sn_peers["NG"]["duplicates"]) >= 1,
        "GH's green reached SN twice and was stored once: {sn_peers:?}"
    );

    // Nothing loops: after everything settled, the feeds hold exactly what was
    // published and received, and stay so.
    for (member, endpoint, expected) in [
        (ghana, &gh.endpoint, 3),
        (nigeria, &ng.endpoint, 3),
        (senegal, &sn.endpoint, 2),
    ] {
        let status = caught_up(member, endpoint, &[]).await?;
        let own_head = read_all(endpoint, &member.identity(), 0, 0).await?;
        let last = own_head.last().map_or(0, |event| event.sequence);
        assert_eq!(
            last, expected,
            "{}'s feed holds {expected} events: {status:?}",
            member.member
        );
    }
    // AMBER never left NG, and it was the hard floor, not NG's policy (which would share
    // AMBER entities with SN), that kept it: NG's decision log says so.
    let decisions = decisions(nigeria, &ng.endpoint, &amber, "SN").await?;
    assert!(
        !decisions.is_empty(),
        "NG decided the AMBER indicator for SN"
    );
    for decision in &decisions {
        // proto3 JSON leaves a false `allow` out.
        assert_ne!(decision["allow"], true, "{decision}");
        assert!(
            decision["reasons"]
                .to_string()
                .contains("hard floor: third-party rule"),
            "{decision}"
        );
    }

    for gateway in [gh, ng, sn] {
        gateway.stop().await?;
    }
    Ok(())
}

/// `cordon decisions` at `member`'s gateway for one indicator and recipient, as JSON.
async fn decisions(
    member: &MemberDir,
    endpoint: &str,
    indicator: &str,
    recipient: &str,
) -> Result<Vec<serde_json::Value>> {
    let identity = member.identity();
    let args: Vec<String> = [
        "decisions",
        "--endpoint",
        endpoint,
        "--identity",
        identity.to_str().unwrap_or_default(),
        "--indicator",
        indicator,
        "--recipient",
        recipient,
    ]
    .map(String::from)
    .to_vec();
    let output = tokio::task::spawn_blocking(move || {
        cordon(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await??;
    Ok(output
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

fn hex_key(text: &str) -> Result<Vec<u8>> {
    cordon_gateway::signing::parse_public_key(text).map_err(anyhow::Error::msg)
}

/// NG's database is tampered with: an altered copy of GH's indicator, an
/// indicator claiming GH signed by NG's key, an unsigned one claiming GH, and a
/// retraction of GH's indicator that GH never signed. SN follows NG and stores
/// none of them, logs each, and keeps the genuine indicator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_and_forged_items_are_refused_and_logged() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria, senegal] = &federation.members(&["GH", "NG", "SN"])?[..] else {
        bail!("three members")
    };
    let gh_endpoint = ghana.fix_listen_port()?;
    let ng_endpoint = nigeria.fix_listen_port()?;
    nigeria.follow(ghana, &gh_endpoint)?;
    senegal.follow(nigeria, &ng_endpoint)?;
    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let gh_customs = federation.identity("GH/customs")?;
    let genuine = publish(
        &gh.endpoint,
        &gh_customs,
        vec![vessel(Tlp::Green, "genuine".into())],
    )
    .await?[0]
        .0
        .clone();
    caught_up(nigeria, &ng.endpoint, &[("GH", 1)]).await?;
    ng.stop().await?;

    // The attacker controls NG's database and NG's signing key, not GH's key.
    let store = cordon_storage::Store::connect(&nigeria.sqlite_url()).await?;
    let stored = store
        .indicator(&genuine)
        .await?
        .context("genuine held at NG")?;
    let original = Indicator::decode(stored.payload.as_slice())?;
    let mut altered = original.clone();
    altered.id = "0196f1a2-0000-7000-8000-00000000a17e".into();
    altered.narrative = "altered by NG".into();
    let ng_key = cordon_gateway::signing::SigningKey::load(
        &nigeria.identity().join("signing-key.pem"),
        "NG",
    )?;
    let mut claimed = original.clone();
    claimed.id = "0196f1a2-0000-7000-8000-00000000c1a1".into();
    claimed.narrative = "claims GH, signed by NG".into();
    ng_key.sign(&mut claimed)?;
    let mut unsigned = original.clone();
    unsigned.id = "0196f1a2-0000-7000-8000-0000000005a9".into();
    unsigned.signature = None;
    let forged: Vec<Indicator> = vec![altered, claimed, unsigned];
    let rows = forged
        .iter()
        .map(|indicator| cordon_storage::NewIndicator {
            id: indicator.id.clone(),
            originator: "GH".into(),
            kind: "vessel".into(),
            created_micros: 1_790_000_000_000_000,
            supersedes: None,
            via: Some("GH".into()),
            payload: indicator.encode_to_vec(),
        })
        .collect();
    store.publish(rows).await?;
    // A retraction of GH's genuine indicator with a signature GH never made.
    let mut fake_retraction = cordon_proto::v1::Retracted {
        indicator_id: genuine.clone(),
        originator: "GH".into(),
        reason: "forged retraction".into(),
        signature: None,
    };
    ng_key.sign_retraction(&mut fake_retraction)?;
    let signature = fake_retraction
        .signature
        .as_ref()
        .map(Message::encode_to_vec);
    store
        .retract(
            &genuine,
            "forged retraction",
            1_790_000_000_000_000,
            signature.as_deref(),
        )
        .await?;
    store.close().await;

    let ng = nigeria.start(&[]).await?;
    let sn = senegal.start(&[]).await?;
    // NG's feed: genuine (1), three forgeries (2-4), the retraction (5).
    let status = caught_up(senegal, &sn.endpoint, &[("NG", 5)]).await?;
    assert_eq!(number(&status["NG"]["refused"]), 4, "{status:?}");
    assert_eq!(number(&status["NG"]["stored"]), 1, "{status:?}");
    let sn_police = federation.identity("SN/police")?;
    assert_eq!(
        received_ids(&sn.endpoint, &sn_police).await?,
        HashSet::from([genuine.clone()])
    );
    let held = get(&sn.endpoint, &sn_police, &genuine).await?;
    assert!(
        !held.retracted,
        "a retraction GH never signed must not apply"
    );
    let log = sn.log_text();
    for indicator in &forged {
        assert!(
            log.lines()
                .any(|line| line.contains("refused an item from a peer")
                    && line.contains(&indicator.id)),
            "SN's log must name refused {}: {log}",
            indicator.id
        );
    }
    assert!(log.contains("retraction signature"), "{log}");
    for gateway in [gh, ng, sn] {
        gateway.stop().await?;
    }
    Ok(())
}

/// GH publishes 10,000 indicators while NG follows; NG is killed with SIGKILL
/// part-way and restarted, then stays down while GH publishes more, and GH is
/// itself killed and restarted: NG ends with every indicator exactly once and
/// `cordon peers` shows its lag back at zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_mid_stream_ends_with_everything_once() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria] = &federation.members(&["GH", "NG"])?[..] else {
        bail!("two members")
    };
    let gh_endpoint = ghana.fix_listen_port()?;
    nigeria.fix_listen_port()?;
    nigeria.follow(ghana, &gh_endpoint)?;
    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let gh_customs = federation.identity("GH/customs")?;
    let ng_customs = federation.identity("NG/customs")?;

    // GH publishes the stream in the background while NG follows it live.
    let publisher = tokio::spawn({
        let endpoint = gh.endpoint.clone();
        let identity = gh_customs.clone();
        async move {
            let mut ids = HashSet::new();
            for batch in 0..10 {
                let indicators = (0..1000)
                    .map(|item| vessel(Tlp::Green, format!("stream {batch}-{item}")))
                    .collect();
                ids.extend(
                    publish(&endpoint, &identity, indicators)
                        .await?
                        .into_iter()
                        .map(|(id, _)| id),
                );
            }
            anyhow::Ok(ids)
        }
    });
    // SIGKILL NG once it has stored part of the stream.
    wait_until("NG to store part of the stream", || {
        let fetched = peers(nigeria, &ng.endpoint);
        async move {
            let status = fetched.await?;
            let cursor = status.get("GH").map_or(0, |peer| number(&peer["cursor"]));
            Ok((cursor >= 2000, format!("cursor {cursor}")))
        }
    })
    .await?;
    ng.kill().await?;
    let store = cordon_storage::Store::connect(&nigeria.sqlite_url()).await?;
    let cursor_at_kill = store.peer_cursor("GH").await?;
    let held_at_kill = store.head().await?;
    store.close().await;
    // What NG stored is exactly what its cursor says it read: nothing half-written.
    assert_eq!(
        held_at_kill, cursor_at_kill,
        "one event per indicator, cursor and items in one transaction"
    );
    eprintln!("NG killed at cursor {cursor_at_kill} of 10000");
    let ng_running = nigeria.start(&[]).await?;
    let mut expected = publisher.await??;
    caught_up(nigeria, &ng_running.endpoint, &[("GH", 10_000)]).await?;
    assert_eq!(
        received_ids(&ng_running.endpoint, &ng_customs).await?,
        expected
    );

    // NG down for a while: GH publishes meanwhile; GH itself crashes and comes back.
    ng_running.kill().await?;
    for (id, _) in publish(
        &gh.endpoint,
        &gh_customs,
        (0..500)
            .map(|item| vessel(Tlp::Green, format!("while NG was down {item}")))
            .collect(),
    )
    .await?
    {
        expected.insert(id);
    }
    gh.kill().await?;
    let ng_running = nigeria.start(&[]).await?;
    // NG comes up with GH down: its follower backs off and says why.
    wait_until("NG to report that GH is unreachable", || {
        let fetched = peers(nigeria, &ng_running.endpoint);
        async move {
            let status = fetched.await?;
            let peer = status.get("GH").cloned().unwrap_or_default();
            let error = peer["lastError"].as_str().unwrap_or_default().to_string();
            Ok((peer["state"] != "connected" && !error.is_empty(), error))
        }
    })
    .await?;
    let gh = ghana.start(&[]).await?;
    let status = caught_up(nigeria, &ng_running.endpoint, &[("GH", 10_500)]).await?;
    assert_eq!(number(&status["GH"]["lag"]), 0);
    assert_eq!(number(&status["GH"]["cursor"]), 10_500, "{status:?}");
    assert_eq!(
        received_ids(&ng_running.endpoint, &ng_customs).await?,
        expected
    );
    assert_eq!(expected.len(), 10_500);
    ng_running.stop().await?;
    gh.stop().await
}

/// A retraction at GH reaches NG and, relayed by NG, SN; a revision marks the
/// old indicator superseded at both. (The triangle test covers two paths.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retractions_and_revisions_reach_every_holder() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria, senegal] = &federation.members(&["GH", "NG", "SN"])?[..] else {
        bail!("three members")
    };
    let gh_endpoint = ghana.fix_listen_port()?;
    let ng_endpoint = nigeria.fix_listen_port()?;
    // A chain: what reaches SN is relayed by NG, retraction and revision included.
    nigeria.follow(ghana, &gh_endpoint)?;
    senegal.follow(nigeria, &ng_endpoint)?;
    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let sn = senegal.start(&[]).await?;
    let gh_customs = federation.identity("GH/customs")?;
    let holders = [
        (&ng, federation.identity("NG/customs")?),
        (&sn, federation.identity("SN/police")?),
    ];

    let published = publish(
        &gh.endpoint,
        &gh_customs,
        vec![
            vessel(Tlp::Green, "to be retracted".into()),
            vessel(Tlp::Green, "to be revised".into()),
        ],
    )
    .await?;
    let (withdrawn, old) = (published[0].0.clone(), published[1].0.clone());
    for (gateway, identity) in &holders {
        wait_until("the indicators to arrive", || async {
            let ids = received_ids(&gateway.endpoint, identity).await?;
            Ok((
                ids.contains(&withdrawn) && ids.contains(&old),
                format!("{ids:?}"),
            ))
        })
        .await?;
    }

    let mut client = indicator_client(&gh.endpoint, &gh_customs).await?;
    client
        .retract(RetractRequest {
            id: withdrawn.clone(),
            reason: "mistaken identity".into(),
        })
        .await?;
    let mut revision = vessel(Tlp::Green, "revised".into());
    revision.supersedes = old.clone();
    let new = publish(&gh.endpoint, &gh_customs, vec![revision]).await?[0]
        .0
        .clone();

    for (gateway, identity) in &holders {
        wait_until("the retraction and the revision to arrive", || async {
            let retracted = get(&gateway.endpoint, identity, &withdrawn)
                .await?
                .retracted;
            let superseded_by = get(&gateway.endpoint, identity, &old).await?.superseded_by;
            Ok((
                retracted && superseded_by == new,
                format!("retracted {retracted}, superseded by {superseded_by:?}"),
            ))
        })
        .await?;
        // The retraction reached the agency too, once, as an event of its feed.
        let events = read_all(&gateway.endpoint, identity, 0, 0).await?;
        let retractions = events
            .iter()
            .filter(|event| {
                matches!(&event.body, Some(cordon_proto::v1::event::Body::Retracted(retracted)) if retracted.indicator_id == withdrawn)
            })
            .count();
        assert_eq!(retractions, 1);
    }
    for gateway in [gh, ng, sn] {
        gateway.stop().await?;
    }
    Ok(())
}

/// A gateway answering at a peer's address with another member's (valid)
/// certificate is refused in the TLS handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_a_gateway_that_is_not_its_peer() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria, senegal] = &federation.members(&["GH", "NG", "SN"])?[..] else {
        bail!("three members")
    };
    // NG believes GH is at SN's address.
    let sn_endpoint = senegal.fix_listen_port()?;
    nigeria.follow(ghana, &sn_endpoint)?;
    let sn = senegal.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    wait_until("NG to refuse the impostor", || {
        let fetched = peers(nigeria, &ng.endpoint);
        async move {
            let status = fetched.await?;
            let error = status
                .get("GH")
                .and_then(|peer| peer["lastError"].as_str())
                .unwrap_or_default()
                .to_string();
            Ok((error.contains("not the expected gateway GH"), error))
        }
    })
    .await?;
    let status = peers(nigeria, &ng.endpoint).await?;
    assert_ne!(status["GH"]["state"], "connected");
    assert_eq!(number(&status["GH"]["cursor"]), 0);
    // And peer status is not for other members.
    let foreign = senegal.identity();
    let refused = tokio::task::spawn_blocking({
        let endpoint = ng.endpoint.clone();
        move || {
            cordon(&[
                "peers",
                "--endpoint",
                &endpoint,
                "--identity",
                foreign.to_str().unwrap_or_default(),
            ])
        }
    })
    .await?;
    let error = format!(
        "{:#}",
        refused.expect_err("SN may not read NG's peer status")
    );
    assert!(error.contains("peer status is for member NG"), "{error}");
    ng.stop().await?;
    sn.stop().await
}

/// An id already held here by a different indicator is not taken over: the
/// indicator that arrives later under it is refused and logged, not counted as
/// the same one by another path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_held_by_another_indicator_is_refused_not_replaced() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria] = &federation.members(&["GH", "NG"])?[..] else {
        bail!("two members")
    };
    let gh_endpoint = ghana.fix_listen_port()?;
    nigeria.follow(ghana, &gh_endpoint)?;
    let taken = "0196f1a2-0000-7000-8000-0000000007a7";
    // NG already holds an indicator of another member under that id.
    let store = cordon_storage::Store::connect(&nigeria.sqlite_url()).await?;
    let mut squatter = vessel(Tlp::Green, "held first".into());
    squatter.id = taken.into();
    squatter.originator = "SN".into();
    store
        .publish(vec![cordon_storage::NewIndicator {
            id: taken.into(),
            originator: "SN".into(),
            kind: "vessel".into(),
            created_micros: 1_790_000_000_000_000,
            supersedes: None,
            via: Some("SN".into()),
            payload: squatter.encode_to_vec(),
        }])
        .await?;
    store.close().await;

    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let mut genuine = vessel(Tlp::Green, "GH's own".into());
    genuine.id = taken.into();
    publish(
        &gh.endpoint,
        &federation.identity("GH/customs")?,
        vec![genuine],
    )
    .await?;
    let status = caught_up(nigeria, &ng.endpoint, &[("GH", 1)]).await?;
    assert_eq!(number(&status["GH"]["refused"]), 1, "{status:?}");
    assert_eq!(number(&status["GH"]["duplicates"]), 0, "{status:?}");
    assert_eq!(number(&status["GH"]["stored"]), 0, "{status:?}");
    let held = get(&ng.endpoint, &federation.identity("NG/customs")?, taken)
        .await?
        .indicator
        .context("indicator")?;
    assert_eq!(held.narrative, "held first");
    let log = ng.log_text();
    assert!(
        log.lines()
            .any(|line| line.contains("refused an item from a peer")
                && line.contains(taken)
                && line.contains("already holds this id")),
        "{log}"
    );
    ng.stop().await?;
    gh.stop().await
}

/// A member's key retired under `key_windows` (its `not_after` passed): what it signs now is
/// refused by the follower and logged, nothing of it stored; a key in its window is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indicators_signed_outside_a_keys_window_are_refused() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria] = &federation.members(&["GH", "NG"])?[..] else {
        bail!("two members")
    };
    let gh_endpoint = ghana.fix_listen_port()?;
    nigeria.follow(ghana, &gh_endpoint)?;
    // NG retired GH's key in 2025 (as if it had leaked): later signatures are not GH's.
    let gh_key = ghana.public_key()?;
    let config = std::fs::read_to_string(nigeria.config())?;
    let listed = format!("signing_keys = [\"{gh_key}\"]");
    assert!(config.contains(&listed), "{config}");
    std::fs::write(
        nigeria.config(),
        config.replacen(
            &listed,
            &format!(
                "{listed}\nkey_windows = [{{ key = \"{gh_key}\", not_after = \"2025-12-31T23:59:59Z\" }}]"
            ),
            1,
        ),
    )?;
    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let published = publish(
        &gh.endpoint,
        &federation.identity("GH/customs")?,
        vec![vessel(Tlp::Green, "signed with a retired key".into())],
    )
    .await?;
    let status = caught_up(nigeria, &ng.endpoint, &[("GH", 1)]).await?;
    assert_eq!(number(&status["GH"]["refused"]), 1, "{status:?}");
    assert_eq!(number(&status["GH"]["stored"]), 0, "{status:?}");
    let log = ng.log_text();
    assert!(
        log.lines()
            .any(|line| line.contains("refused an item from a peer")
                && line.contains("outside the key's validity window")),
        "{log}"
    );
    let missing = get(
        &ng.endpoint,
        &federation.identity("NG/customs")?,
        &published[0].0,
    )
    .await;
    assert_eq!(
        missing.map(|_| ()).map_err(|status| status.code()),
        Err(tonic::Code::NotFound)
    );
    ng.stop().await?;
    gh.stop().await
}

/// What GH's informant is called in the tests of selective disclosure: it must never reach
/// NG's or SN's database files.
const INFORMANT: &str = "informant-canary-5f3c9e";

/// A GREEN vessel with a source block and a few fields the tampering tests can change.
fn sourced_vessel(narrative: &str) -> Indicator {
    let mut indicator = vessel(Tlp::Green, narrative.to_string());
    indicator.tags = vec!["tema".into(), "rifles".into()];
    indicator.source = Some(cordon_proto::v1::Source {
        description: INFORMANT.into(),
        reliability: "B".into(),
        credibility: 2,
        ..Default::default()
    });
    indicator
}

/// GH, NG following GH, SN following NG; GH's board trusts NG at 2, below what the
/// reference policy's source needs (3), so GH withholds `source` from NG.
fn source_withheld_from_ng(federation: &Federation) -> Result<Vec<MemberDir>> {
    let members = federation.members(&["GH", "NG", "SN"])?;
    let [ghana, nigeria, senegal] = &members[..] else {
        bail!("three members")
    };
    let gh_endpoint = ghana.fix_listen_port()?;
    let ng_endpoint = nigeria.fix_listen_port()?;
    nigeria.follow(ghana, &gh_endpoint)?;
    senegal.follow(nigeria, &ng_endpoint)?;
    let data_path = ghana.dir.join("policy").join("data.json");
    let mut data: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&data_path)?)?;
    data["recipients"]["NG"]["trust"] = serde_json::json!(2);
    std::fs::write(&data_path, data.to_string())?;
    Ok(members)
}

/// Every byte of a SQLite database: the file and its write-ahead log.
fn database_bytes(member: &MemberDir) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for name in ["cordon.db", "cordon.db-wal"] {
        let path = member.dir.join(name);
        if path.exists() {
            bytes.extend(std::fs::read(&path)?);
        }
    }
    ensure!(!bytes.is_empty(), "{} has no database", member.member);
    Ok(bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// GH's policy redacts `source` for NG (trust 2, below 3): NG stores GH's indicator with
/// GH's verified signature and without the source, its agency receives it with the
/// withheld paths named, SN following NG gets it relayed and verifies it against GH's key,
/// and neither the informant nor its salt reaches NG's or SN's database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_release_reaches_partners_and_still_verifies() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria, senegal] = &source_withheld_from_ng(&federation)?[..] else {
        bail!("three members")
    };
    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let sn = senegal.start(&[]).await?;

    let gh_customs = federation.identity("GH/customs")?;
    let id = publish(
        &gh.endpoint,
        &gh_customs,
        vec![sourced_vessel("seen at Tema")],
    )
    .await?[0]
        .0
        .clone();
    // GH's own agency sees everything, salts included.
    let whole = get(&gh.endpoint, &gh_customs, &id)
        .await?
        .indicator
        .context("indicator at GH")?;
    let informant_salt = whole
        .signature
        .as_ref()
        .and_then(|signature| {
            signature
                .fields
                .iter()
                .find(|field| field.path == "source.description")
        })
        .map(|field| field.salt.clone())
        .context("GH signs a commitment to source.description")?;
    assert_eq!(informant_salt.len(), 16);

    let status = caught_up(nigeria, &ng.endpoint, &[("GH", 1)]).await?;
    assert_eq!(number(&status["GH"]["stored"]), 1, "{status:?}");
    // On the wire from GH to NG's gateway: the source's commitments without their salts.
    let sent = read_all(&gh.endpoint, &nigeria.identity(), 0, 0).await?;
    let (_, sent, _) = published(&sent)
        .into_iter()
        .find(|(_, indicator, _)| indicator.id == id)
        .context("GH releases the indicator to NG")?;
    assert!(sent.source.is_none());
    let sent_fields = &sent.signature.as_ref().context("signed")?.fields;
    assert!(
        sent_fields
            .iter()
            .any(|field| field.path == "source.description")
    );
    for field in sent_fields {
        assert_eq!(
            field.salt.is_empty(),
            field.path.starts_with("source."),
            "{field:?}"
        );
    }
    caught_up(senegal, &sn.endpoint, &[("NG", 1)]).await?;
    let gh_key = hex_key(&ghana.public_key()?)?;
    let withheld = [
        "source.credibility",
        "source.description",
        "source.reliability",
    ];
    for (member, endpoint, agency) in [
        (nigeria, &ng.endpoint, "NG/customs"),
        (senegal, &sn.endpoint, "SN/police"),
    ] {
        let identity = federation.identity(agency)?;
        let response = get(endpoint, &identity, &id).await?;
        let held = response.indicator.context("indicator")?;
        assert!(held.source.is_none(), "{agency}: {held:?}");
        assert_eq!(held.narrative, "seen at Tema");
        cordon_gateway::signing::verify(&held, "GH", &gh_key)
            .with_context(|| format!("GH's signature at {}", member.member))?;
        for path in withheld {
            assert!(
                response.redacted.iter().any(|named| named == path),
                "{agency} is told {path} was withheld: {:?}",
                response.redacted
            );
        }
        // Subscribe names the same paths beside the indicator.
        let events = read_all(endpoint, &identity, 0, 0).await?;
        let (_, _, redacted) = published(&events)
            .into_iter()
            .find(|(_, indicator, _)| indicator.id == id)
            .context("the indicator in the feed")?;
        assert_eq!(redacted, response.redacted);
    }
    // GH's decision log says what was withheld from NG, and why.
    let decisions = decisions(ghana, &gh.endpoint, &id, "NG").await?;
    ensure!(!decisions.is_empty(), "GH decided {id} for NG");
    for decision in &decisions {
        assert_eq!(decision["allow"], true, "{decision}");
        assert_eq!(
            decision["redact"],
            serde_json::json!(["source"]),
            "{decision}"
        );
    }
    for gateway in [gh, ng, sn] {
        gateway.stop().await?;
    }
    for member in [nigeria, senegal] {
        let store = cordon_storage::Store::connect(&member.sqlite_url()).await?;
        let stored = store.indicator(&id).await?.context("held")?;
        store.close().await;
        let held = Indicator::decode(stored.payload.as_slice())?;
        assert!(held.source.is_none());
        cordon_gateway::signing::verify(&held, "GH", &gh_key)?;
        let bytes = database_bytes(member)?;
        assert!(
            !contains(&bytes, INFORMANT.as_bytes()),
            "the informant reached {}'s database",
            member.member
        );
        assert!(
            !contains(&bytes, &informant_salt),
            "the informant's salt reached {}'s database",
            member.member
        );
    }
    assert!(
        contains(&database_bytes(ghana)?, INFORMANT.as_bytes()),
        "the canary is found where it is held"
    );
    Ok(())
}

/// NG's database is tampered with after it received GH's indicators with the source
/// withheld: a disclosed value changed, two salts swapped, a field added, and a commitment
/// with its value moved from one indicator to another. SN, following NG, refuses each
/// with a logged reason and stores only the untouched one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_disclosures_are_refused_and_logged() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria, senegal] = &source_withheld_from_ng(&federation)?[..] else {
        bail!("three members")
    };
    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let gh_customs = federation.identity("GH/customs")?;
    let ids: Vec<String> = publish(
        &gh.endpoint,
        &gh_customs,
        [
            "untouched",
            "altered",
            "salts swapped",
            "field added",
            "moved into",
        ]
        .into_iter()
        .map(sourced_vessel)
        .collect(),
    )
    .await?
    .into_iter()
    .map(|(id, _)| id)
    .collect();
    caught_up(nigeria, &ng.endpoint, &[("GH", 5)]).await?;
    ng.stop().await?;
    gh.stop().await?;

    // The attacker controls NG's database, not GH's key.
    let store = cordon_storage::Store::connect(&nigeria.sqlite_url()).await?;
    let mut held = Vec::new();
    for id in &ids {
        let stored = store.indicator(id).await?.context("held at NG")?;
        held.push(Indicator::decode(stored.payload.as_slice())?);
    }
    store.close().await;
    let fields = |indicator: &mut Indicator| -> Result<Vec<cordon_proto::v1::FieldCommitment>> {
        Ok(indicator
            .signature
            .as_mut()
            .context("signed")?
            .fields
            .clone())
    };
    let set_fields = |indicator: &mut Indicator, fields| -> Result<()> {
        indicator.signature.as_mut().context("signed")?.fields = fields;
        Ok(())
    };
    let mut altered = held[1].clone();
    altered.narrative = "altered at NG".into();
    let mut swapped = held[2].clone();
    let mut commitments = fields(&mut swapped)?;
    let narrative = commitments
        .iter()
        .position(|field| field.path == "narrative")
        .context("narrative")?;
    let tags = commitments
        .iter()
        .position(|field| field.path == "tags")
        .context("tags")?;
    let salt = commitments[narrative].salt.clone();
    commitments[narrative].salt = commitments[tags].salt.clone();
    commitments[tags].salt = salt;
    set_fields(&mut swapped, commitments)?;
    let mut added = held[3].clone();
    if let Some(cordon_proto::v1::indicator::Kind::Vessel(vessel)) = added.kind.as_mut() {
        vessel.mmsi = "636012345".into();
    }
    // The narrative of "untouched", with its commitment and salt, moved into "moved into":
    // each disclosure matches its commitment, but GH never signed that list.
    let mut moved = held[4].clone();
    let donor = fields(&mut held[0].clone())?;
    let mut commitments = fields(&mut moved)?;
    for field in &mut commitments {
        if field.path == "narrative" {
            *field = donor
                .iter()
                .find(|donated| donated.path == "narrative")
                .context("donor narrative")?
                .clone();
        }
    }
    set_fields(&mut moved, commitments)?;
    moved.narrative = held[0].narrative.clone();
    let tampered = [
        (altered, "does not match its commitment"),
        (swapped, "does not match its commitment"),
        (added, "no commitment covers it"),
        (moved, "signature does not verify"),
    ];
    let pool = sqlx::SqlitePool::connect(&nigeria.sqlite_url()).await?;
    for (indicator, _) in &tampered {
        let payload = indicator.encode_to_vec();
        for statement in [
            "UPDATE indicators SET payload = ?1 WHERE id = ?2",
            "UPDATE events SET payload = ?1 WHERE indicator_id = ?2 AND event_type = 'published'",
        ] {
            let changed = sqlx::query(statement)
                .bind(&payload)
                .bind(&indicator.id)
                .execute(&pool)
                .await?
                .rows_affected();
            ensure!(changed == 1, "{statement} changed {changed} rows");
        }
    }
    pool.close().await;

    let ng = nigeria.start(&[]).await?;
    let sn = senegal.start(&[]).await?;
    let status = caught_up(senegal, &sn.endpoint, &[("NG", 5)]).await?;
    assert_eq!(number(&status["NG"]["refused"]), 4, "{status:?}");
    assert_eq!(number(&status["NG"]["stored"]), 1, "{status:?}");
    let sn_police = federation.identity("SN/police")?;
    assert_eq!(
        received_ids(&sn.endpoint, &sn_police).await?,
        HashSet::from([ids[0].clone()])
    );
    let log = sn.log_text();
    for (indicator, reason) in &tampered {
        assert!(
            log.lines()
                .any(|line| line.contains("refused an item from a peer")
                    && line.contains(&indicator.id)
                    && line.contains(reason)),
            "SN's log must refuse {} because it {reason}: {log}",
            indicator.id
        );
    }
    for gateway in [ng, sn] {
        gateway.stop().await?;
    }
    Ok(())
}
