//! The admin listener of a real `cordon serve`: `GET /metrics` over plain HTTP
//! on loopback, counting what was published and released, and nothing else.

use anyhow::{Context, Result, bail};
use cordon_integration_tests::{
    Federation, MemberDir, example_indicators, http, indicator_client, published, read_all,
    wait_until,
};
use cordon_proto::v1::{PublishRequest, SubscribeRequest, event};

async fn scrape(address: &str) -> Result<String> {
    let (status, headers, body) = http(address, "GET", "/metrics").await?;
    if status != 200 {
        bail!("GET /metrics answered {status}: {body}");
    }
    let content_type = headers
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .context("no content type")?;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type {content_type:?}"
    );
    Ok(body)
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn decisions(text: &str, outcome: &str, channel: &str) -> f64 {
    value(
        text,
        &format!(r#"cordon_release_decisions_total{{outcome="{outcome}",channel="{channel}"}}"#),
    )
    .unwrap_or_else(|| panic!("no decisions series for {outcome}/{channel} in\n{text}"))
}

/// Waits until the gateway at `admin` counts one open subscription, read up to the head.
async fn one_subscription_caught_up(admin: &str, what: &str) -> Result<()> {
    wait_until(what, || async {
        let text = scrape(admin).await?;
        let open = value(&text, "cordon_open_subscriptions");
        let lag = value(&text, "cordon_subscriber_lag_events");
        Ok((
            open == Some(1.0) && lag == Some(0.0),
            format!("open {open:?}, lag {lag:?}"),
        ))
    })
    .await
}

/// Adds `[admin] listen = "127.0.0.1:0"` to the member's config.
fn enable_admin(member: &MemberDir) -> Result<()> {
    let config = member.config();
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&config, text)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_serves_aggregate_metrics_only() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    enable_admin(&member)?;
    let gateway = member.start(&[]).await?;
    let admin = gateway
        .admin
        .clone()
        .context("serve did not report an admin address")?;
    assert!(admin.starts_with("127.0.0.1:"), "{admin}");

    // Before anything happens, every family is there at zero.
    let before = scrape(&admin).await?;
    assert_eq!(
        value(&before, "cordon_published_indicators_total"),
        Some(0.0)
    );
    assert_eq!(decisions(&before, "allowed", "federation"), 0.0);

    let customs = federation.identity("GH/customs")?;
    let examples = example_indicators()?;
    let accepted = indicator_client(&gateway.endpoint, &customs)
        .await?
        .publish(PublishRequest {
            indicators: examples.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .accepted;
    assert_eq!(accepted.len(), examples.len());

    // NG's gateway (channel "federation") receives some and not others: under
    // the reference policy the AMBER+STRICT line is a policy deny and the
    // source-protected line a hard-floor deny.
    let ng = federation.identity("NG")?;
    let events = read_all(&gateway.endpoint, &ng, 0, 0).await?;
    let released = published(&events).len();
    assert!(released > 0 && released < examples.len(), "{released}");

    // A following subscription stays open and catches up with the head.
    let mut follower = indicator_client(&gateway.endpoint, &customs).await?;
    let mut stream = follower
        .subscribe(SubscribeRequest {
            after: 0,
            follow: true,
            ..SubscribeRequest::default()
        })
        .await?
        .into_inner();
    loop {
        let event = stream.message().await?.context("stream ended")?;
        if let Some(event::Body::Checkpoint(checkpoint)) = event.body
            && event.sequence >= checkpoint.head
        {
            break;
        }
    }

    one_subscription_caught_up(&admin, "the open subscription to be counted and caught up").await?;
    // Nothing is published any more: the numbers stay where they are.
    let text = scrape(&admin).await?;

    assert_eq!(
        value(&text, "cordon_published_indicators_total"),
        Some(examples.len() as f64)
    );
    assert_eq!(
        decisions(&text, "allowed", "federation"),
        released as f64,
        "{text}"
    );
    let withheld = decisions(&text, "denied", "federation")
        + decisions(&text, "hard_floor", "federation")
        + decisions(&text, "failed_closed", "federation");
    assert_eq!(withheld, (examples.len() - released) as f64, "{text}");
    assert!(decisions(&text, "denied", "federation") >= 1.0, "{text}");
    assert!(
        decisions(&text, "hard_floor", "federation") >= 1.0,
        "{text}"
    );
    // GH/customs (an own agency: channel "subscribe") had everything but the
    // source-protected line, which its own policy decides inside the circle: such
    // decisions are not served, since they would tell how large circles are.
    assert!(decisions(&text, "allowed", "subscribe") >= 1.0, "{text}");
    assert!(!text.contains(r#"channel="circle""#), "{text}");
    assert_eq!(value(&text, "cordon_subscriber_max_lag_events"), Some(0.0));

    // Histograms have samples: one per served decision, none for decisions inside circles.
    let decided = value(&text, "cordon_policy_decision_seconds_count").context("count")?;
    let served: f64 = ["allowed", "denied", "hard_floor", "failed_closed"]
        .iter()
        .flat_map(|outcome| {
            ["subscribe", "federation"].map(|channel| decisions(&text, outcome, channel))
        })
        .sum();
    assert_eq!(decided, served, "{text}");
    // Every example for NG and for GH/customs, but the one decided inside the circle.
    assert!(decided >= (2 * examples.len() - 1) as f64, "{text}");
    assert_eq!(
        value(&text, r#"cordon_policy_decision_seconds_bucket{le="+Inf"}"#),
        Some(decided)
    );
    assert!(value(&text, "cordon_policy_decision_seconds_sum").context("sum")? > 0.0);
    assert_eq!(
        value(
            &text,
            r#"cordon_storage_commit_seconds_count{operation="publish"}"#
        ),
        Some(1.0)
    );
    assert!(
        value(
            &text,
            r#"cordon_storage_commit_seconds_count{operation="decisions"}"#
        )
        .context("decisions commits")?
            >= 1.0,
        "{text}"
    );

    // Aggregate counts only: nothing of the indicators themselves.
    for item in &accepted {
        assert!(
            !text.contains(&item.id),
            "metrics expose indicator {}",
            item.id
        );
    }
    // Nor who received them: no recipient is a label.
    assert!(
        !text.contains("GH/customs") && !text.contains("\"NG\""),
        "{text}"
    );

    // Nothing else is served.
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/metrics/extra"),
        ("GET", "/cordon.v1.IndicatorService/Subscribe"),
        ("POST", "/metrics"),
    ] {
        let (status, _, _) = http(&admin, method, path).await?;
        assert_eq!(status, 404, "{method} {path}");
    }

    drop(stream);
    gateway.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_table_there_is_no_admin_listener() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let gateway = member.start(&[]).await?;
    assert_eq!(gateway.admin, None);
    gateway.stop().await?;
    Ok(())
}

/// NG follows GH: NG's metrics show what its follower stored and its lag, and
/// GH's show the open federation subscription and what it released to NG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followers_counts_and_lag_are_exposed() -> Result<()> {
    let federation = Federation::new()?;
    let ghana = federation.member("GH")?;
    let nigeria = federation.member("NG")?;
    enable_admin(&ghana)?;
    enable_admin(&nigeria)?;
    nigeria.trust_member(&ghana)?;
    let gh = ghana.start(&[]).await?;
    nigeria.follow(&ghana, &gh.endpoint)?;
    let ng = nigeria.start(&[]).await?;
    let gh_admin = gh.admin.clone().context("GH admin address")?;
    let ng_admin = ng.admin.clone().context("NG admin address")?;

    let examples = example_indicators()?;
    let customs = federation.identity("GH/customs")?;
    indicator_client(&gh.endpoint, &customs)
        .await?
        .publish(PublishRequest {
            indicators: examples.clone(),
            ..Default::default()
        })
        .await?;
    // What GH releases to NG's gateway (asked as NG, apart from the follower).
    let ng_identity = federation.identity("NG")?;
    let expected = published(&read_all(&gh.endpoint, &ng_identity, 0, 0).await?).len();
    assert!(expected > 0, "GH releases nothing to NG");

    let stored = r#"cordon_peer_received_total{peer="GH",result="stored"}"#;
    let lag = r#"cordon_peer_lag_events{peer="GH"}"#;
    wait_until("NG to store what GH released and catch up", || {
        let admin = ng_admin.clone();
        async move {
            let text = scrape(&admin).await?;
            let (now_stored, now_lag) = (value(&text, stored), value(&text, lag));
            Ok((
                now_stored == Some(expected as f64) && now_lag == Some(0.0),
                format!("stored {now_stored:?}, lag {now_lag:?}"),
            ))
        }
    })
    .await?;
    let text = scrape(&ng_admin).await?;
    for result in ["duplicate", "refused", "retraction"] {
        let series = format!(r#"cordon_peer_received_total{{peer="GH",result="{result}"}}"#);
        assert_eq!(value(&text, &series), Some(0.0), "{series}\n{text}");
    }
    assert!(
        value(
            &text,
            r#"cordon_storage_commit_seconds_count{operation="receive"}"#
        )
        .context("receive commits")?
            >= 1.0,
        "{text}"
    );
    assert_eq!(value(&text, "cordon_published_indicators_total"), Some(0.0));

    // GH: NG's follower is an open subscription, caught up; its releases went
    // out on the federation channel.
    wait_until("GH to count NG's follower as open and caught up", || {
        let admin = gh_admin.clone();
        async move {
            let text = scrape(&admin).await?;
            let open = value(&text, "cordon_open_subscriptions");
            let lag = value(&text, "cordon_subscriber_max_lag_events");
            Ok((
                open == Some(1.0) && lag == Some(0.0),
                format!("open {open:?}, max lag {lag:?}"),
            ))
        }
    })
    .await?;
    let text = scrape(&gh_admin).await?;
    // Once for the follower, once for the read above.
    assert_eq!(
        decisions(&text, "allowed", "federation"),
        (2 * expected) as f64,
        "{text}"
    );
    ng.stop().await?;
    gh.stop().await?;
    Ok(())
}

/// One agency re-reading the feed in a loop is held to its quota, and its re-reads within the
/// quota add nothing to the decision log; past it every call is RESOURCE_EXHAUSTED, decides
/// nothing and stores no decision, and another identity is served as before; the refusals are
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identitys_rereads_and_gets_are_limited_without_starving_others() -> Result<()> {
    use cordon_proto::v1::policy_service_client::PolicyServiceClient;
    use cordon_proto::v1::{DecisionsRequest, GetRequest};

    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    enable_admin(&member)?;
    member.set_limit("subscribe_rereads_per_minute", 3)?;
    member.set_limit("gets_per_minute", 2)?;
    let gateway = member.start(&[]).await?;
    let admin = gateway.admin.clone().context("an admin address")?;
    let examples = example_indicators()?;
    let accepted = indicator_client(&gateway.endpoint, &federation.identity("GH/customs")?)
        .await?
        .publish(PublishRequest {
            indicators: examples.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .accepted;
    let head = accepted.last().context("accepted")?.sequence;
    let police = federation.identity("GH/police")?;
    let mut client = indicator_client(&gateway.endpoint, &police).await?;
    let reread = SubscribeRequest {
        after: 0,
        follow: false,
        kinds: Vec::new(),
        limit: 0,
    };
    let mut policy = PolicyServiceClient::new(
        cordon_gateway::cli::client::channel(&gateway.endpoint, &federation.identity("GH")?)
            .await?,
    );
    let mut decided_for_police = async || -> Result<usize> {
        let request = DecisionsRequest {
            recipient: "GH/police".into(),
            limit: 1000,
            ..Default::default()
        };
        Ok(policy
            .decisions(request)
            .await?
            .into_inner()
            .decisions
            .len())
    };

    // The quota: three re-reads, each deciding every event; only the first logs anything,
    // since the others decide the same under the same policy revision.
    let mut visible = Vec::new();
    for _ in 0..3 {
        let events = read_all(&gateway.endpoint, &police, 0, 0).await?;
        visible.push(published(&events).len());
    }
    assert!(
        visible[0] > 0 && visible.iter().all(|count| *count == visible[0]),
        "{visible:?}"
    );
    let logged = decided_for_police().await?;
    assert_eq!(logged, examples.len(), "the re-reads grew the decision log");
    // Then every re-read is refused before it decides anything.
    for _ in 0..10 {
        let refused = client.subscribe(reread.clone()).await.unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert!(refused.message().contains("try again in"), "{refused:?}");
    }
    assert_eq!(decided_for_police().await?, logged);
    // A subscription from the head is not a re-read.
    let mut from_head = client
        .subscribe(SubscribeRequest {
            after: head,
            ..reread.clone()
        })
        .await?
        .into_inner();
    while from_head.message().await?.is_some() {}
    // Another identity is not held back.
    let events = read_all(&gateway.endpoint, &federation.identity("CI")?, 0, 0).await?;
    assert!(!published(&events).is_empty());

    // Get: two, then refused.
    for _ in 0..2 {
        client
            .get(GetRequest {
                id: accepted[0].id.clone(),
            })
            .await?;
    }
    let refused = client
        .get(GetRequest {
            id: accepted[0].id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );

    let text = scrape(&admin).await?;
    assert_eq!(
        value(
            &text,
            r#"cordon_rate_limited_requests_total{call="subscribe_reread"}"#
        ),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"cordon_rate_limited_requests_total{call="get"}"#),
        Some(1.0),
        "{text}"
    );
    gateway.stop().await
}

/// Checkpoints do not mark where withheld events are: a reader with `limit = 1` and a kinds
/// filter gets the next event it may see, never a checkpoint at a withheld event's sequence,
/// and a follower that has read past a withheld event is not told of it before the next
/// event it may see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_do_not_mark_withheld_events() -> Result<()> {
    use cordon_integration_tests::vessel;
    use cordon_proto::v1::{IndicatorKind, Tlp};

    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    enable_admin(&member)?;
    let gateway = member.start(&[]).await?;
    let admin = gateway.admin.clone().context("an admin address")?;
    let mut customs =
        indicator_client(&gateway.endpoint, &federation.identity("GH/customs")?).await?;
    let mut publish = async |tlp: Tlp| -> Result<u64> {
        let accepted = customs
            .publish(PublishRequest {
                indicators: vec![vessel(tlp, format!("{tlp:?}"))],
                ..Default::default()
            })
            .await?
            .into_inner()
            .accepted;
        Ok(accepted[0].sequence)
    };
    // CI, a partner gateway, sees CLEAR and not RED.
    let mut sequences = Vec::new();
    for tlp in [Tlp::Clear, Tlp::Red, Tlp::Clear, Tlp::Red, Tlp::Clear] {
        sequences.push(publish(tlp).await?);
    }
    assert_eq!(sequences, vec![1, 2, 3, 4, 5]);
    let partner = federation.identity("CI")?;
    let mut client = indicator_client(&gateway.endpoint, &partner).await?;
    let one_vessel = |after: u64, follow: bool| SubscribeRequest {
        after,
        follow,
        kinds: vec![IndicatorKind::Vessel as i32],
        limit: if follow { 0 } else { 1 },
    };
    let describe = |event: &cordon_proto::v1::Event| match &event.body {
        Some(event::Body::Published(_)) => format!("published {}", event.sequence),
        Some(event::Body::Checkpoint(_)) => format!("checkpoint {}", event.sequence),
        other => format!("{other:?} {}", event.sequence),
    };
    for (after, expected) in [(1, "published 3"), (3, "published 5")] {
        let mut stream = client
            .subscribe(one_vessel(after, false))
            .await?
            .into_inner();
        let mut seen = Vec::new();
        while let Some(event) = stream.message().await? {
            seen.push(describe(&event));
        }
        assert_eq!(seen, vec![expected.to_string()], "after {after}");
    }

    // A follower, caught up at the head.
    let mut stream = client.subscribe(one_vessel(5, true)).await?.into_inner();
    let first = stream.message().await?.context("a first message")?;
    assert_eq!(describe(&first), "checkpoint 5");
    // A withheld event is stored and read past by the subscription...
    assert_eq!(publish(Tlp::Red).await?, 6);
    one_subscription_caught_up(&admin, "the follower to read past the withheld event").await?;
    // ...and the next thing the follower hears of is the next event it may see.
    assert_eq!(publish(Tlp::Clear).await?, 7);
    let next = stream.message().await?.context("the next message")?;
    assert_eq!(describe(&next), "published 7");
    gateway.stop().await
}
