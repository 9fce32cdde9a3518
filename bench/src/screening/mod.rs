//! The screening scenario: a real gateway holding `--screening-indicators` indicators (one
//! million by default) screens declarations for one of its agencies, in batches of 100 and one
//! at a time; the same declarations are then matched in this process against an index of the
//! same indicators, without gRPC, policy or storage (the baseline: the matching alone). Last,
//! the watchers of new indicators are found among `--screening-watched` watched declarations
//! with the index the gateway uses, against a scan of every watched declaration.

mod data;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cordon_gateway::screening::subjects::{declaration_subject, indicator_subject};
use cordon_matching::{Index, IndexStats, compare};
use cordon_proto::v1::screening_service_client::ScreeningServiceClient;
use cordon_proto::v1::{Declaration, PublishRequest, ScreenRequest};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::scenario::memory_mib;

/// The board's default name threshold, as the reference policy leaves it.
const THRESHOLD: f64 = cordon_gateway::screening::DEFAULT_NAME_THRESHOLD;
/// Declarations built to carry an identifier or a name of a held indicator, percent.
const MATCH_PERCENT: u64 = 10;
/// Requests in flight for batches of 100.
const IN_FLIGHT: usize = 4;
/// Indicators per publish request while loading.
const PRELOAD_BATCH: u64 = 1000;
/// New indicators whose watchers are looked up, and how many of them a full scan handles.
const LOOKUPS: u64 = 10_000;
const SCANS: u64 = 5;

