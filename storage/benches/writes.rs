//! Write throughput of the store: decision-log rows and published indicators per second, by
//! transaction size, on SQLite (a temporary file, as the gateway opens it) and, when
//! `CORDON_BENCH_DATABASE_URL` (or `CORDON_TEST_DATABASE_URL`) names a PostgreSQL database, on a
//! fresh schema there. This is the floor under the gateway's fan-out: every release decision is
//! one row stored before the release is sent.
//!
//!     cargo bench -p cordon-storage --bench writes

use std::time::{Duration, Instant};

use cordon_storage::{DecisionRow, NewIndicator, Store};

/// How long each measurement runs.
const RUN: Duration = Duration::from_secs(3);

fn decision(index: u64) -> DecisionRow {
    DecisionRow {
        decision_id: uuid::Uuid::now_v7().to_string(),
        at_micros: 1_790_000_000_000_000 + index as i64,
        recipient: format!("NG/b{}", index % 10),
        indicator_id: uuid::Uuid::now_v7().to_string(),
        channel: "subscribe".into(),
        policy_revision: "sha256:29ba1b3d458826e36afeab36b65463b6dc3a9d527f9a31022961f5926ded2efe"
            .into(),
        allow: true,
        redact: Vec::new(),
        reasons: vec!["TLP:CLEAR released to everyone".into()],
        error: None,
    }
}

fn indicator(index: u64) -> NewIndicator {
    NewIndicator {
        id: uuid::Uuid::now_v7().to_string(),
        originator: "GH".into(),
        kind: "vessel".into(),
        created_micros: 1_790_000_000_000_000 + index as i64,
        // The size of a signed vessel indicator of the load tool.
        payload: vec![7; 220],
        supersedes: None,
        via: None,
    }
}

/// Rows per second writing transactions of `size` rows for [`RUN`].
async fn measure<F, Fut>(size: usize, mut write: F) -> f64
where
    F: FnMut(usize, u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    let mut rows = 0u64;
    while start.elapsed() < RUN {
        write(size, rows).await;
        rows += size as u64;
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

async fn run(label: &str, store: &Store) {
    for size in [1usize, 10, 256, 2560] {
        let decisions = measure(size, |size, first| {
            let rows: Vec<DecisionRow> = (0..size as u64).map(|i| decision(first + i)).collect();
            async move {
                store
                    .record_decisions(&rows)
                    .await
                    .expect("record decisions")
            }
        })
        .await;
        let published = measure(size, |size, first| {
            let batch: Vec<NewIndicator> = (0..size as u64).map(|i| indicator(first + i)).collect();
            async move {
                store.publish(batch).await.expect("publish");
            }
        })
        .await;
        println!(
            "{label:<20} {size:>5} rows/transaction: {decisions:>9.0} decision rows/s, {published:>9.0} indicators/s"
        );
    }
}

#[tokio::main]
async fn main() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite:{}", directory.path().join("bench.db").display());
    let store = Store::connect(&url).await.expect("open SQLite");
    run("sqlite", &store).await;
    store.close().await;

    let postgres = std::env::var("CORDON_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("CORDON_TEST_DATABASE_URL"));
    match postgres {
        Ok(base) => {
            let url = cordon_storage::testing::fresh_postgres_schema(&base, "bench_writes")
                .await
                .expect("fresh PostgreSQL schema");
            let store = Store::connect(&url).await.expect("open PostgreSQL");
            run("postgres", &store).await;
            store.close().await;
        }
        Err(_) => {
            println!("postgres   skipped: set CORDON_BENCH_DATABASE_URL to measure PostgreSQL")
        }
    }

    // The same SQLite writes with the audit log switched off (for the rest of this process):
    // what the log costs each kind of write, in the same run.
    cordon_storage::switch_audit_log_off_for_benchmarks();
    let url = format!("sqlite:{}", directory.path().join("no-log.db").display());
    let store = Store::connect(&url).await.expect("open SQLite");
    run("sqlite, no audit log", &store).await;
    store.close().await;
}
