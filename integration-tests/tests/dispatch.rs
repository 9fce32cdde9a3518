//! The release path's dispatcher against real `cordon serve` processes: caught-up streams of
//! one identity share each decision, a stalled stream holds no one back and still receives
//! everything once it reads again, and a gateway killed while it releases to ten subscribers
//! has stored the decision of every event any of them received.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, ensure};
use cordon_integration_tests::{
    Federation, clear_vessel, indicator_client, patience, publish_ids, wait_until,
};
use cordon_proto::v1::policy_service_client::PolicyServiceClient;
use cordon_proto::v1::{DecisionsRequest, Event, PublishRequest, SubscribeRequest, event};
use tokio::task::JoinHandle;

fn follow() -> SubscribeRequest {
    SubscribeRequest {
        after: 0,
        follow: true,
        kinds: Vec::new(),
        limit: 0,
    }
}

/// What one following stream has received: the sequence and id of each published event.
type Received = Arc<Mutex<Vec<(u64, String)>>>;

/// Follows the feed as `identity`, recording every published event, until the stream ends.
async fn follower(endpoint: &str, identity: &Path) -> Result<(Received, JoinHandle<Result<()>>)> {
    let mut client = indicator_client(endpoint, identity).await?;
    let mut stream = client.subscribe(follow()).await?.into_inner();
    let received: Received = Arc::default();
    let record = received.clone();
    let task = tokio::spawn(async move {
        while let Some(event) = stream.message().await? {
            record_published(&record, &event);
        }
        Ok(())
    });
    Ok((received, task))
}

fn record_published(received: &Received, event: &Event) {
    if let Some(event::Body::Published(published)) = &event.body
        && let Some(indicator) = &published.indicator
    {
        received
            .lock()
            .unwrap()
            .push((event.sequence, indicator.id.clone()));
    }
}