/// Everything the screening scenario measured.
#[derive(Debug, Serialize)]
pub struct ScreeningReport {
    pub indicators_held: u64,
    /// Indicators published per second while loading (batches of 1000, 2 in flight).
    pub preload_per_s: f64,
    /// From the last load acknowledged to the first screening answered: the candidate index
    /// catching up with the feed.
    pub index_ready_s: f64,
    /// The gateway's resident memory: started empty, holding the indicators (candidate index
    /// built), and after the screenings (with their watches).
    pub gateway_rss_empty_mib: Option<f64>,
    pub gateway_rss_loaded_mib: Option<f64>,
    pub gateway_rss_after_mib: Option<f64>,
    /// Declarations screened with at least one match, percent (built: about 10, plus route
    /// matches).
    pub matched_percent: f64,
    pub rows: Vec<ScreeningRow>,
    /// The in-process indexes: of the held indicators, and of the watched declarations.
    pub candidate_index: IndexFigures,
    pub watch_index: IndexFigures,
    /// Watchers found over all lookups.
    pub watchers_found: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScreeningRow {
    pub measure: String,
    pub system: String,
    pub batch: usize,
    pub in_flight: usize,
    /// Declarations screened, or lookups made.
    pub items: u64,
    /// Declarations (or lookups) per second.
    pub rate_per_s: f64,
    /// Per request (per lookup), µs.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// This row's rate ÷ its baseline's, from the same run.
    pub vs_baseline: Option<f64>,
    pub baseline: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IndexFigures {
    pub records: usize,
    pub identifier_keys: usize,
    pub names: usize,
    pub words: usize,
    /// The index's own estimate of its size.
    pub estimated_mib: f64,
    /// This process's resident memory growth while building it.
    pub rss_growth_mib: Option<f64>,
    pub build_seconds: f64,
}

fn figures(stats: IndexStats, rss_growth_mib: Option<f64>, build: Duration) -> IndexFigures {
    IndexFigures {
        records: stats.records,
        identifier_keys: stats.identifier_keys,
        names: stats.names,
        words: stats.words,
        estimated_mib: stats.bytes as f64 / (1024.0 * 1024.0),
        rss_growth_mib,
        build_seconds: build.as_secs_f64(),
    }
}

/// Latencies in nanoseconds, 1 ns to 10 minutes.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

fn micros(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

fn row(
    measure: &str,
    system: &str,
    (batch, in_flight): (usize, usize),
    items: u64,
    seconds: f64,
    latency: &Histogram<u64>,
    note: String,
) -> ScreeningRow {
    ScreeningRow {
        measure: measure.into(),
        system: system.into(),
        batch,
        in_flight,
        items,
        rate_per_s: items as f64 / seconds,
        p50_us: micros(latency, 0.5),
        p99_us: micros(latency, 0.99),
        p999_us: micros(latency, 0.999),
        max_us: latency.max() as f64 / 1000.0,
        vs_baseline: None,
        baseline: String::new(),
        note,
    }
}

fn own_rss() -> Option<f64> {
    memory_mib(std::process::id()).map(|(rss, _)| rss)
}

async fn client(endpoint: &str, identity: &Path) -> Result<ScreeningServiceClient<Channel>> {
    Ok(ScreeningServiceClient::new(
        cordon_gateway::cli::client::channel(endpoint, identity).await?,
    ))
}

/// Publishes indicators `0..count` as `agency`, batches of 1000 with 2 in flight.
async fn preload(endpoint: &str, agency: &Path, count: u64) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let batches = count.div_ceil(PRELOAD_BATCH) as usize;
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..2 {
        let mut client = cordon_gateway::cli::client::indicator_client(endpoint, agency).await?;
        let next = next.clone();
        tasks.spawn(async move {
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    return anyhow::Ok(());
                }
                let from = batch as u64 * PRELOAD_BATCH;
                let indicators = (from..(from + PRELOAD_BATCH).min(count))
                    .map(data::indicator)
                    .collect();
                client
                    .publish(PublishRequest {
                        indicators,
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("publishing indicators from {from}"))?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// Screens `batches` closed loop with `in_flight` requests outstanding: declarations per
/// second, per-request latency (ns), and how many declarations matched something.
async fn screen_all(
    endpoint: &str,
    agency: &Path,
    batches: Vec<Vec<Declaration>>,
    in_flight: usize,
) -> Result<(f64, Histogram<u64>, u64)> {
    let declarations: u64 = batches.iter().map(|batch| batch.len() as u64).sum();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for _ in 0..in_flight {
        let mut client = client(endpoint, agency).await?;
        let (batches, next) = (batches.clone(), next.clone());
        tasks.spawn(async move {
            let mut latency = histogram();
            let mut matched = 0u64;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(index) else {
                    return anyhow::Ok((latency, matched));
                };
                let sent = Instant::now();
                let results = client
                    .screen(ScreenRequest {
                        declarations: batch.clone(),
                    })
                    .await
                    .context("screening")?
                    .into_inner()
                    .results;
                latency.record(sent.elapsed().as_nanos() as u64)?;
                if results.len() != batch.len() {
                    bail!("{} results for {} declarations", results.len(), batch.len());
                }
                matched += results
                    .iter()
                    .filter(|result| !result.matches.is_empty())
                    .count() as u64;
            }
        });
    }
    let mut latency = histogram();
    let mut matched = 0;
    while let Some(done) = tasks.join_next().await {
        let (task_latency, task_matched) = done??;
        latency.add(task_latency)?;
        matched += task_matched;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok((declarations as f64 / seconds, latency, matched))
}

/// The first screening, retried while the gateway says its index is still catching up.
async fn first_screening(endpoint: &str, agency: &Path) -> Result<()> {
    let mut client = client(endpoint, agency).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let request = ScreenRequest {
            declarations: vec![data::declaration(u64::MAX, 0, 0)],
        };
        match client.screen(request).await {
            Ok(_) => return Ok(()),
            Err(status)
                if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                eprintln!("  index catching up: {}", status.message());
            }
            Err(status) => bail!("the first screening failed: {status}"),
        }
    }
}

fn batches_of(from: u64, count: u64, size: u64, indicators: u64) -> Vec<Vec<Declaration>> {
    (0..count.div_ceil(size))
        .map(|batch| {
            let first = from + batch * size;
            (first..(first + size).min(from + count))
                .map(|n| data::declaration(n, indicators, MATCH_PERCENT))
                .collect()
        })
        .collect()
}

/// The matching alone, in this process, single-threaded: per batch, each declaration's
/// candidates from the index, each candidate rebuilt (as the gateway decodes it) and
/// compared. Declarations per second and per-batch latency (ns).
fn match_in_process(index: &Index, batches: &[Vec<Declaration>]) -> Result<(f64, Histogram<u64>)> {
    let mut latency = histogram();
    let mut declarations = 0u64;
    let start = Instant::now();
    for batch in batches {
        let began = Instant::now();
        for declaration in batch {
            let subject = declaration_subject(declaration).prepare();
            for record in index.candidates(&subject, THRESHOLD) {
                let held = indicator_subject(&data::indicator(record)).prepare();
                std::hint::black_box(compare(&subject, &held, THRESHOLD));
            }
        }
        latency.record(began.elapsed().as_nanos() as u64)?;
        declarations += batch.len() as u64;
    }
    Ok((declarations as f64 / start.elapsed().as_secs_f64(), latency))
}

impl crate::Bench {
    pub(crate) async fn screening(&mut self) -> Result<()> {
        let held = self.args.screening_indicators;
        let declarations = self.args.screening_declarations;
        let singles = self.args.screening_singles;
        eprintln!("screening: {held} indicators held");
        let (member, gateway) = self.gateway().await?;
        let agency: PathBuf = self
            .federation
            .identity(&format!("{}/customs", member.member))?;
        let endpoint = gateway.endpoint.clone();
        let rss = |gateway: &cordon_integration_tests::GatewayProcess| {
            gateway.pid().and_then(memory_mib).map(|(rss, _)| rss)
        };
        let gateway_rss_empty_mib = rss(&gateway);
        let preload_per_s = preload(&endpoint, &agency, held).await?;
        eprintln!("  loaded at {preload_per_s:.0}/s");
        let loaded = Instant::now();
        first_screening(&endpoint, &agency).await?;
        let index_ready_s = loaded.elapsed().as_secs_f64();
        let gateway_rss_loaded_mib = rss(&gateway);

        let bulk = batches_of(0, declarations, 100, held);
        let (bulk_rate, bulk_latency, bulk_matched) =
            screen_all(&endpoint, &agency, bulk.clone(), IN_FLIGHT).await?;
        let one = batches_of(declarations, singles, 1, held);
        let (one_rate, one_latency, one_matched) =
            screen_all(&endpoint, &agency, one.clone(), 1).await?;
        let gateway_rss_after_mib = rss(&gateway);
        gateway.stop().await?;
        let system = self.system();
        let mut rows = vec![
            row(
                "screen, batches of 100",
                &system,
                (100, IN_FLIGHT),
                declarations,
                declarations as f64 / bulk_rate,
                &bulk_latency,
                format!("latency per request of 100; {held} indicators held"),
            ),
            row(
                "screen, one declaration",
                &system,
                (1, 1),
                singles,
                singles as f64 / one_rate,
                &one_latency,
                "one request at a time".into(),
            ),
        ];

        // The baseline: the same declarations matched in this process.
        eprintln!("  in-process index of {held} indicators");
        let before = own_rss();
        let began = Instant::now();
        let mut index = Index::new();
        for i in 0..held {
            index.insert(i, &indicator_subject(&data::indicator(i)).prepare());
        }
        let candidate_index = figures(
            index.stats(),
            own_rss().zip(before).map(|(after, before)| after - before),
            began.elapsed(),
        );
        let (bulk_base, bulk_base_latency) = match_in_process(&index, &bulk)?;
        let (one_base, one_base_latency) = match_in_process(&index, &one)?;
        drop(index);
        for (at, (rate, latency), batch) in [
            (0, (bulk_base, &bulk_base_latency), 100),
            (1, (one_base, &one_base_latency), 1),
        ] {
            let measured = &mut rows[at];
            measured.vs_baseline = Some(measured.rate_per_s / rate);
            measured.baseline = "in-process matching".into();
            let mut baseline = row(
                &measured.measure.clone(),
                "in-process matching",
                (batch, 1),
                measured.items,
                measured.items as f64 / rate,
                latency,
                "candidates and explained comparison only: no gRPC, policy, storage".into(),
            );
            baseline.vs_baseline = Some(1.0);
            rows.push(baseline);
        }

        let (watch_index, watcher_rows, watchers_found) = self.watchers(held)?;
        rows.extend(watcher_rows);
        let report = ScreeningReport {
            indicators_held: held,
            preload_per_s,
            index_ready_s,
            gateway_rss_empty_mib,
            gateway_rss_loaded_mib,
            gateway_rss_after_mib,
            matched_percent: 100.0 * (bulk_matched + one_matched) as f64
                / (declarations + singles) as f64,
            rows,
            candidate_index,
            watch_index,
            watchers_found,
        };
        for row in &report.rows {
            eprintln!(
                "  {:<28} {:<22} {:>10.0}/s p50={:.0}µs p99={:.0}µs vs baseline {:?}",
                row.measure, row.system, row.rate_per_s, row.p50_us, row.p99_us, row.vs_baseline
            );
        }
        self.screening = Some(report);
        Ok(())
    }

    /// The watchers of new indicators among `--screening-watched` declarations: the index the
    /// gateway keeps (subject prepared, then looked up), against comparing every watched
    /// declaration.
    fn watchers(&self, held: u64) -> Result<(IndexFigures, Vec<ScreeningRow>, u64)> {
        let watched = self.args.screening_watched;
        eprintln!("  in-process index of {watched} watched declarations");
        let before = own_rss();
        let began = Instant::now();
        let mut index = Index::new();
        for n in 0..watched {
            let declaration = data::declaration(n, held, MATCH_PERCENT);
            index.insert(n, &declaration_subject(&declaration).prepare());
        }
        let watch_index = figures(
            index.stats(),
            own_rss().zip(before).map(|(after, before)| after - before),
            began.elapsed(),
        );
        // New intelligence: indicators that may be named by watched declarations (those the
        // declarations copied from) and indicators no one has seen.
        let mut latency = histogram();
        let mut found = 0u64;
        let mut rng = data::Rng::new(7);
        let start = Instant::now();
        for k in 0..LOOKUPS {
            let number = if k % 2 == 0 {
                data::ROUTES + rng.below(held.saturating_sub(data::ROUTES).max(1))
            } else {
                held + k
            };
            let indicator = data::indicator(number);
            let began = Instant::now();
            let subject = indicator_subject(&indicator).prepare();
            let watchers = index.candidates(&subject, THRESHOLD);
            latency.record(began.elapsed().as_nanos() as u64)?;
            found += watchers.len() as u64;
        }
        let lookups = row(
            "watchers of a new indicator",
            "matching index",
            (1, 1),
            LOOKUPS,
            start.elapsed().as_secs_f64(),
            &latency,
            format!("{watched} watched declarations; half the indicators named by some"),
        );
        drop(index);

        eprintln!("  scanning {watched} watched declarations {SCANS} times");
        let subjects: Vec<_> = (0..watched)
            .map(|n| declaration_subject(&data::declaration(n, held, MATCH_PERCENT)).prepare())
            .collect();
        let mut scan_latency = histogram();
        let start = Instant::now();
        for k in 0..SCANS {
            let subject =
                indicator_subject(&data::indicator(data::ROUTES + k * 7919 % held.max(1)))
                    .prepare();
            let began = Instant::now();
            let matching = subjects
                .iter()
                .filter(|watched| !compare(&subject, watched, THRESHOLD).is_empty())
                .count();
            std::hint::black_box(matching);
            scan_latency.record(began.elapsed().as_nanos() as u64)?;
        }
        let mut scan = row(
            "watchers of a new indicator",
            "scan of every watch",
            (1, 1),
            SCANS,
            start.elapsed().as_secs_f64(),
            &scan_latency,
            "every watched declaration compared".into(),
        );
        scan.vs_baseline = Some(1.0);
        let mut lookups = lookups;
        lookups.vs_baseline = Some(lookups.rate_per_s / scan.rate_per_s);
        lookups.baseline = "scan of every watch".into();
        Ok((watch_index, vec![lookups, scan], found))
    }
}

/// The screening tables of results.md.
pub fn markdown(report: &ScreeningReport, text: &mut String) {
    text.push_str(&format!(
        "\n### Screening\n\n{} indicators held, loaded at {:.0}/s; the candidate index was \
         ready {:.1} s after the last load. Gateway RSS: {} MiB empty, {} MiB holding them, {} \
         MiB after the screenings. Declarations with a match: {:.1}%.\n\n",
        report.indicators_held,
        report.preload_per_s,
        report.index_ready_s,
        mib(report.gateway_rss_empty_mib),
        mib(report.gateway_rss_loaded_mib),
        mib(report.gateway_rss_after_mib),
        report.matched_percent,
    ));
    text.push_str(
        "| measure | system | batch | in flight | items | rate/s | p50 µs | p99 µs | p99.9 µs | max µs | vs baseline |\n",
    );
    text.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in &report.rows {
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
            row.measure,
            row.system,
            row.batch,
            row.in_flight,
            row.items,
            row.rate_per_s,
            row.p50_us,
            row.p99_us,
            row.p999_us,
            row.max_us,
            row.vs_baseline
                .map_or("–".to_string(), |ratio| format!("{ratio:.2}")),
        ));
    }
    text.push_str("\n| index | records | identifier keys | names | words | estimated MiB | RSS growth MiB | build s |\n");
    text.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (name, figures) in [
        ("held indicators", &report.candidate_index),
        ("watched declarations", &report.watch_index),
    ] {
        text.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {:.0} | {} | {:.1} |\n",
            figures.records,
            figures.identifier_keys,
            figures.names,
            figures.words,
            figures.estimated_mib,
            mib(figures.rss_growth_mib),
            figures.build_seconds,
        ));
    }
}

fn mib(value: Option<f64>) -> String {
    value.map_or("–".to_string(), |value| format!("{value:.0}"))
}