/// Every decision stored for `recipient`, page by page, as the gateway's own identity asks.
async fn decisions_for(
    endpoint: &str,
    gateway_identity: &Path,
    recipient: &str,
) -> Result<Vec<cordon_proto::v1::DecisionEntry>> {
    let mut admin = PolicyServiceClient::new(
        cordon_gateway::cli::client::channel(endpoint, gateway_identity).await?,
    );
    let mut all = Vec::new();
    loop {
        let (after_decision_id, after_time) = all
            .last()
            .map(|last: &cordon_proto::v1::DecisionEntry| (last.decision_id.clone(), last.at))
            .unwrap_or_default();
        let page = admin
            .decisions(DecisionsRequest {
                recipient: recipient.to_string(),
                after_decision_id,
                after_time,
                limit: 5_000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .decisions;
        let done = page.len() < 5_000;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_one_identity_share_decisions_and_a_stalled_stream_holds_no_one_back()
-> Result<()> {
    const BATCHES: usize = 45;
    const PER_BATCH: usize = 20;
    /// Batches published before the decisions are counted: by then every stream has
    /// caught up and joined the dispatcher.
    const WARM_UP: usize = 5;
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let gateway = member.start(&[]).await?;
    let police = federation.identity("GH/police")?;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(follower(&gateway.endpoint, &police).await?);
    }
    // Opened and never read until the end: its flow-control window fills and the gateway
    // cannot send it anything more.
    let mut stalled_client =
        indicator_client(&gateway.endpoint, &federation.identity("GH/customs")?).await?;
    let mut stalled = stalled_client.subscribe(follow()).await?.into_inner();

    let customs = federation.identity("GH/customs")?;
    let mut counted = HashSet::new();
    let mut published = 0;
    for batch in 0..BATCHES {
        let indicators = (0..PER_BATCH)
            .map(|item| clear_vessel(format!("batch {batch} item {item}")))
            .collect();
        let accepted = publish_ids(&gateway.endpoint, &customs, indicators).await?;
        published += accepted.len();
        if batch >= WARM_UP {
            counted.extend(accepted);
        }
        // In step: the next batch only once every police stream has this one, so none of
        // them falls behind (the stalled stream does).
        wait_until("every police stream to have the batch", || {
            let lengths: Vec<usize> = streams
                .iter()
                .map(|(received, _)| received.lock().unwrap().len())
                .collect();
            async move {
                Ok((
                    lengths.iter().all(|&length| length >= published),
                    format!("{lengths:?} of {published}"),
                ))
            }
        })
        .await?;
    }

    // Each police stream received every event once, in order.
    for (received, _) in &streams {
        let received = received.lock().unwrap();
        let sequences: Vec<u64> = received.iter().map(|(sequence, _)| *sequence).collect();
        ensure!(
            sequences == (1..=published as u64).collect::<Vec<_>>(),
            "a police stream received {} events, not 1..={published} in order",
            sequences.len()
        );
    }
    // The three streams shared one decision per indicator once they had joined.
    let decisions = decisions_for(&gateway.endpoint, &member.identity(), "GH/police").await?;
    let mut per_indicator: HashMap<&str, usize> = HashMap::new();
    for decision in &decisions {
        if counted.contains(&decision.indicator_id) {
            ensure!(decision.allow, "{decision:?}");
            *per_indicator.entry(&decision.indicator_id).or_default() += 1;
        }
    }
    ensure!(
        per_indicator.len() == counted.len() && per_indicator.values().all(|&count| count == 1),
        "expected one decision for each of {} indicators, shared by three streams; got {} \
         indicators with counts {:?}",
        counted.len(),
        per_indicator.len(),
        per_indicator.values().copied().collect::<HashSet<_>>()
    );

    // The stalled stream, read at last, has everything in order: it fell behind the
    // dispatcher and read the rest on its own.
    let mut sequences = Vec::new();
    while sequences.len() < published {
        let event = tokio::time::timeout(patience(), stalled.message())
            .await
            .context("the stalled stream did not catch up")??
            .context("the stalled stream ended")?;
        if let Some(event::Body::Published(_)) = event.body {
            sequences.push(event.sequence);
        }
    }
    ensure!(
        sequences == (1..=published as u64).collect::<Vec<_>>(),
        "the stalled stream received {:?}…",
        &sequences[..sequences.len().min(20)]
    );
    drop(stalled);
    gateway.stop().await?;
    for (_, task) in streams {
        // Ended by the gateway's shutdown.
        let _ = task.await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_while_releasing_to_ten_subscribers_has_every_sent_decision() -> Result<()>
{
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let gateway = member.start(&[]).await?;
    let mut subscribers = Vec::new();
    for index in 0..10 {
        let name = format!("GH/agency{index}");
        let (received, task) = follower(&gateway.endpoint, &federation.identity(&name)?).await?;
        subscribers.push((name, received, task));
    }
    let endpoint = gateway.endpoint.clone();
    let customs = federation.identity("GH/customs")?;
    let publisher = tokio::spawn(async move {
        let mut client = indicator_client(&endpoint, &customs).await?;
        for batch in 0.. {
            let indicators = (0..50)
                .map(|item| clear_vessel(format!("batch {batch} item {item}")))
                .collect();
            if client
                .publish(PublishRequest {
                    indicators,
                    ..Default::default()
                })
                .await
                .is_err()
            {
                // The gateway was killed.
                break;
            }
        }
        anyhow::Ok(())
    });
    // Killed while pages are being released: every subscriber has some, none all.
    let total = |subscribers: &[(String, Received, JoinHandle<Result<()>>)]| -> usize {
        subscribers
            .iter()
            .map(|(_, received, _)| received.lock().unwrap().len())
            .sum()
    };
    wait_until("the subscribers to receive a few pages", || {
        let sum = total(&subscribers);
        async move { Ok((sum >= 3_000, format!("{sum} received"))) }
    })
    .await?;
    gateway.kill().await?;
    publisher.await??;
    for (_, _, task) in &mut subscribers {
        // Each stream ends with an error when the process dies.
        let _ = tokio::time::timeout(patience(), task).await?;
    }

    let restarted = member.start(&[]).await?;
    for (name, received, _) in &subscribers {
        let received: Vec<String> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, id)| id.clone())
            .collect();
        let allowed: HashSet<String> = decisions_for(&restarted.endpoint, &member.identity(), name)
            .await?
            .into_iter()
            .filter(|decision| decision.allow)
            .map(|decision| decision.indicator_id)
            .collect();
        let missing: Vec<&String> = received
            .iter()
            .filter(|id| !allowed.contains(*id))
            .collect();
        ensure!(
            missing.is_empty(),
            "{name} received {} indicators without a stored decision: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    restarted.stop().await
}
