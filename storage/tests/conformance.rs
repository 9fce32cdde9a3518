//! One conformance suite for every backend: each case below runs as `sqlite::<case>` and as
//! `postgres::<case>` (a few run on one backend only, see the end); the PostgreSQL cases need
//! `CORDON_TEST_DATABASE_URL` and otherwise say they were skipped. Each PostgreSQL case works in a fresh schema of its own, dropped at the end.

use std::collections::BTreeSet;
use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cordon_storage::{
    AlertCursors, Backend, CircleLogEntry, CircleRow, CircleWrite, CircleWriteOutcome, DecidedPage,
    DecisionQuery, DecisionRow, EventBatch, EventBody, KeyPackageRow, MAX_DECISIONS_PER_QUERY,
    NewAlert, NewIndicator, NewWatch, PendingWelcome, PgConnectOptions, ReceiveOutcome, Received,
    ScreeningRow, StorageError, Store, StoredEvent, StoredIndicator, WatchKind,
};
use sqlx::postgres::PgListener;
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};
use tempfile::TempDir;

const DATABASE_URL_VARIABLE: &str = "CORDON_TEST_DATABASE_URL";

/// The bound on every wait for something another task or process does.
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Fixtures

/// One empty feed database; `open` gives a new, independent Store on it (its own pools and, on
/// PostgreSQL, its own listener), as another replica would have.
enum Fixture {
    Sqlite {
        _directory: TempDir,
        url: String,
    },
    Postgres {
        // Boxed: the options are large and the SQLite variant small.
        options: Box<PgConnectOptions>,
        schema: SchemaGuard,
    },
}

impl Fixture {
    fn sqlite() -> Fixture {
        let directory = tempfile::tempdir().expect("create temporary directory");
        let url = format!("sqlite://{}", directory.path().join("feed.db").display());
        Fixture::Sqlite {
            _directory: directory,
            url,
        }
    }

    async fn postgres() -> Option<Fixture> {
        let Ok(url) = std::env::var(DATABASE_URL_VARIABLE) else {
            eprintln!("skipped: {DATABASE_URL_VARIABLE} is not set");
            return None;
        };
        let schema = format!("cordon_test_{}", uuid::Uuid::new_v4().simple());
        let mut connection = PgConnection::connect(&url)
            .await
            .expect("connect to CORDON_TEST_DATABASE_URL");
        connection
            .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
            .await
            .expect("create test schema");
        connection.close().await.ok();
        let options = PgConnectOptions::from_str(&url)
            .expect("parse CORDON_TEST_DATABASE_URL")
            .options([("search_path", schema.as_str())]);
        Some(Fixture::Postgres {
            options: Box::new(options),
            schema: SchemaGuard { url, schema },
        })
    }

    fn backend(&self) -> Backend {
        match self {
            Fixture::Sqlite { .. } => Backend::Sqlite,
            Fixture::Postgres { .. } => Backend::Postgres,
        }
    }

    async fn open(&self) -> Store {
        let store = match self {
            Fixture::Sqlite { url, .. } => Store::connect(url).await,
            Fixture::Postgres { options, .. } => {
                Store::connect_postgres_with(PgConnectOptions::clone(options)).await
            }
        }
        .expect("open store");
        assert_eq!(store.backend(), self.backend());
        store
    }

    /// PostgreSQL only: a Store whose connections carry `application_name`, so that a test can
    /// find them in `pg_stat_activity`.
    async fn open_named(&self, application_name: &str) -> Store {
        let Fixture::Postgres { options, .. } = self else {
            panic!("open_named is for postgresql fixtures");
        };
        Store::connect_postgres_with(
            PgConnectOptions::clone(options).application_name(application_name),
        )
        .await
        .expect("open named store")
    }

    async fn admin_connection(&self) -> PgConnection {
        let Fixture::Postgres { schema, .. } = self else {
            panic!("admin_connection is for postgresql fixtures");
        };
        PgConnection::connect(&schema.url)
            .await
            .expect("connect to CORDON_TEST_DATABASE_URL")
    }
}

/// Drops the test schema when the test ends, also when it panics. Best effort: a failure is
/// printed, not raised, so it never hides the test's own result.
struct SchemaGuard {
    url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        // Its own thread and runtime: this may run inside the test's runtime, which cannot be
        // blocked on.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&url)
                    .await
                    .map_err(|error| error.to_string())?;
                connection
                    .execute("SET lock_timeout = '5s'")
                    .await
                    .map_err(|error| error.to_string())?;
                connection
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                    )))
                    .await
                    .map_err(|error| error.to_string())?;
                connection.close().await.ok();
                Ok::<(), String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test schema {}: {error}", self.schema),
            Err(_) => eprintln!("dropping test schema {} panicked", self.schema),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn indicator(id: &str, kind: &str) -> NewIndicator {
    NewIndicator {
        id: id.to_owned(),
        originator: "spiffe://federation/member/GH".to_owned(),
        kind: kind.to_owned(),
        created_micros: 1_700_000_000_000_000 + id.len() as i64,
        payload: format!("payload of {id}").into_bytes(),
        supersedes: None,
        via: None,
    }
}

fn indicators(prefix: &str, count: usize, kind: &str) -> Vec<NewIndicator> {
    (0..count)
        .map(|index| indicator(&format!("{prefix}-{index}"), kind))
        .collect()
}

fn published_event(sequence: u64, item: &NewIndicator) -> StoredEvent {
    StoredEvent {
        sequence,
        at_micros: item.created_micros,
        kind: item.kind.clone(),
        body: EventBody::Published {
            indicator_id: item.id.clone(),
            originator: item.originator.clone(),
            payload: item.payload.clone(),
        },
    }
}

fn sequences(batch: &EventBatch) -> Vec<u64> {
    batch.events.iter().map(|event| event.sequence).collect()
}

fn kinds(list: &[&str]) -> Vec<String> {
    list.iter().map(|kind| (*kind).to_owned()).collect()
}

async fn read(store: &Store, after: u64, limit: u32, kind_filter: &[&str]) -> EventBatch {
    store
        .read_after(after, limit, &kinds(kind_filter))
        .await
        .expect("read events")
}

/// Waits at most [`PATIENCE`] for `future`, failing the test with `what` otherwise.
async fn within_patience<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {PATIENCE:?}: {what}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Cases run against every backend

async fn publish_and_read_round_trip(fixture: &Fixture) {
    let store = fixture.open().await;
    assert_eq!(store.head().await, Ok(0));
    assert_eq!(read(&store, 0, 10, &[]).await.events, []);

    let batch = vec![
        indicator("a", "ip"),
        indicator("bb", "url"),
        indicator("ccc", "ip"),
    ];
    let published = store.publish(batch.clone()).await.expect("publish");
    assert_eq!(published, [1, 2, 3]);
    assert_eq!(store.head().await, Ok(3));

    let expected: Vec<StoredEvent> = batch
        .iter()
        .zip(1..)
        .map(|(item, sequence)| published_event(sequence, item))
        .collect();
    assert_eq!(
        read(&store, 0, 10, &[]).await,
        EventBatch {
            events: expected,
            scanned_to: 3,
            head: 3
        }
    );

    assert_eq!(
        store.indicator("bb").await,
        Ok(Some(StoredIndicator {
            id: "bb".to_owned(),
            originator: batch[1].originator.clone(),
            kind: "url".to_owned(),
            payload: batch[1].payload.clone(),
            sequence: 2,
            retracted: false,
            via: None,
            superseded_by: None,
            circle: None,
        }))
    );
    assert_eq!(store.indicator("missing").await, Ok(None));

    // Opaque payloads: every byte value, and an empty payload, round-trip.
    let mut binary = indicator("binary", "hash");
    binary.payload = (0..=255).collect();
    let mut empty = indicator("empty", "hash");
    empty.payload = Vec::new();
    store
        .publish(vec![binary.clone(), empty.clone()])
        .await
        .expect("publish binary payloads");
    let stored = read(&store, 3, 10, &[]).await;
    assert_eq!(
        stored.events,
        [published_event(4, &binary), published_event(5, &empty)]
    );
    store.close().await;
}

async fn sequences_are_consecutive_across_batches(fixture: &Fixture) {
    let store = fixture.open().await;
    assert_eq!(store.publish(Vec::new()).await, Ok(vec![]));
    assert_eq!(store.head().await, Ok(0), "an empty batch took a sequence");

    let mut next = 1;
    for (round, size) in [1, 5, 100, 2, 700].into_iter().enumerate() {
        let published = store
            .publish(indicators(&format!("round{round}"), size, "ip"))
            .await
            .expect("publish batch");
        let expected: Vec<u64> = (next..next + size as u64).collect();
        assert_eq!(published, expected, "batch of {size}");
        next += size as u64;
    }
    let total = next - 1;
    assert_eq!(store.head().await, Ok(total));

    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let batch = read(&store, cursor, 64, &[]).await;
        if batch.events.is_empty() {
            break;
        }
        seen.extend(sequences(&batch));
        cursor = batch.scanned_to;
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    store.close().await;
}

async fn duplicate_id_stores_nothing(fixture: &Fixture) {
    let store = fixture.open().await;
    store
        .publish(vec![indicator("a", "ip")])
        .await
        .expect("publish a");

    // Duplicate of a stored indicator, in the middle of a batch.
    let refused = store
        .publish(vec![
            indicator("b", "ip"),
            indicator("a", "url"),
            indicator("c", "ip"),
        ])
        .await;
    assert_eq!(refused, Err(StorageError::Duplicate { id: "a".to_owned() }));

    // Duplicate within the batch itself.
    let refused = store
        .publish(vec![
            indicator("d", "ip"),
            indicator("e", "ip"),
            indicator("d", "ip"),
        ])
        .await;
    assert_eq!(refused, Err(StorageError::Duplicate { id: "d".to_owned() }));

    assert_eq!(store.head().await, Ok(1), "a refused batch moved the head");
    for id in ["b", "c", "d", "e"] {
        assert_eq!(
            store.indicator(id).await,
            Ok(None),
            "{id} of a refused batch"
        );
    }
    assert_eq!(sequences(&read(&store, 0, 10, &[]).await), [1]);
    // The stored indicator is unchanged (the refused batch had it as kind url).
    assert_eq!(
        store.indicator("a").await.expect("read a").map(|a| a.kind),
        Some("ip".to_owned())
    );

    // The refused batches left no hole in the numbering.
    assert_eq!(
        store
            .publish(vec![indicator("b", "ip"), indicator("c", "ip")])
            .await,
        Ok(vec![2, 3])
    );
    assert_eq!(sequences(&read(&store, 0, 10, &[]).await), [1, 2, 3]);
    store.close().await;
}

/// Two Stores publishing the same id at once: one wins, the other's whole batch is refused.
async fn concurrent_duplicate_publish_stores_one(fixture: &Fixture) {
    let first = fixture.open().await;
    let second = fixture.open().await;
    let publish = |store: Store, other: &'static str| async move {
        store
            .publish(vec![indicator(other, "ip"), indicator("contested", "ip")])
            .await
    };
    let (first_result, second_result) = tokio::join!(
        tokio::spawn(publish(first.clone(), "only-first")),
        tokio::spawn(publish(second.clone(), "only-second")),
    );
    let results = [
        first_result.expect("first publisher task"),
        second_result.expect("second publisher task"),
    ];
    let winners = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(winners, 1, "exactly one publish must win: {results:?}");
    assert!(
        results.contains(&Err(StorageError::Duplicate {
            id: "contested".to_owned()
        })),
        "the loser must be told which id: {results:?}"
    );
    assert!(results.contains(&Ok(vec![1, 2])), "{results:?}");
    assert_eq!(first.head().await, Ok(2));
    let stored_sides = [
        first.indicator("only-first").await.expect("read").is_some(),
        first
            .indicator("only-second")
            .await
            .expect("read")
            .is_some(),
    ];
    assert_eq!(
        stored_sides.iter().filter(|stored| **stored).count(),
        1,
        "the losing batch left rows behind"
    );
    first.close().await;
    second.close().await;
}

/// Many callers publishing through one Store at once share transactions (group commit), yet
/// each gets the answer it would have had alone: its own consecutive sequences, or, for the
/// caller whose batch repeats another caller's id, the duplicate error and nothing stored.
async fn concurrent_publishes_through_one_store_each_get_their_own_answer(fixture: &Fixture) {
    use cordon_tlog::{Entry, MemoryLog};
    let store = fixture.open().await;
    store
        .publish(vec![indicator("stored", "ip")])
        .await
        .expect("first publish");
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..48usize {
        let store = store.clone();
        tasks.spawn(async move {
            let mut batch = indicators(&format!("c{caller}"), 1 + caller % 3, "ip");
            if caller % 16 == 5 {
                // Repeats an indicator stored before.
                batch.push(indicator("stored", "ip"));
            }
            if caller % 16 == 9 {
                // Repeats the id of the caller before it (whichever commits first wins).
                batch.push(indicator(&format!("c{}-0", caller - 1), "ip"));
            }
            (caller, batch.clone(), store.publish(batch).await)
        });
    }
    let mut committed = Vec::new();
    let mut refused = 0;
    while let Some(joined) = tasks.join_next().await {
        let (caller, batch, result) = joined.expect("publisher task");
        match result {
            Ok(sequences) => {
                assert_eq!(sequences.len(), batch.len(), "caller {caller}");
                assert!(
                    sequences.windows(2).all(|pair| pair[1] == pair[0] + 1),
                    "caller {caller} got {sequences:?}"
                );
                assert_ne!(caller % 16, 5, "caller {caller} repeated a stored id");
                committed.push((sequences[0], batch));
            }
            Err(StorageError::Duplicate { id }) => {
                refused += 1;
                assert!(
                    [5, 8, 9].contains(&(caller % 16)),
                    "caller {caller} was refused for {id}"
                );
                assert!(
                    batch.iter().any(|item| item.id == id),
                    "caller {caller}: {id}"
                );
                for item in &batch {
                    if item.id != id && item.id.starts_with(&format!("c{caller}-")) {
                        assert_eq!(
                            store.indicator(&item.id).await.expect("read"),
                            None,
                            "a refused batch left {} behind",
                            item.id
                        );
                    }
                }
            }
            Err(error) => panic!("caller {caller}: {error}"),
        }
    }
    // Three callers repeat a stored id; of each of the three pairs repeating an id between
    // them, one.
    assert_eq!(refused, 6);
    // Every committed batch is in the feed at its sequences, and the log holds their entries
    // in the order of the feed.
    committed.sort_by_key(|(first, _)| *first);
    let stored_count: usize = committed.iter().map(|(_, batch)| batch.len()).sum();
    let head = store.head().await.expect("head");
    assert_eq!(head, 1 + stored_count as u64);
    let mut memory = MemoryLog::new();
    memory.append(
        &Entry::stored(
            "stored",
            &originator(),
            None,
            &indicator("stored", "ip").payload,
        )
        .canonical_bytes(),
    );
    let events = read(&store, 1, 10_000, &[]).await;
    let mut expected_sequence = 2;
    let mut events = events.events.iter();
    for (first, batch) in &committed {
        assert_eq!(*first, expected_sequence);
        for item in batch {
            let event = events.next().expect("an event per committed indicator");
            assert_eq!(event, &published_event(expected_sequence, item));
            memory.append(
                &Entry::stored(&item.id, &item.originator, None, &item.payload).canonical_bytes(),
            );
            expected_sequence += 1;
        }
    }
    assert_eq!(store.audit_size().await, Ok(memory.size()));
    assert_eq!(store.audit_root(memory.size()).await, Ok(memory.root()));
    store.close().await;
}

/// The oversight page's reads: published and received events outside circles, in pages
/// that resume where the last one stopped; alert times; decisions counted by recipient,
/// channel, revision and outcome, circle decisions left out.
async fn oversight_reads_count_the_feed_at_large_and_the_decisions(fixture: &Fixture) {
    let store = fixture.open().await;
    store
        .publish(indicators("o", 3, "vessel"))
        .await
        .expect("publish");
    receive(&store, 4, vec![received("r", "container")]).await;
    circle_write(&store, in_circle(vec![indicator("secret", "broker")])).await;
    store
        .publish(vec![indicator("late", "account")])
        .await
        .expect("publish");

    let first = store.oversight_indicators(0, 2).await.expect("first page");
    assert_eq!(
        first
            .indicators
            .iter()
            .map(|item| (item.sequence, item.kind.as_str(), item.via.as_deref()))
            .collect::<Vec<_>>(),
        [(1, "vessel", None), (2, "vessel", None)]
    );
    assert_eq!(first.scanned_to, 2);
    let rest = store
        .oversight_indicators(first.scanned_to, 100)
        .await
        .expect("second page");
    assert_eq!(
        rest.indicators
            .iter()
            .map(|item| (item.kind.as_str(), item.via.as_deref()))
            .collect::<Vec<_>>(),
        [
            ("vessel", None),
            ("container", Some(PEER)),
            ("account", None)
        ],
        "the circle's indicator is not counted"
    );
    assert_eq!(
        rest.indicators[0].payload,
        indicator("o-2", "vessel").payload
    );
    let head = store.head().await.expect("head");
    assert_eq!(rest.scanned_to, head, "a short page reaches the head");
    assert_eq!(
        store.oversight_indicators(head, 100).await,
        Ok(cordon_storage::OversightPage {
            indicators: Vec::new(),
            scanned_to: head
        })
    );
    assert_eq!(store.oversight_alert_times(0, 10).await, Ok(Vec::new()));

    let mut rows = vec![
        decision("d1", 10, "NG/customs", "o-0"),
        decision("d2", 30, "NG/customs", "o-1"),
        decision("d3", 20, "GH/police", "o-1"),
        decision("d4", 40, "NG", "o-2"),
    ];
    rows[2].redact = Vec::new();
    rows[3].allow = false;
    rows[3].redact = Vec::new();
    rows[3].error = Some("policy failed".into());
    let mut circle = decision("d5", 50, "NG", "secret");
    circle.channel = "circle".into();
    rows.push(circle);
    store.record_decisions(&rows).await.expect("record");
    let mut groups = store.oversight_decision_groups().await.expect("groups");
    groups.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    let summary: Vec<_> = groups
        .iter()
        .map(|group| {
            (
                group.recipient.as_str(),
                group.allow,
                group.redacted,
                group.failed,
                group.count,
                group.first_micros,
                group.last_micros,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("GH/police", true, false, false, 1, 20, 20),
            ("NG", false, false, true, 1, 40, 40),
            ("NG/customs", true, true, false, 2, 10, 30),
        ]
    );
    store.close().await;
}

/// One `read_after` and what it must return.
struct ReadCase {
    after: u64,
    limit: u32,
    kinds: &'static [&'static str],
    sequences: &'static [u64],
    scanned_to: u64,
}

const fn case(
    after: u64,
    limit: u32,
    kinds: &'static [&'static str],
    sequences: &'static [u64],
    scanned_to: u64,
) -> ReadCase {
    ReadCase {
        after,
        limit,
        kinds,
        sequences,
        scanned_to,
    }
}

async fn check_reads(store: &Store, cases: &[ReadCase]) {
    let head = store.head().await.expect("read head");
    for case in cases {
        let (after, limit, kinds) = (case.after, case.limit, case.kinds);
        let batch = read(store, after, limit, kinds).await;
        assert_eq!(
            batch.head, head,
            "head seen after {after}, limit {limit}, kinds {kinds:?}"
        );
        assert_eq!(
            sequences(&batch),
            case.sequences,
            "after {after}, limit {limit}, kinds {kinds:?}"
        );
        assert_eq!(
            batch.scanned_to, case.scanned_to,
            "scanned_to after {after}, limit {limit}, kinds {kinds:?}"
        );
        for event in &batch.events {
            assert!(
                kinds.is_empty() || kinds.contains(&event.kind.as_str()),
                "event {} of kind {} passed filter {kinds:?}",
                event.sequence,
                event.kind
            );
        }
    }
}

async fn read_after_limit_and_scanned_to(fixture: &Fixture) {
    let store = fixture.open().await;
    store
        .publish(indicators("x", 10, "ip"))
        .await
        .expect("publish");
    check_reads(
        &store,
        &[
            case(0, 4, &[], &[1, 2, 3, 4], 4),
            case(4, 4, &[], &[5, 6, 7, 8], 8),
            case(8, 4, &[], &[9, 10], 10),
            // A full batch that ends at the head.
            case(6, 4, &[], &[7, 8, 9, 10], 10),
            case(10, 4, &[], &[], 10),
            // A cursor beyond the head is kept, not moved back.
            case(20, 4, &[], &[], 20),
            case(u64::MAX, 4, &[], &[], u64::MAX),
            case(3, 0, &[], &[], 3),
        ],
    )
    .await;
    store.close().await;
}

async fn read_after_kinds_filter(fixture: &Fixture) {
    let store = fixture.open().await;
    let batch = vec![
        indicator("1", "url"),
        indicator("2", "ip"),
        indicator("3", "url"),
        indicator("4", "url"),
        indicator("5", "ip"),
        indicator("6", "hash"),
    ];
    store.publish(batch).await.expect("publish");
    check_reads(
        &store,
        &[
            case(0, 10, &["ip"], &[2, 5], 6),
            // Full batches stop the cursor at their last event, not at the head.
            case(0, 1, &["ip"], &[2], 2),
            case(2, 1, &["ip"], &[5], 5),
            // Nothing left of that kind: the cursor passes the events it will not receive.
            case(5, 1, &["ip"], &[], 6),
            case(0, 10, &["hash", "ip"], &[2, 5, 6], 6),
            case(0, 10, &["ip", "ip", "hash"], &[2, 5, 6], 6),
            case(0, 2, &["url", "hash"], &[1, 3], 3),
            case(0, 10, &["none"], &[], 6),
            case(0, 10, &[], &[1, 2, 3, 4, 5, 6], 6),
        ],
    )
    .await;
    store.close().await;
}

async fn retract_appends_event_and_marks_indicator(fixture: &Fixture) {
    let store = fixture.open().await;
    let batch = vec![indicator("a", "ip"), indicator("b", "url")];
    store.publish(batch.clone()).await.expect("publish");

    let at_micros = 1_800_000_000_000_000;
    let sequence = store
        .retract("a", "false positive", at_micros, None)
        .await
        .expect("retract a");
    assert_eq!(sequence, 3);
    assert_eq!(store.head().await, Ok(3));

    let retraction = StoredEvent {
        sequence: 3,
        at_micros,
        kind: "ip".to_owned(),
        body: EventBody::Retracted {
            indicator_id: "a".to_owned(),
            originator: batch[0].originator.clone(),
            reason: "false positive".to_owned(),
            signature: None,
        },
    };
    assert_eq!(
        read(&store, 2, 10, &[]).await,
        EventBatch {
            events: vec![retraction.clone()],
            scanned_to: 3,
            head: 3
        }
    );
    // A retraction travels with the kind of its indicator.
    assert_eq!(
        read(&store, 0, 10, &["ip"]).await.events,
        [published_event(1, &batch[0]), retraction]
    );
    assert_eq!(
        read(&store, 0, 10, &["url"]).await,
        EventBatch {
            events: vec![published_event(2, &batch[1])],
            scanned_to: 3,
            head: 3
        }
    );

    let a = store
        .indicator("a")
        .await
        .expect("read a")
        .expect("a stored");
    assert!(a.retracted);
    assert_eq!(a.sequence, 1, "the indicator keeps its published sequence");
    let b = store
        .indicator("b")
        .await
        .expect("read b")
        .expect("b stored");
    assert!(!b.retracted);
    store.close().await;
}

async fn retract_refusals_change_nothing(fixture: &Fixture) {
    let store = fixture.open().await;
    store
        .publish(vec![indicator("a", "ip")])
        .await
        .expect("publish");
    assert_eq!(store.retract("a", "first", 1, None).await, Ok(2));

    assert_eq!(
        store.retract("a", "again", 2, None).await,
        Err(StorageError::AlreadyRetracted { id: "a".to_owned() })
    );
    assert_eq!(
        store.retract("nowhere", "typo", 3, None).await,
        Err(StorageError::NotFound {
            id: "nowhere".to_owned()
        })
    );
    assert_eq!(
        store.head().await,
        Ok(2),
        "a refused retraction moved the head"
    );
    assert_eq!(sequences(&read(&store, 0, 10, &[]).await), [1, 2]);
    // Refusals left no hole in the numbering.
    assert_eq!(store.publish(vec![indicator("b", "ip")]).await, Ok(vec![3]));
    store.close().await;
}

async fn data_survives_close_and_reopen(fixture: &Fixture) {
    let store = fixture.open().await;
    let batch = indicators("kept", 3, "ip");
    store.publish(batch.clone()).await.expect("publish");
    store
        .retract("kept-1", "withdrawn", 7, None)
        .await
        .expect("retract");
    let before = read(&store, 0, 10, &[]).await;
    let decided = vec![decision("kept-decision", 8, "R1", "kept-0")];
    store.record_decisions(&decided).await.expect("record");
    store.close().await;
    drop(store);

    let reopened = fixture.open().await;
    assert_eq!(reopened.head().await, Ok(4));
    assert_eq!(read(&reopened, 0, 10, &[]).await, before);
    let retracted = reopened
        .indicator("kept-1")
        .await
        .expect("read kept-1")
        .expect("kept-1 stored");
    assert!(retracted.retracted);
    assert_eq!(
        query_decisions(&reopened, &all_decisions_query()).await,
        decided
    );
    assert_eq!(
        *reopened.watch_head().borrow(),
        4,
        "a reopened store starts from the stored head"
    );
    assert_eq!(
        reopened.publish(vec![indicator("after", "ip")]).await,
        Ok(vec![5])
    );
    reopened.close().await;
}

async fn operations_after_close_are_unavailable(fixture: &Fixture) {
    let store = fixture.open().await;
    let clone = store.clone();
    store.close().await;
    assert!(
        matches!(clone.head().await, Err(StorageError::Unavailable(_))),
        "head on a closed store"
    );
    assert!(
        matches!(
            clone.publish(vec![indicator("late", "ip")]).await,
            Err(StorageError::Unavailable(_))
        ),
        "publish on a closed store"
    );
    assert!(
        matches!(
            clone
                .record_decisions(&[decision("late", 1, "R1", "I1")])
                .await,
            Err(StorageError::Unavailable(_))
        ),
        "record_decisions on a closed store"
    );
    assert!(
        matches!(
            clone.decisions(&all_decisions_query()).await,
            Err(StorageError::Unavailable(_))
        ),
        "decisions on a closed store"
    );
    assert!(
        matches!(
            clone.purge_decisions_before(i64::MAX).await,
            Err(StorageError::Unavailable(_))
        ),
        "purge_decisions_before on a closed store"
    );
}

/// The gap trap of DESIGN.md: publishers on separate Stores (separate pools, as replicas would
/// be) commit concurrently while a follower reads from its cursor and moves it to
/// `scanned_to`, as a subscriber does. The follower must see every sequence exactly once, in
/// order: a sequence that became visible after the follower's cursor passed it is lost.
async fn concurrent_publishers_follower_sees_every_sequence_once(fixture: &Fixture) {
    const PUBLISHERS: usize = 8;
    const BATCHES: usize = 50;
    const BATCH_SIZE: usize = 3;
    const TOTAL: u64 = (PUBLISHERS * BATCHES * BATCH_SIZE) as u64;
    // Generous: 400 commits that fsync on a loaded 2-core machine.
    const DEADLINE: Duration = Duration::from_secs(180);

    let follower_store = fixture.open().await;
    let mut publisher_stores = Vec::new();
    for _ in 0..PUBLISHERS {
        publisher_stores.push(fixture.open().await);
    }

    let follower = tokio::spawn(async move {
        let mut head = follower_store.watch_head();
        let mut cursor = 0;
        let mut seen = Vec::new();
        let started = Instant::now();
        while cursor < TOTAL {
            assert!(
                started.elapsed() < DEADLINE,
                "follower stuck at {cursor} of {TOTAL}"
            );
            let batch = follower_store
                .read_after(cursor, 100, &[])
                .await
                .expect("follower reads");
            for event in &batch.events {
                assert!(event.sequence > cursor, "event {} repeated", event.sequence);
                seen.push(event.sequence);
            }
            // Without a filter, every event up to scanned_to must have been returned.
            let last_returned = batch.events.last().map_or(cursor, |event| event.sequence);
            assert_eq!(
                batch.scanned_to, last_returned,
                "scanned_to passes events that were not returned"
            );
            cursor = batch.scanned_to;
            if batch.events.is_empty() {
                // Other Stores' commits wake this one only on PostgreSQL; on SQLite this is
                // a poll interval.
                let _ = tokio::time::timeout(Duration::from_millis(20), head.changed()).await;
            }
        }
        follower_store.close().await;
        seen
    });

    let mut publishers = tokio::task::JoinSet::new();
    for (publisher, store) in publisher_stores.into_iter().enumerate() {
        publishers.spawn(async move {
            let mut published = Vec::new();
            for batch in 0..BATCHES {
                let sequences = store
                    .publish(indicators(
                        &format!("publisher{publisher}-batch{batch}"),
                        BATCH_SIZE,
                        "ip",
                    ))
                    .await
                    .expect("concurrent publish");
                assert!(
                    sequences.windows(2).all(|pair| pair[1] == pair[0] + 1),
                    "batch sequences not consecutive: {sequences:?}"
                );
                published.extend(sequences);
            }
            store.close().await;
            published
        });
    }
    let mut all_published = BTreeSet::new();
    while let Some(result) = publishers.join_next().await {
        for sequence in result.expect("publisher task") {
            assert!(
                all_published.insert(sequence),
                "sequence {sequence} handed out twice"
            );
        }
    }
    assert_eq!(all_published, (1..=TOTAL).collect::<BTreeSet<_>>());

    let seen = tokio::time::timeout(DEADLINE, follower)
        .await
        .expect("follower finished")
        .expect("follower task");
    let seen_once: BTreeSet<u64> = seen.iter().copied().collect();
    let missing: Vec<u64> = (1..=TOTAL)
        .filter(|sequence| !seen_once.contains(sequence))
        .collect();
    assert!(
        missing.is_empty(),
        "the follower never saw {} sequences, the first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        seen.windows(2).all(|pair| pair[1] == pair[0] + 1) && seen.len() as u64 == TOTAL,
        "the follower did not see every sequence once, in order"
    );
}

async fn watch_head_wakes_on_own_commit(fixture: &Fixture) {
    let store = fixture.open().await;
    let mut head = store.watch_head();
    assert_eq!(*head.borrow_and_update(), 0);

    let publisher = store.clone();
    let published = tokio::spawn(async move {
        publisher
            .publish(indicators("woken", 2, "ip"))
            .await
            .expect("publish")
    });
    within_patience(
        "watch_head woken by a commit of the same store",
        head.wait_for(|head| *head >= 2),
    )
    .await
    .expect("head sender alive");
    assert_eq!(published.await.expect("publisher task"), [1, 2]);

    let retracted = store
        .retract("woken-0", "test", 9, None)
        .await
        .expect("retract");
    assert!(head.has_changed().expect("head sender alive"));
    assert_eq!(*head.borrow_and_update(), retracted);
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Federation cases, run against every backend

const PEER: &str = "spiffe://federation/member/SN";
const OTHER_ORIGINATOR: &str = "spiffe://federation/member/XX";

/// An indicator of `indicator`'s originator as received from [`PEER`].
fn received_indicator(id: &str, kind: &str) -> NewIndicator {
    NewIndicator {
        via: Some(PEER.to_owned()),
        ..indicator(id, kind)
    }
}

fn received(id: &str, kind: &str) -> Received {
    Received::Published(received_indicator(id, kind))
}

fn revision(id: &str, originator: &str, supersedes: &str) -> Received {
    Received::Published(NewIndicator {
        originator: originator.to_owned(),
        supersedes: Some(supersedes.to_owned()),
        ..received_indicator(id, "ip")
    })
}

fn retraction(id: &str, originator: &str, signature: Option<&[u8]>) -> Received {
    Received::Retracted {
        indicator_id: id.to_owned(),
        originator: originator.to_owned(),
        reason: format!("{id} withdrawn"),
        at_micros: 1_800_000_000_000_000 + id.len() as i64,
        signature: signature.map(<[u8]>::to_vec),
    }
}

fn originator() -> String {
    indicator("", "").originator
}

fn outcome(
    stored: &[(&str, u64)],
    duplicates: &[&str],
    retracted: &[(&str, u64)],
    ignored_retractions: &[&str],
) -> ReceiveOutcome {
    let pairs = |list: &[(&str, u64)]| {
        list.iter()
            .map(|(id, sequence)| ((*id).to_owned(), *sequence))
            .collect()
    };
    let ids = |list: &[&str]| list.iter().map(|id| (*id).to_owned()).collect();
    ReceiveOutcome {
        stored: pairs(stored),
        duplicates: ids(duplicates),
        conflicts: Vec::new(),
        retracted: pairs(retracted),
        ignored_retractions: ids(ignored_retractions),
    }
}

async fn receive(store: &Store, cursor: u64, items: Vec<Received>) -> ReceiveOutcome {
    store.receive(PEER, cursor, items).await.expect("receive")
}

async fn stored_indicator(store: &Store, id: &str) -> StoredIndicator {
    store
        .indicator(id)
        .await
        .expect("read indicator")
        .unwrap_or_else(|| panic!("{id} is not stored"))
}

async fn superseded_by(store: &Store, id: &str) -> Option<String> {
    stored_indicator(store, id).await.superseded_by
}

fn micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

async fn receive_sequences_gap_free_between_publishes(fixture: &Fixture) {
    let store = fixture.open().await;
    let local = indicator("local", "ip");
    assert_eq!(store.publish(vec![local.clone()]).await, Ok(vec![1]));

    let first = [
        received_indicator("r1", "url"),
        received_indicator("r2", "ip"),
    ];
    assert_eq!(
        receive(
            &store,
            7,
            first.iter().cloned().map(Received::Published).collect()
        )
        .await,
        outcome(&[("r1", 2), ("r2", 3)], &[], &[], &[])
    );
    let later = indicator("later", "hash");
    assert_eq!(store.publish(vec![later.clone()]).await, Ok(vec![4]));
    let last = received_indicator("r3", "ip");
    assert_eq!(
        receive(&store, 9, vec![Received::Published(last.clone())]).await,
        outcome(&[("r3", 5)], &[], &[], &[])
    );
    assert_eq!(store.head().await, Ok(5));
    assert_eq!(
        read(&store, 0, 10, &[]).await,
        EventBatch {
            events: vec![
                published_event(1, &local),
                published_event(2, &first[0]),
                published_event(3, &first[1]),
                published_event(4, &later),
                published_event(5, &last),
            ],
            scanned_to: 5,
            head: 5,
        }
    );
    assert_eq!(
        stored_indicator(&store, "r1").await,
        StoredIndicator {
            id: "r1".to_owned(),
            originator: originator(),
            kind: "url".to_owned(),
            payload: first[0].payload.clone(),
            sequence: 2,
            retracted: false,
            via: Some(PEER.to_owned()),
            superseded_by: None,
            circle: None,
        }
    );
    store.close().await;
}

/// Receivers and publishers on separate Stores commit concurrently while a follower reads from
/// its cursor: every sequence is handed out once and seen once, in order.
async fn concurrent_receives_and_publishes_follower_sees_every_sequence_once(fixture: &Fixture) {
    const ROUNDS: u64 = 25;
    const PAGE: u64 = 3;
    const BATCH: u64 = 2;
    const TOTAL: u64 = ROUNDS * (2 * PAGE + BATCH);

    let follower_store = fixture.open().await;
    let follower = tokio::spawn(async move {
        let mut cursor = 0;
        let mut seen = Vec::new();
        let started = Instant::now();
        while cursor < TOTAL {
            assert!(
                started.elapsed() < 4 * PATIENCE,
                "follower stuck at {cursor}"
            );
            let batch = read(&follower_store, cursor, 50, &[]).await;
            assert!(batch.scanned_to <= batch.head, "scanned past the head");
            seen.extend(sequences(&batch));
            cursor = batch.scanned_to;
            if batch.events.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        follower_store.close().await;
        seen
    });

    let mut writers = tokio::task::JoinSet::new();
    for receiver in 0..2 {
        let store = fixture.open().await;
        writers.spawn(async move {
            let peer = format!("peer-{receiver}");
            let mut sequences = Vec::new();
            for round in 0..ROUNDS {
                let items = (0..PAGE)
                    .map(|n| received(&format!("{peer}-{round}-{n}"), "ip"))
                    .collect();
                let done = store
                    .receive(&peer, round + 1, items)
                    .await
                    .expect("concurrent receive");
                let page: Vec<u64> = done.stored.iter().map(|(_, sequence)| *sequence).collect();
                assert!(
                    page.windows(2).all(|pair| pair[1] == pair[0] + 1),
                    "page sequences not consecutive: {page:?}"
                );
                sequences.extend(page);
            }
            assert_eq!(store.peer_cursor(&peer).await, Ok(ROUNDS));
            store.close().await;
            sequences
        });
    }
    let store = fixture.open().await;
    writers.spawn(async move {
        let mut sequences = Vec::new();
        for round in 0..ROUNDS {
            sequences.extend(
                store
                    .publish(indicators(&format!("local-{round}"), BATCH as usize, "ip"))
                    .await
                    .expect("concurrent publish"),
            );
        }
        store.close().await;
        sequences
    });
    let mut handed_out = BTreeSet::new();
    while let Some(result) = writers.join_next().await {
        for sequence in result.expect("writer task") {
            assert!(
                handed_out.insert(sequence),
                "sequence {sequence} handed out twice"
            );
        }
    }
    assert_eq!(handed_out, (1..=TOTAL).collect::<BTreeSet<_>>());
    let seen = within_patience("follower", follower)
        .await
        .expect("follower task");
    assert_eq!(seen, (1..=TOTAL).collect::<Vec<_>>());
}

async fn receive_skips_duplicates_without_events(fixture: &Fixture) {
    let store = fixture.open().await;
    let local = indicator("local", "ip");
    store.publish(vec![local.clone()]).await.expect("publish");

    // Within the call and with a stored indicator. The same indicator again is a duplicate;
    // another originator's (or other content) under a held id is a conflict; neither is stored.
    let clash = Received::Published(NewIndicator {
        originator: OTHER_ORIGINATOR.to_owned(),
        payload: b"another payload".to_vec(),
        ..received_indicator("local", "url")
    });
    let items = vec![
        received("x", "ip"),
        clash,
        received("x", "url"),
        received("y", "ip"),
    ];
    assert_eq!(
        receive(&store, 1, items).await,
        ReceiveOutcome {
            conflicts: vec!["local".to_owned()],
            ..outcome(&[("x", 2), ("y", 3)], &["x"], &[], &[])
        }
    );
    let local_stored = stored_indicator(&store, "local").await;
    assert_eq!(
        (
            local_stored.kind.as_str(),
            &local_stored.payload,
            &local_stored.via
        ),
        ("ip", &local.payload, &None),
        "a duplicate changed the stored indicator"
    );
    assert_eq!(
        stored_indicator(&store, "x").await.kind,
        "ip",
        "the first x wins"
    );

    // The same page again, as after a crash before the cursor moved: nothing new.
    let again = vec![received("x", "ip"), received("y", "ip")];
    assert_eq!(
        receive(&store, 1, again).await,
        outcome(&[], &["x", "y"], &[], &[])
    );
    assert_eq!(store.head().await, Ok(3), "duplicates took sequences");
    assert_eq!(sequences(&read(&store, 0, 10, &[]).await), [1, 2, 3]);
    // And a local publish of a received id is refused as before.
    assert_eq!(
        store.publish(vec![indicator("y", "ip")]).await,
        Err(StorageError::Duplicate { id: "y".to_owned() })
    );
    assert_eq!(store.publish(vec![indicator("z", "ip")]).await, Ok(vec![4]));
    store.close().await;
}

/// Makes the cursor write of `peer` fail, the last statement of its receive: SQL that only this
/// test runs, so it is written per backend here.
async fn refuse_cursor_of(fixture: &Fixture, peer: &str) {
    match fixture {
        Fixture::Sqlite { url, .. } => {
            let mut connection = SqliteConnection::connect(url)
                .await
                .expect("open the sqlite file");
            connection
                .execute(sqlx::AssertSqlSafe(format!(
                    "CREATE TRIGGER refuse_cursor BEFORE INSERT ON peer_cursors \
                     WHEN NEW.peer = '{peer}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )))
                .await
                .expect("create trigger");
            connection.close().await.ok();
        }
        Fixture::Postgres { schema, .. } => {
            let mut connection = fixture.admin_connection().await;
            let schema = &schema.schema;
            connection
                .execute(sqlx::AssertSqlSafe(format!(
                    "CREATE FUNCTION \"{schema}\".refuse_cursor() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN \
                     IF NEW.peer = '{peer}' THEN RAISE EXCEPTION 'refused'; END IF; \
                     RETURN NEW; END $$"
                )))
                .await
                .expect("create function");
            connection
                .execute(sqlx::AssertSqlSafe(format!(
                    "CREATE TRIGGER refuse_cursor BEFORE INSERT ON \"{schema}\".peer_cursors \
                     FOR EACH ROW EXECUTE FUNCTION \"{schema}\".refuse_cursor()"
                )))
                .await
                .expect("create trigger");
            connection.close().await.ok();
        }
    }
}

async fn peer_cursor_moves_with_its_items_and_never_back(fixture: &Fixture) {
    let store = fixture.open().await;
    assert_eq!(store.peer_cursor(PEER).await, Ok(0));
    assert_eq!(store.peer_cursors().await, Ok(vec![]));

    receive(&store, 10, vec![received("a", "ip")]).await;
    assert_eq!(store.peer_cursor(PEER).await, Ok(10));
    // Behind the stored cursor: the items are stored, the cursor stays.
    assert_eq!(
        receive(&store, 4, vec![received("b", "ip")]).await,
        outcome(&[("b", 2)], &[], &[], &[])
    );
    assert_eq!(store.peer_cursor(PEER).await, Ok(10));

    // A checkpoint: no items, the cursor and its time move, the head does not.
    let before = micros_now();
    assert_eq!(
        receive(&store, 12, Vec::new()).await,
        ReceiveOutcome::default()
    );
    let after = micros_now();
    assert_eq!(store.head().await, Ok(2));
    let cursors = store.peer_cursors().await.expect("read cursors");
    assert_eq!(cursors.len(), 1);
    assert_eq!((cursors[0].peer.as_str(), cursors[0].cursor), (PEER, 12));
    assert!(
        (before..=after).contains(&cursors[0].updated_micros),
        "updated at {} outside {before}..={after}",
        cursors[0].updated_micros
    );

    // Cursors are kept per peer and listed bytewise: upper case before lower case.
    for (peer, cursor) in [("b-peer", 3), ("B-peer", 5), ("a-peer", u64::MAX)] {
        store
            .receive(peer, cursor, Vec::new())
            .await
            .expect("checkpoint");
    }
    let listed: Vec<(String, u64)> = store
        .peer_cursors()
        .await
        .expect("read cursors")
        .into_iter()
        .map(|cursor| (cursor.peer, cursor.cursor))
        .collect();
    let expected = [
        ("B-peer", 5),
        ("a-peer", i64::MAX as u64),
        ("b-peer", 3),
        (PEER, 12),
    ];
    assert_eq!(
        listed,
        expected.map(|(peer, cursor)| (peer.to_owned(), cursor))
    );

    // The cursor write fails last: the items before it go too, and leave no hole.
    refuse_cursor_of(fixture, "refused-peer").await;
    let refused = store
        .receive(
            "refused-peer",
            50,
            vec![received("c", "ip"), retraction("a", &originator(), None)],
        )
        .await;
    assert!(
        matches!(refused, Err(StorageError::Database(_))),
        "{refused:?}"
    );
    assert_eq!(store.peer_cursor("refused-peer").await, Ok(0));
    assert_eq!(store.indicator("c").await, Ok(None));
    assert!(!stored_indicator(&store, "a").await.retracted);
    assert_eq!(store.head().await, Ok(2));
    assert_eq!(
        receive(&store, 13, vec![received("c", "ip")]).await,
        outcome(&[("c", 3)], &[], &[], &[])
    );
    store.close().await;

    let reopened = fixture.open().await;
    assert_eq!(reopened.peer_cursor(PEER).await, Ok(13));
    reopened.close().await;
}

async fn receive_retractions_apply_only_to_their_originator(fixture: &Fixture) {
    let store = fixture.open().await;
    let mine = originator();
    receive(&store, 1, vec![received("x", "url"), received("y", "ip")]).await;
    let signature: Vec<u8> = (0..=255).rev().collect();

    let items = vec![
        retraction("x", OTHER_ORIGINATOR, Some(b"forged")),
        retraction("unknown", &mine, None),
        retraction("x", &mine, Some(&signature)),
        retraction("x", &mine, None),
        retraction("y", &mine, Some(&[])),
    ];
    assert_eq!(
        receive(&store, 2, items).await,
        outcome(&[], &[], &[("x", 3), ("y", 4)], &["x", "unknown", "x"])
    );
    assert_eq!(
        store.head().await,
        Ok(4),
        "ignored retractions took sequences"
    );
    let expected_retraction =
        |sequence, id: &str, kind: &str, signature: Option<Vec<u8>>| StoredEvent {
            sequence,
            at_micros: 1_800_000_000_000_000 + id.len() as i64,
            kind: kind.to_owned(),
            body: EventBody::Retracted {
                indicator_id: id.to_owned(),
                originator: mine.clone(),
                reason: format!("{id} withdrawn"),
                signature,
            },
        };
    assert_eq!(
        read(&store, 2, 10, &[]).await.events,
        [
            expected_retraction(3, "x", "url", Some(signature.clone())),
            expected_retraction(4, "y", "ip", Some(Vec::new())),
        ],
        "signatures round-trip, an empty one as empty"
    );
    assert!(stored_indicator(&store, "x").await.retracted);

    // A retraction of a local indicator by another originator, or of one already retracted
    // through retract(), is ignored too.
    store
        .publish(vec![indicator("local", "ip"), indicator("gone", "ip")])
        .await
        .expect("publish");
    assert_eq!(store.retract("gone", "local", 9, Some(b"sig")).await, Ok(7));
    assert_eq!(
        receive(
            &store,
            3,
            vec![
                retraction("local", OTHER_ORIGINATOR, None),
                retraction("gone", &mine, None),
            ]
        )
        .await,
        outcome(&[], &[], &[], &["local", "gone"])
    );
    assert!(!stored_indicator(&store, "local").await.retracted);
    let events = read(&store, 6, 10, &[]).await;
    assert_eq!(
        events.events,
        [StoredEvent {
            sequence: 7,
            at_micros: 9,
            kind: "ip".to_owned(),
            body: EventBody::Retracted {
                indicator_id: "gone".to_owned(),
                originator: mine.clone(),
                reason: "local".to_owned(),
                signature: Some(b"sig".to_vec()),
            },
        }],
        "retract() stores its signature"
    );
    assert_eq!((events.scanned_to, events.head), (7, 7));
    store.close().await;
}

async fn publish_then_retract_in_one_receive(fixture: &Fixture) {
    let store = fixture.open().await;
    let mine = originator();
    let x = received_indicator("x", "hash");
    let items = vec![
        retraction("y", &mine, None),
        Received::Published(x.clone()),
        received("y", "ip"),
        retraction("x", &mine, Some(b"signed")),
    ];
    // The retraction of y comes before y: ignored.
    assert_eq!(
        receive(&store, 4, items).await,
        outcome(&[("x", 1), ("y", 2)], &[], &[("x", 3)], &["y"])
    );
    assert_eq!(
        read(&store, 0, 10, &["hash"]).await.events,
        [
            published_event(1, &x),
            StoredEvent {
                sequence: 3,
                at_micros: 1_800_000_000_000_001,
                kind: "hash".to_owned(),
                body: EventBody::Retracted {
                    indicator_id: "x".to_owned(),
                    originator: mine,
                    reason: "x withdrawn".to_owned(),
                    signature: Some(b"signed".to_vec()),
                },
            },
        ]
    );
    let x = stored_indicator(&store, "x").await;
    assert!(x.retracted);
    assert_eq!(x.sequence, 1);
    assert!(!stored_indicator(&store, "y").await.retracted);
    store.close().await;
}

async fn via_and_superseded_by_round_trip(fixture: &Fixture) {
    let store = fixture.open().await;
    let mine = originator();
    store
        .publish(vec![indicator("v1", "ip")])
        .await
        .expect("publish v1");
    let v1 = stored_indicator(&store, "v1").await;
    assert_eq!((v1.via, v1.superseded_by), (None, None));

    receive(&store, 1, vec![revision("v2", &mine, "v1")]).await;
    assert_eq!(superseded_by(&store, "v1").await, Some("v2".to_owned()));
    let v2 = stored_indicator(&store, "v2").await;
    assert_eq!((v2.via.as_deref(), v2.superseded_by), (Some(PEER), None));

    // The latest revision wins; other originators, unknown ids and the indicator itself are
    // not marked, and the revision is stored all the same.
    receive(
        &store,
        2,
        vec![
            revision("v3", &mine, "v1"),
            revision("foreign", OTHER_ORIGINATOR, "v3"),
            revision("orphan", &mine, "never-stored"),
            revision("selfish", &mine, "selfish"),
        ],
    )
    .await;
    assert_eq!(superseded_by(&store, "v1").await, Some("v3".to_owned()));
    assert_eq!(
        superseded_by(&store, "v3").await,
        None,
        "another originator's revision"
    );
    assert_eq!(superseded_by(&store, "selfish").await, None);
    assert_eq!(store.indicator("never-stored").await, Ok(None));
    assert!(store.indicator("orphan").await.expect("read").is_some());

    // In order: a revision received before what it revises does not mark it.
    receive(
        &store,
        3,
        vec![revision("early", &mine, "late"), received("late", "ip")],
    )
    .await;
    assert_eq!(superseded_by(&store, "late").await, None);

    // A duplicate revision marks nothing.
    receive(&store, 4, vec![revision("v2", &mine, "v3")]).await;
    assert_eq!(superseded_by(&store, "v3").await, None);

    // publish() marks too, after the whole batch is stored, and stores via.
    let with =
        |id: &str, originator: &str, supersedes: Option<&str>, via: Option<&str>| NewIndicator {
            originator: originator.to_owned(),
            supersedes: supersedes.map(str::to_owned),
            via: via.map(str::to_owned),
            ..indicator(id, "ip")
        };
    store
        .publish(vec![
            with("p2", &mine, Some("p1"), None),
            with("p1", &mine, None, Some("relay")),
            with("p3", &mine, Some("v2"), None),
            with("p4", &mine, Some("v2"), None),
            with("p5", OTHER_ORIGINATOR, Some("v2"), None),
            with("p6", OTHER_ORIGINATOR, Some("orphan"), None),
        ])
        .await
        .expect("publish revisions");
    assert_eq!(superseded_by(&store, "p1").await, Some("p2".to_owned()));
    assert_eq!(
        stored_indicator(&store, "p1").await.via.as_deref(),
        Some("relay")
    );
    assert_eq!(
        superseded_by(&store, "v2").await,
        Some("p4".to_owned()),
        "the later revision of the batch by v2's originator"
    );
    assert_eq!(superseded_by(&store, "orphan").await, None);

    // A refused batch marks nothing.
    let refused = store
        .publish(vec![
            with("p7", &mine, Some("v3"), None),
            with("p1", &mine, None, None),
        ])
        .await;
    assert_eq!(
        refused,
        Err(StorageError::Duplicate {
            id: "p1".to_owned()
        })
    );
    assert_eq!(superseded_by(&store, "v3").await, None);
    store.close().await;
}

async fn receive_raises_watch_head(fixture: &Fixture) {
    let store = fixture.open().await;
    let mut head = store.watch_head();
    assert_eq!(*head.borrow_and_update(), 0);

    let receiver = store.clone();
    let received_page = tokio::spawn(async move {
        receive(&receiver, 1, vec![received("a", "ip"), received("b", "ip")]).await
    });
    within_patience(
        "watch_head woken by a receive",
        head.wait_for(|head| *head >= 2),
    )
    .await
    .expect("head sender alive");
    assert_eq!(
        received_page.await.expect("receiver task"),
        outcome(&[("a", 1), ("b", 2)], &[], &[], &[])
    );
    head.borrow_and_update();

    // Nothing applied: the head did not move, followers are not woken.
    receive(&store, 2, vec![received("a", "ip")]).await;
    receive(&store, 3, Vec::new()).await;
    receive(&store, 4, vec![retraction("zz", &originator(), None)]).await;
    assert!(!head.has_changed().expect("head sender alive"));

    receive(&store, 5, vec![retraction("a", &originator(), None)]).await;
    assert!(head.has_changed().expect("head sender alive"));
    assert_eq!(*head.borrow_and_update(), 3);
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Decision log cases, run against every backend

/// A decision id that sorts by `n`: UUID-shaped, lowercase hex.
fn decision_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn decision(id: &str, at_micros: i64, recipient: &str, indicator_id: &str) -> DecisionRow {
    DecisionRow {
        decision_id: id.to_owned(),
        at_micros,
        recipient: recipient.to_owned(),
        indicator_id: indicator_id.to_owned(),
        channel: "subscribe".to_owned(),
        policy_revision: "rev-1".to_owned(),
        allow: true,
        redact: vec!["source".to_owned()],
        reasons: vec![format!("{recipient} may receive {indicator_id}")],
        error: None,
    }
}

/// The decisions of `rows` on `indicator` and for `recipient` (each when set), in their order.
fn decisions_of(
    rows: &[DecisionRow],
    indicator: Option<&str>,
    recipient: Option<&str>,
) -> Vec<DecisionRow> {
    rows.iter()
        .filter(|row| indicator.is_none_or(|id| row.indicator_id == id))
        .filter(|row| recipient.is_none_or(|name| row.recipient == name))
        .cloned()
        .collect()
}

fn sorted_by_keyset(mut rows: Vec<DecisionRow>) -> Vec<DecisionRow> {
    rows.sort_by(|a, b| (a.at_micros, &a.decision_id).cmp(&(b.at_micros, &b.decision_id)));
    rows
}

fn ids(rows: &[DecisionRow]) -> Vec<&str> {
    rows.iter().map(|row| row.decision_id.as_str()).collect()
}

fn all_decisions_query() -> DecisionQuery {
    DecisionQuery {
        limit: MAX_DECISIONS_PER_QUERY,
        ..DecisionQuery::default()
    }
}

async fn query_decisions(store: &Store, query: &DecisionQuery) -> Vec<DecisionRow> {
    store.decisions(query).await.expect("query decisions")
}

/// Every stored decision, page by page, checking that pages follow each other in order.
async fn every_decision(store: &Store, mut query: DecisionQuery) -> Vec<DecisionRow> {
    let mut all: Vec<DecisionRow> = Vec::new();
    loop {
        let page = query_decisions(store, &query).await;
        assert!(page.len() <= query.limit as usize, "page over its limit");
        let Some(last) = page.last() else {
            return all;
        };
        query.after_decision = Some((last.at_micros, last.decision_id.clone()));
        let short = page.len() < query.limit as usize;
        all.extend(page);
        if short {
            return all;
        }
    }
}

async fn decisions_round_trip_every_field(fixture: &Fixture) {
    let store = fixture.open().await;
    store
        .record_decisions(&[])
        .await
        .expect("record an empty batch");
    assert_eq!(query_decisions(&store, &all_decisions_query()).await, []);

    let allowed_plain = DecisionRow {
        redact: Vec::new(),
        reasons: Vec::new(),
        ..decision(&decision_id(1), 1_700_000_000_000_000, "member/GH", "ind-1")
    };
    let denied_with_error = DecisionRow {
        channel: "fetch".to_owned(),
        policy_revision: "sha256:0f1e2d".to_owned(),
        allow: false,
        redact: vec!["source".to_owned(), "source.contact.email".to_owned()],
        reasons: vec![
            "TLP:RED is only for releasable_to".to_owned(),
            "quote \" comma , backslash \\ bracket ] newline \n é 🦀".to_owned(),
        ],
        error: Some("evaluation timed out after 50ms".to_owned()),
        ..decision(&decision_id(2), 1_700_000_000_000_001, "member/SN", "ind-2")
    };
    let empty_strings = DecisionRow {
        redact: vec![String::new()],
        reasons: vec![String::new(), String::new()],
        error: Some(String::new()),
        ..decision(&decision_id(3), 0, "", "")
    };
    let earliest = DecisionRow {
        error: None,
        ..decision(&decision_id(4), i64::MIN, "member/GH", "ind-1")
    };
    let latest = decision(&decision_id(5), i64::MAX, "member/GH", "ind-1");
    let recorded = vec![
        denied_with_error.clone(),
        latest.clone(),
        allowed_plain.clone(),
        earliest.clone(),
        empty_strings.clone(),
    ];
    store
        .record_decisions(&recorded)
        .await
        .expect("record decisions");

    assert_eq!(
        query_decisions(&store, &all_decisions_query()).await,
        [
            earliest,
            empty_strings,
            allowed_plain,
            denied_with_error,
            latest
        ],
        "every field, oldest first"
    );
    assert_eq!(store.head().await, Ok(0), "decisions moved the feed head");
    store.close().await;
}

/// Three recipients, two indicators, times with ties, recorded in two batches out of order.
fn filter_fixture() -> Vec<DecisionRow> {
    let plan: [(u64, i64, &str, &str); 12] = [
        (12, 300, "R2", "I2"),
        (1, 100, "R1", "I1"),
        (2, 100, "R2", "I1"),
        (3, 100, "R1", "I2"),
        (11, 300, "R1", "I1"),
        (4, 150, "R3", "I1"),
        (5, 200, "R1", "I1"),
        (6, 200, "R2", "I2"),
        (7, 200, "R3", "I2"),
        (8, 250, "R1", "I2"),
        (9, 250, "R2", "I1"),
        (10, 300, "R3", "I1"),
    ];
    plan.iter()
        .map(|&(n, at, recipient, indicator)| decision(&decision_id(n), at, recipient, indicator))
        .collect()
}

fn id_list(numbers: &[u64]) -> Vec<String> {
    numbers.iter().copied().map(decision_id).collect()
}

async fn decisions_filter_by_indicator_recipient_and_time(fixture: &Fixture) {
    let store = fixture.open().await;
    let rows = filter_fixture();
    store
        .record_decisions(&rows[..5])
        .await
        .expect("record first batch");
    store
        .record_decisions(&rows[5..])
        .await
        .expect("record second batch");

    let query =
        |indicator: Option<&str>, recipient: Option<&str>, since: Option<i64>| DecisionQuery {
            indicator_id: indicator.map(str::to_owned),
            recipient: recipient.map(str::to_owned),
            since_micros: since,
            after_decision: None,
            limit: 100,
        };
    // Each filter alone, and combined, against hand-written answers.
    let cases: [(DecisionQuery, &[u64]); 10] = [
        (
            query(None, None, None),
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        ),
        (query(Some("I1"), None, None), &[1, 2, 4, 5, 9, 10, 11]),
        (query(None, Some("R1"), None), &[1, 3, 5, 8, 11]),
        (query(None, None, Some(200)), &[5, 6, 7, 8, 9, 10, 11, 12]),
        (query(None, None, Some(201)), &[8, 9, 10, 11, 12]),
        (query(Some("I2"), Some("R2"), None), &[6, 12]),
        (query(Some("I1"), None, Some(250)), &[9, 10, 11]),
        (query(None, Some("R3"), Some(150)), &[4, 7, 10]),
        (query(Some("I1"), Some("R1"), Some(150)), &[5, 11]),
        (query(Some("I9"), None, None), &[]),
    ];
    for (query, expected) in cases {
        let found = query_decisions(&store, &query).await;
        assert_eq!(ids(&found), id_list(expected), "{query:?}");
    }

    // Every combination against a filter over all rows, comparing whole rows.
    let all = sorted_by_keyset(rows);
    for indicator in [None, Some("I1"), Some("I2"), Some("none")] {
        for recipient in [None, Some("R1"), Some("R2"), Some("R3"), Some("none")] {
            for since in [
                None,
                Some(i64::MIN),
                Some(100),
                Some(150),
                Some(300),
                Some(301),
            ] {
                let query = query(indicator, recipient, since);
                let expected: Vec<DecisionRow> = all
                    .iter()
                    .filter(|row| indicator.is_none_or(|id| row.indicator_id == id))
                    .filter(|row| recipient.is_none_or(|id| row.recipient == id))
                    .filter(|row| since.is_none_or(|since| row.at_micros >= since))
                    .cloned()
                    .collect();
                assert_eq!(query_decisions(&store, &query).await, expected, "{query:?}");
            }
        }
    }
    store.close().await;
}

async fn decisions_keyset_pagination_with_limit(fixture: &Fixture) {
    let store = fixture.open().await;
    // 23 decisions over 6 instants, so most pages end inside a run of equal times; ids
    // recorded in an order unrelated to theirs.
    let rows: Vec<DecisionRow> = (0..23_u64)
        .map(|n| {
            let id = decision_id((n * 7) % 23);
            let recipient = if n % 3 == 0 { "R1" } else { "R2" };
            decision(&id, 1_000 + (n % 6) as i64, recipient, "I1")
        })
        .collect();
    store.record_decisions(&rows).await.expect("record");
    let all = sorted_by_keyset(rows);

    let mut query = DecisionQuery {
        limit: 5,
        ..DecisionQuery::default()
    };
    let mut pages = Vec::new();
    loop {
        let page = query_decisions(&store, &query).await;
        if page.is_empty() {
            break;
        }
        let last = page.last().expect("non-empty page");
        query.after_decision = Some((last.at_micros, last.decision_id.clone()));
        pages.push(page);
        assert!(pages.len() <= 5, "pagination does not end");
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [5, 5, 5, 5, 3]);
    assert_eq!(pages.concat(), all, "pages, joined, are every row in order");

    // With filters, the same helper walks the same rows as a single filtered query.
    let filtered = DecisionQuery {
        recipient: Some("R2".to_owned()),
        since_micros: Some(1_002),
        limit: 4,
        ..DecisionQuery::default()
    };
    let expected: Vec<DecisionRow> = all
        .iter()
        .filter(|row| row.recipient == "R2" && row.at_micros >= 1_002)
        .cloned()
        .collect();
    assert!(expected.len() > 8, "the filtered walk needs several pages");
    assert_eq!(every_decision(&store, filtered).await, expected);

    // A cursor need not be a stored row: ("", t) is before every id at time t.
    let from_cursor = |at_micros: i64, id: &str, limit: u32| DecisionQuery {
        after_decision: Some((at_micros, id.to_owned())),
        limit,
        ..DecisionQuery::default()
    };
    let at_1003: Vec<DecisionRow> = all
        .iter()
        .filter(|row| row.at_micros >= 1_003)
        .cloned()
        .collect();
    assert_eq!(
        query_decisions(&store, &from_cursor(1_003, "", 100)).await,
        at_1003
    );
    // The row at the cursor itself is excluded, the next one with the same time included.
    let middle = &all[10];
    let page = query_decisions(
        &store,
        &from_cursor(middle.at_micros, &middle.decision_id, 2),
    )
    .await;
    assert_eq!(page, all[11..13]);
    // The cursor combined with since: the later of the two bounds applies.
    let both = DecisionQuery {
        since_micros: Some(1_004),
        ..from_cursor(1_001, "", 100)
    };
    let from_1004: Vec<DecisionRow> = all
        .iter()
        .filter(|row| row.at_micros >= 1_004)
        .cloned()
        .collect();
    assert_eq!(query_decisions(&store, &both).await, from_1004);
    let last = all.last().expect("rows");
    assert_eq!(
        query_decisions(&store, &from_cursor(last.at_micros, &last.decision_id, 10)).await,
        []
    );
    assert_eq!(
        query_decisions(&store, &from_cursor(i64::MIN, "", 0)).await,
        [],
        "limit 0"
    );
    store.close().await;
}

/// Ids are ordered bytewise (as SQLite and Rust compare strings), whatever the locale of a
/// PostgreSQL database: an upper-case hex digit sorts before every lower-case one.
async fn decision_ids_order_bytewise(fixture: &Fixture) {
    let store = fixture.open().await;
    let ids_in_order = [
        "0000000B-0000-4000-8000-000000000000",
        "0000000a-0000-4000-8000-000000000000",
        "0000000b-0000-4000-8000-000000000000",
        "0000000c-0000-4000-8000-000000000000",
    ];
    let rows: Vec<DecisionRow> = ids_in_order
        .iter()
        .rev()
        .map(|id| decision(id, 5, "R1", "I1"))
        .collect();
    store.record_decisions(&rows).await.expect("record");
    let found = query_decisions(&store, &all_decisions_query()).await;
    assert_eq!(ids(&found), ids_in_order);
    let after_upper = DecisionQuery {
        after_decision: Some((5, ids_in_order[0].to_owned())),
        limit: 10,
        ..DecisionQuery::default()
    };
    assert_eq!(
        ids(&query_decisions(&store, &after_upper).await),
        ids_in_order[1..]
    );
    store.close().await;
}

async fn purge_decisions_before_cutoff(fixture: &Fixture) {
    let store = fixture.open().await;
    assert_eq!(
        store.purge_decisions_before(i64::MAX).await,
        Ok(0),
        "empty log"
    );
    let rows = filter_fixture();
    store.record_decisions(&rows).await.expect("record");

    // Strictly older than the cutoff: the decisions at 200 stay.
    assert_eq!(store.purge_decisions_before(200).await, Ok(4));
    let kept = query_decisions(&store, &all_decisions_query()).await;
    let expected: Vec<DecisionRow> = sorted_by_keyset(rows)
        .into_iter()
        .filter(|row| row.at_micros >= 200)
        .collect();
    assert_eq!(kept, expected, "the rest is untouched");
    // A batch that straddled the cutoff was rewritten: read by its keys, it holds what it kept.
    for (indicator, recipient) in [
        (Some("I1"), None),
        (None, Some("R1")),
        (Some("I2"), Some("R2")),
    ] {
        let query = DecisionQuery {
            indicator_id: indicator.map(str::to_owned),
            recipient: recipient.map(str::to_owned),
            ..all_decisions_query()
        };
        let keyed = decisions_of(&expected, indicator, recipient);
        assert_eq!(query_decisions(&store, &query).await, keyed, "{query:?}");
    }
    assert_eq!(
        store.purge_decisions_before(200).await,
        Ok(0),
        "purged twice"
    );
    assert_eq!(store.purge_decisions_before(i64::MIN).await, Ok(0));
    assert_eq!(store.purge_decisions_before(301).await, Ok(8));
    assert_eq!(query_decisions(&store, &all_decisions_query()).await, []);
    store.close().await;
}

/// Batches and purges larger than their internal chunks (inserts of 500 rows, purges of
/// 1,000), and a limit above the cap.
async fn large_batches_are_capped_and_purged_in_chunks(fixture: &Fixture) {
    let store = fixture.open().await;
    let total = MAX_DECISIONS_PER_QUERY as usize + 50;
    let rows: Vec<DecisionRow> = (0..total as u64)
        .map(|n| decision(&decision_id(n), n as i64, "R1", "I1"))
        .collect();
    store
        .record_decisions(&rows)
        .await
        .expect("record a large batch");

    let capped = query_decisions(
        &store,
        &DecisionQuery {
            limit: u32::MAX,
            ..DecisionQuery::default()
        },
    )
    .await;
    assert_eq!(capped.len(), MAX_DECISIONS_PER_QUERY as usize);
    assert_eq!(capped, rows[..MAX_DECISIONS_PER_QUERY as usize]);

    assert_eq!(store.purge_decisions_before(2_500).await, Ok(2_500));
    let rest = every_decision(&store, all_decisions_query()).await;
    assert_eq!(rest, rows[2_500..], "after the purge, oldest first");
    assert_eq!(
        store.purge_decisions_before(i64::MAX).await,
        Ok((total - 2_500) as u64)
    );
    assert_eq!(query_decisions(&store, &all_decisions_query()).await, []);
    store.close().await;
}

/// Writes `rows` as the decision log stored them before its compact form (migration 0009):
/// one row each in `decisions`.
async fn insert_rows_of_the_old_form(fixture: &Fixture, rows: &[DecisionRow]) {
    const INSERT: &str = "INSERT INTO decisions (decision_id, at_micros, recipient, \
         indicator_id, channel, policy_revision, allow, redact, reasons, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    macro_rules! insert {
        ($connection:expr) => {
            for row in rows {
                sqlx::query(INSERT)
                    .bind(&row.decision_id)
                    .bind(row.at_micros)
                    .bind(&row.recipient)
                    .bind(&row.indicator_id)
                    .bind(&row.channel)
                    .bind(&row.policy_revision)
                    .bind(row.allow)
                    .bind(serde_json::to_string(&row.redact).expect("redact"))
                    .bind(serde_json::to_string(&row.reasons).expect("reasons"))
                    .bind(&row.error)
                    .execute(&mut $connection)
                    .await
                    .expect("insert a decision of the old form");
            }
        };
    }
    match fixture {
        Fixture::Sqlite { url, .. } => {
            let mut connection = SqliteConnection::connect(url).await.expect("connect");
            insert!(connection);
        }
        Fixture::Postgres { options, .. } => {
            let mut connection = PgConnection::connect_with(options).await.expect("connect");
            insert!(connection);
        }
    }
}

/// Decisions stored one row each before the compact form are read, paged, filtered, counted
/// and purged together with the batches written since.
async fn decisions_of_the_old_form_are_read_beside_the_batches(fixture: &Fixture) {
    let store = fixture.open().await;
    let rows = filter_fixture();
    // Both forms at every time, so that the purge takes from both.
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for (index, row) in rows.iter().cloned().enumerate() {
        if index % 2 == 0 {
            old.push(row);
        } else {
            new.push(row);
        }
    }
    insert_rows_of_the_old_form(fixture, &old).await;
    store.record_decisions(&new[..3]).await.expect("record");
    store.record_decisions(&new[3..]).await.expect("record");

    let all = sorted_by_keyset(rows.clone());
    let paged = every_decision(
        &store,
        DecisionQuery {
            limit: 4,
            ..all_decisions_query()
        },
    )
    .await;
    assert_eq!(paged, all, "both forms, page by page, in the keyset order");
    for (indicator, recipient) in [
        (Some("I1"), None),
        (None, Some("R2")),
        (Some("I2"), Some("R1")),
    ] {
        let query = DecisionQuery {
            indicator_id: indicator.map(str::to_owned),
            recipient: recipient.map(str::to_owned),
            limit: 3,
            ..all_decisions_query()
        };
        let expected = decisions_of(&all, indicator, recipient);
        assert_eq!(
            every_decision(&store, query).await,
            expected,
            "{indicator:?} {recipient:?}"
        );
    }

    let counts = |groups: Vec<cordon_storage::DecisionGroup>| -> Vec<(String, u64, i64, i64)> {
        let mut counts: Vec<_> = groups
            .into_iter()
            .map(|group| {
                (
                    group.recipient,
                    group.count,
                    group.first_micros,
                    group.last_micros,
                )
            })
            .collect();
        counts.sort();
        counts
    };
    let expected_counts = |rows: &[DecisionRow], first_at_least: i64| {
        let mut counts: Vec<(String, u64, i64, i64)> = ["R1", "R2", "R3"]
            .iter()
            .filter_map(|&recipient| {
                let times: Vec<i64> = rows
                    .iter()
                    .filter(|row| row.recipient == recipient)
                    .map(|row| row.at_micros)
                    .collect();
                let first = times.iter().min()?;
                let last = times.iter().max()?;
                Some((
                    recipient.to_owned(),
                    times.len() as u64,
                    (*first).max(first_at_least),
                    *last,
                ))
            })
            .collect();
        counts.sort();
        counts
    };
    assert_eq!(
        counts(store.oversight_decision_groups().await.expect("groups")),
        expected_counts(&rows, i64::MIN),
        "one group per recipient, counting both forms"
    );

    let older = rows.iter().filter(|row| row.at_micros < 200).count() as u64;
    assert_eq!(store.purge_decisions_before(200).await, Ok(older));
    let kept: Vec<DecisionRow> = all
        .iter()
        .filter(|row| row.at_micros >= 200)
        .cloned()
        .collect();
    assert_eq!(query_decisions(&store, &all_decisions_query()).await, kept);
    assert_eq!(
        counts(store.oversight_decision_groups().await.expect("groups")),
        expected_counts(&kept, 200),
        "the purge uncounted what it removed"
    );
    store.close().await;
}

/// A write notes the feed pages its decisions are on; a read of a page finds the decisions of
/// that recipient under that revision, from every write whose page overlaps it, and only those.
async fn page_decisions_find_what_a_write_noted(fixture: &Fixture) {
    let store = fixture.open().await;
    let page = |recipient: &str, revision: &str, after: u64, to: u64| DecidedPage {
        recipient: recipient.to_owned(),
        policy_revision: revision.to_owned(),
        after,
        to,
    };
    let mut first: Vec<DecisionRow> = (1..=3)
        .map(|n| decision(&decision_id(n), n as i64, "R1", &format!("I{n}")))
        .collect();
    let mut other = decision(&decision_id(4), 4, "R2", "I1");
    other.policy_revision = "rev-2".to_owned();
    first.push(other.clone());
    store
        .record_page_decisions(
            &first,
            // R1's page twice (two streams of one identity in one group write), and pages
            // ending elsewhere over the same events: the batch is found once.
            &[
                page("R1", "rev-1", 0, 3),
                page("R1", "rev-1", 0, 3),
                page("R1", "rev-1", 1, 3),
                page("R1", "rev-1", 2, 4),
                page("R2", "rev-2", 0, 3),
                // Wider than a page may be: not noted.
                page("R3", "rev-1", 0, 1_000_000),
            ],
        )
        .await
        .expect("record a page");
    let later = vec![decision(&decision_id(5), 5, "R1", "I5")];
    store
        .record_page_decisions(&later, &[page("R1", "rev-1", 3, 7)])
        .await
        .expect("record the next page");
    store
        .record_decisions(&[decision(&decision_id(6), 6, "R1", "I6")])
        .await
        .expect("record without a page");

    let found = |recipient: &'static str, revision: &'static str, after: u64, to: u64| {
        let store = store.clone();
        async move {
            let mut rows = store
                .page_decisions(recipient, revision, (after, to), i64::MIN)
                .await
                .expect("page decisions");
            rows.sort_by(|a, b| a.decision_id.cmp(&b.decision_id));
            rows.into_iter()
                .map(|row| row.decision_id)
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(found("R1", "rev-1", 0, 3).await, id_list(&[1, 2, 3]));
    assert_eq!(
        found("R1", "rev-1", 2, 4).await,
        id_list(&[1, 2, 3, 5]),
        "two pages overlap"
    );
    // The first write also noted (2, 4], which overlaps.
    assert_eq!(found("R1", "rev-1", 3, 7).await, id_list(&[1, 2, 3, 5]));
    assert_eq!(found("R1", "rev-1", 4, 7).await, id_list(&[5]));
    assert_eq!(
        found("R1", "rev-1", 7, 100).await,
        id_list(&[]),
        "after every page"
    );
    assert_eq!(found("R2", "rev-2", 0, 100).await, id_list(&[4]));
    assert_eq!(
        found("R2", "rev-1", 0, 100).await,
        id_list(&[]),
        "another revision"
    );
    assert_eq!(
        found("R3", "rev-1", 0, 100).await,
        id_list(&[]),
        "another recipient"
    );
    let since_3 = store
        .page_decisions("R1", "rev-1", (0, 7), 3)
        .await
        .expect("page decisions since");
    let mut since_3: Vec<String> = since_3.into_iter().map(|row| row.decision_id).collect();
    since_3.sort();
    assert_eq!(since_3, id_list(&[3, 5]), "only decisions made since");

    assert_eq!(store.purge_decisions_before(5).await, Ok(4));
    assert_eq!(
        found("R1", "rev-1", 0, 100).await,
        id_list(&[5]),
        "purged with their batch"
    );
    store.close().await;
}

/// A write that repeats a decision id is refused whole, however long it is; the store goes on
/// taking decisions. (Ids are not checked against earlier writes: the gateway makes them
/// unique, UUIDv7 with 74 random bits, and an index of every id was the cost the compact form
/// removed.)
async fn duplicate_decision_id_stores_nothing(fixture: &Fixture) {
    let store = fixture.open().await;
    let stored = decision(&decision_id(1), 10, "R1", "I1");
    store
        .record_decisions(std::slice::from_ref(&stored))
        .await
        .expect("record");

    // Repeated within the batch.
    let refused = store
        .record_decisions(&[
            decision(&decision_id(4), 13, "R1", "I1"),
            decision(&decision_id(4), 14, "R1", "I1"),
        ])
        .await;
    assert!(
        matches!(refused, Err(StorageError::Database(ref message)) if message.contains(&decision_id(4))),
        "repeat within the batch: {refused:?}"
    );

    // Repeated at the end of a long batch, over several key statements and two batches
    // (its times span more than a batch may).
    let mut long: Vec<DecisionRow> = (100..700)
        .map(|n| {
            decision(
                &decision_id(n),
                n as i64 * 2_000_000,
                "R1",
                &format!("I{n}"),
            )
        })
        .collect();
    long.push(decision(&decision_id(100), 1_000, "R1", "I1"));
    let refused = store.record_decisions(&long).await;
    assert!(
        matches!(refused, Err(StorageError::Database(ref message)) if message.contains(&decision_id(100))),
        "repeat at the end of a long batch: {refused:?}"
    );

    assert_eq!(
        query_decisions(&store, &all_decisions_query()).await,
        [stored],
        "a refused batch left rows behind or changed the stored one"
    );
    // The store still takes decisions, including the ids of the refused batches.
    store
        .record_decisions(&[
            decision(&decision_id(2), 11, "R1", "I1"),
            decision(&decision_id(4), 13, "R1", "I1"),
        ])
        .await
        .expect("record after refusals");
    assert_eq!(
        ids(&query_decisions(&store, &all_decisions_query()).await),
        id_list(&[1, 2, 4])
    );
    store.close().await;
}

/// The gateway writes decision batches while it publishes: on SQLite both go through the one
/// writer connection. Both must get through, and the feed must stay gap-free.
async fn decision_batches_and_publishes_interleave(fixture: &Fixture) {
    const ROUNDS: u64 = 30;
    const DECISIONS_PER_BATCH: u64 = 200;
    let store = fixture.open().await;
    let decisions = tokio::spawn({
        let store = store.clone();
        async move {
            for round in 0..ROUNDS {
                let batch: Vec<DecisionRow> = (0..DECISIONS_PER_BATCH)
                    .map(|n| {
                        let n = round * DECISIONS_PER_BATCH + n;
                        decision(&decision_id(n), n as i64, "R1", "I1")
                    })
                    .collect();
                store.record_decisions(&batch).await.expect("record batch");
            }
        }
    });
    let publishes = tokio::spawn({
        let store = store.clone();
        async move {
            let mut sequences = Vec::new();
            for round in 0..ROUNDS {
                sequences.extend(
                    store
                        .publish(indicators(&format!("interleaved{round}"), 2, "ip"))
                        .await
                        .expect("publish"),
                );
            }
            sequences
        }
    });
    let (decided, published) = within_patience("decision batches and publishes", async {
        tokio::join!(decisions, publishes)
    })
    .await;
    decided.expect("decision task");
    assert_eq!(
        published.expect("publish task"),
        (1..=2 * ROUNDS).collect::<Vec<_>>()
    );
    let stored = every_decision(&store, all_decisions_query()).await;
    assert_eq!(stored.len() as u64, ROUNDS * DECISIONS_PER_BATCH);
    assert_eq!(store.head().await, Ok(2 * ROUNDS));
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Cases for PostgreSQL only: other processes on the same database

/// A replica's commit must wake this Store's followers through LISTEN/NOTIFY, without polling.
async fn watch_head_wakes_on_commit_by_replica(fixture: &Fixture) {
    let follower_store = fixture.open().await;
    let replica = fixture.open().await;
    let mut head = follower_store.watch_head();
    assert_eq!(*head.borrow_and_update(), 0);

    let published = replica
        .publish(indicators("replica", 3, "ip"))
        .await
        .expect("publish on the replica");
    within_patience(
        "watch_head woken by a commit of another store",
        head.wait_for(|head| *head >= 3),
    )
    .await
    .expect("head sender alive");
    assert_eq!(published, [1, 2, 3]);
    assert_eq!(
        sequences(&read(&follower_store, 0, 10, &[]).await),
        [1, 2, 3]
    );

    replica
        .retract("replica-2", "test", 5, None)
        .await
        .expect("retract");
    within_patience(
        "watch_head woken by a retraction on another store",
        head.wait_for(|head| *head >= 4),
    )
    .await
    .expect("head sender alive");
    replica.close().await;
    follower_store.close().await;
}

async fn backends_named(connection: &mut PgConnection, application_name: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(application_name)
        .fetch_one(connection)
        .await
        .expect("count backends")
}

/// Polls (a bounded number of times) until the server has no backend named so: a backend ends
/// a moment after its client closes the socket.
async fn wait_until_no_backends(connection: &mut PgConnection, application_name: &str) {
    let started = Instant::now();
    loop {
        let count = backends_named(connection, application_name).await;
        if count == 0 {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{count} connections of {application_name} still open after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Killing the listener's connection must not leave followers asleep: the listener reconnects,
/// wakes them (notifications may have been lost meanwhile) and keeps listening.
async fn listener_reconnects_and_wakes_followers(fixture: &Fixture) {
    let name = format!("cordon-test-{}", uuid::Uuid::new_v4().simple());
    let follower_store = fixture.open_named(&name).await;
    let replica = fixture.open().await;
    let mut admin = fixture.admin_connection().await;
    let mut head = follower_store.watch_head();
    head.borrow_and_update();

    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&mut admin)
    .await
    .expect("terminate the store's connections");
    assert!(
        !terminated.is_empty(),
        "no connection of the store to terminate"
    );

    within_patience(
        "followers woken after the listener reconnected",
        head.changed(),
    )
    .await
    .expect("head sender alive");

    let published = replica
        .publish(indicators("after-reconnect", 1, "ip"))
        .await
        .expect("publish on the replica");
    within_patience(
        "watch_head woken by a replica after the listener reconnected",
        head.wait_for(|head| *head >= published[0]),
    )
    .await
    .expect("head sender alive");
    // The store's own pool recovered too.
    assert_eq!(follower_store.head().await, Ok(published[0]));
    replica.close().await;
    follower_store.close().await;
}

/// Neither the pool nor the listener outlives its Store, whether closed or just dropped.
async fn closed_or_dropped_store_leaves_no_connection(fixture: &Fixture) {
    let mut admin = fixture.admin_connection().await;

    let closed_name = format!("cordon-test-{}", uuid::Uuid::new_v4().simple());
    let closed = fixture.open_named(&closed_name).await;
    closed.head().await.expect("read head");
    assert!(
        backends_named(&mut admin, &closed_name).await >= 2,
        "expected a pool connection and a listener connection"
    );
    closed.close().await;
    wait_until_no_backends(&mut admin, &closed_name).await;

    let dropped_name = format!("cordon-test-{}", uuid::Uuid::new_v4().simple());
    let dropped = fixture.open_named(&dropped_name).await;
    let clone = dropped.clone();
    dropped.head().await.expect("read head");
    drop(dropped);
    assert!(
        backends_named(&mut admin, &dropped_name).await >= 2,
        "a live clone must keep the store open"
    );
    drop(clone);
    wait_until_no_backends(&mut admin, &dropped_name).await;
}

/// The next head notified on the feed channel for the fixture's schema (others share it).
async fn next_notified_head(listener: &mut PgListener, schema: &str) -> String {
    let prefix = format!("{schema}:");
    loop {
        let notification = within_patience("a head notification", listener.recv())
            .await
            .expect("receive notification");
        if let Some(head) = notification.payload().strip_prefix(&prefix) {
            return head.to_owned();
        }
    }
}

/// The trigger notifies only when the head moves: a receive first locks the head without
/// moving it, and a checkpoint or a page of duplicates never moves it; neither may notify the
/// unchanged head.
async fn head_notifications_only_when_the_head_moves(fixture: &Fixture) {
    let Fixture::Postgres { schema, .. } = fixture else {
        panic!("notifications are for postgresql fixtures");
    };
    let mut listener = PgListener::connect(&schema.url)
        .await
        .expect("connect listener");
    listener.listen("cordon_feed").await.expect("listen");
    let store = fixture.open().await;

    receive(&store, 1, Vec::new()).await;
    receive(&store, 2, vec![received("a", "ip"), received("b", "ip")]).await;
    assert_eq!(next_notified_head(&mut listener, &schema.schema).await, "2");

    receive(&store, 3, vec![received("a", "ip")]).await;
    store
        .publish(vec![indicator("c", "ip")])
        .await
        .expect("publish");
    assert_eq!(next_notified_head(&mut listener, &schema.schema).await, "3");
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Circle cases: the openmls key-value store, circles, the hub's log, KeyPackages, departures

const CIRCLE: &str = "circle-lynx";

fn circle_row(name: &str, epoch: u64, position: u64) -> CircleRow {
    CircleRow {
        name: name.to_owned(),
        group_id: format!("group of {name}").into_bytes(),
        hub: "spiffe://federation/member/HUB".to_owned(),
        epoch,
        position,
        status: "active".to_owned(),
        created_micros: 1_700_000_000_000_000,
    }
}

fn log_entry(circle: &str, position: u64, message: &[u8]) -> CircleLogEntry {
    CircleLogEntry {
        circle: circle.to_owned(),
        position,
        epoch: position.saturating_sub(1),
        sender: "spiffe://federation/member/GH".to_owned(),
        kind: "commit".to_owned(),
        message: message.to_vec(),
        at_micros: 1_700_000_000_000_100 + position as i64,
    }
}

fn key_package(tag: u8, last_resort: bool) -> KeyPackageRow {
    KeyPackageRow {
        hash_ref: vec![tag; 32],
        key_package: format!("key package {tag}").into_bytes(),
        last_resort,
        issued_to: None,
        issued_micros: None,
        created_micros: 1_700_000_000_000_000 + i64::from(tag),
    }
}

fn put(key: &[u8], value: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    (key.to_vec(), Some(value.to_vec()))
}

fn delete(key: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    (key.to_vec(), None)
}

fn values(pairs: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_vec(), value.to_vec()))
        .collect()
}

/// Indicators of `CIRCLE`, stored by `write`.
fn in_circle(indicators: Vec<NewIndicator>) -> CircleWrite {
    CircleWrite {
        indicators,
        indicators_circle: Some(CIRCLE.to_owned()),
        ..CircleWrite::default()
    }
}

async fn circle_write(store: &Store, write: CircleWrite) -> CircleWriteOutcome {
    store.circle_write(write).await.expect("circle write")
}

async fn circle_log(store: &Store, circle: &str, from_position: u64) -> Vec<CircleLogEntry> {
    store
        .circle_log(circle, from_position, 100)
        .await
        .expect("read circle log")
}

async fn circle_write_round_trips(fixture: &Fixture) {
    let store = fixture.open().await;
    let outside = indicator("outside", "ip");
    store.publish(vec![outside.clone()]).await.expect("publish");
    let mut head = store.watch_head();
    head.borrow_and_update();

    let shared = vec![indicator("a", "ip"), indicator("bb", "url")];
    let first = CircleWrite {
        kv: vec![put(b"k2", b"v2"), put(b"k1", b"v1")],
        circle: Some(circle_row(CIRCLE, 0, 1)),
        log: vec![log_entry(CIRCLE, 1, b"welcome")],
        key_packages: vec![key_package(1, false)],
        ..in_circle(shared.clone())
    };
    assert_eq!(
        circle_write(&store, first).await,
        CircleWriteOutcome {
            stored: vec![("a".to_owned(), 2), ("bb".to_owned(), 3)],
            ..CircleWriteOutcome::default()
        }
    );
    assert!(head.has_changed().expect("head sender alive"));
    assert_eq!(*head.borrow_and_update(), 3);
    assert_eq!(store.head().await, Ok(3));

    assert_eq!(
        store.mls_values().await,
        Ok(values(&[(b"k1", b"v1"), (b"k2", b"v2")]))
    );
    assert_eq!(store.circles().await, Ok(vec![circle_row(CIRCLE, 0, 1)]));
    assert_eq!(
        store.circle(CIRCLE).await,
        Ok(Some(circle_row(CIRCLE, 0, 1)))
    );
    assert_eq!(store.circle("circle-other").await, Ok(None));
    assert_eq!(
        circle_log(&store, CIRCLE, 1).await,
        [log_entry(CIRCLE, 1, b"welcome")]
    );
    assert_eq!(circle_log(&store, CIRCLE, 2).await, []);
    assert_eq!(circle_log(&store, "circle-other", 1).await, []);
    assert_eq!(store.key_packages().await, Ok(vec![key_package(1, false)]));

    // The indicators are in the feed as published events, after the one published outside.
    assert_eq!(
        read(&store, 1, 10, &[]).await,
        EventBatch {
            events: vec![
                published_event(2, &shared[0]),
                published_event(3, &shared[1])
            ],
            scanned_to: 3,
            head: 3,
        }
    );
    assert_eq!(
        stored_indicator(&store, "bb").await,
        StoredIndicator {
            id: "bb".to_owned(),
            originator: shared[1].originator.clone(),
            kind: "url".to_owned(),
            payload: shared[1].payload.clone(),
            sequence: 3,
            retracted: false,
            via: None,
            superseded_by: None,
            circle: Some(CIRCLE.to_owned()),
        }
    );
    assert_eq!(stored_indicator(&store, "outside").await.circle, None);

    // The next commit: the circle moves on, a second circle sorts before it, the log grows and
    // pages ascending. Without indicators the head does not move.
    let removed = CircleRow {
        status: "removed".to_owned(),
        ..circle_row(CIRCLE, 1, 2)
    };
    let second = CircleWrite {
        circle: Some(removed.clone()),
        log: vec![log_entry(CIRCLE, 2, b"commit")],
        ..CircleWrite::default()
    };
    assert_eq!(
        circle_write(&store, second).await,
        CircleWriteOutcome::default()
    );
    circle_write(
        &store,
        CircleWrite {
            circle: Some(circle_row("circle-ant", 0, 0)),
            ..CircleWrite::default()
        },
    )
    .await;
    assert_eq!(
        store.circles().await,
        Ok(vec![circle_row("circle-ant", 0, 0), removed.clone()])
    );
    assert_eq!(
        circle_log(&store, CIRCLE, 1).await,
        [
            log_entry(CIRCLE, 1, b"welcome"),
            log_entry(CIRCLE, 2, b"commit")
        ]
    );
    assert_eq!(
        circle_log(&store, CIRCLE, 2).await,
        [log_entry(CIRCLE, 2, b"commit")]
    );
    assert_eq!(
        store.circle_log(CIRCLE, 1, 1).await,
        Ok(vec![log_entry(CIRCLE, 1, b"welcome")])
    );
    assert_eq!(store.circle_log(CIRCLE, 1, 0).await, Ok(Vec::new()));
    assert_eq!(store.head().await, Ok(3));
    assert!(!head.has_changed().expect("head sender alive"));
    store.close().await;

    // And it all survives a reopen.
    let reopened = fixture.open().await;
    assert_eq!(
        reopened.mls_values().await,
        Ok(values(&[(b"k1", b"v1"), (b"k2", b"v2")]))
    );
    assert_eq!(reopened.circle(CIRCLE).await, Ok(Some(removed)));
    assert_eq!(circle_log(&reopened, CIRCLE, 1).await.len(), 2);
    reopened.close().await;
}

async fn circle_write_at_a_taken_log_position_writes_nothing(fixture: &Fixture) {
    let store = fixture.open().await;
    let first = CircleWrite {
        kv: vec![put(b"k1", b"v1")],
        circle: Some(circle_row(CIRCLE, 0, 1)),
        log: vec![log_entry(CIRCLE, 1, b"first commit")],
        key_packages: vec![key_package(1, false)],
        ..in_circle(vec![indicator("a", "ip")])
    };
    circle_write(&store, first).await;

    // Another commit for the same epoch, which lost the race: every part of it is refused.
    let racing = CircleWrite {
        kv: vec![put(b"k1", b"overwritten"), put(b"k2", b"v2"), delete(b"k1")],
        circle: Some(circle_row(CIRCLE, 1, 2)),
        log: vec![log_entry(CIRCLE, 1, b"racing commit")],
        key_packages: vec![key_package(2, false)],
        issue_key_package: Some((key_package(1, false).hash_ref, "member".to_owned(), 5)),
        departures: vec![(CIRCLE.to_owned(), "member".to_owned(), Some(1))],
        ..in_circle(vec![indicator("x", "ip"), indicator("y", "ip")])
    };
    assert_eq!(
        store.circle_write(racing.clone()).await,
        Err(StorageError::LogPositionTaken {
            circle: CIRCLE.to_owned(),
            position: 1
        })
    );
    let unchanged = async |store: &Store| {
        assert_eq!(store.mls_values().await, Ok(values(&[(b"k1", b"v1")])));
        assert_eq!(store.circles().await, Ok(vec![circle_row(CIRCLE, 0, 1)]));
        assert_eq!(
            circle_log(store, CIRCLE, 1).await,
            [log_entry(CIRCLE, 1, b"first commit")]
        );
        assert_eq!(store.key_packages().await, Ok(vec![key_package(1, false)]));
        assert_eq!(store.departure(CIRCLE, "member").await, Ok(None));
        assert_eq!(store.head().await, Ok(1));
        assert_eq!(sequences(&read(store, 0, 10, &[]).await), [1]);
        assert_eq!(store.indicator("x").await, Ok(None));
    };
    unchanged(&store).await;

    // Indicators without their circle are refused before anything is written.
    let orphans = CircleWrite {
        indicators_circle: None,
        log: vec![log_entry(CIRCLE, 2, b"orphan commit")],
        ..racing.clone()
    };
    assert!(matches!(
        store.circle_write(orphans).await,
        Err(StorageError::Database(_))
    ));
    unchanged(&store).await;

    // The same write at the next position goes through whole.
    let next = CircleWrite {
        log: vec![log_entry(CIRCLE, 2, b"racing commit")],
        ..racing
    };
    assert_eq!(
        circle_write(&store, next).await.stored,
        [("x".to_owned(), 2), ("y".to_owned(), 3)]
    );
    assert_eq!(store.mls_values().await, Ok(values(&[(b"k2", b"v2")])));
    assert_eq!(
        store.circle(CIRCLE).await,
        Ok(Some(circle_row(CIRCLE, 1, 2)))
    );
    assert_eq!(circle_log(&store, CIRCLE, 1).await.len(), 2);
    assert_eq!(store.key_packages().await.map(|rows| rows.len()), Ok(2));
    assert_eq!(store.departure(CIRCLE, "member").await, Ok(Some(1)));
    assert_eq!(
        stored_indicator(&store, "y").await.circle.as_deref(),
        Some(CIRCLE)
    );
    store.close().await;
}

fn pending_welcome(member: &str, position: u64, welcome: &[u8]) -> PendingWelcome {
    PendingWelcome {
        circle: CIRCLE.to_owned(),
        member: member.to_owned(),
        position,
        welcome: welcome.to_vec(),
        created_micros: 1_790_000_000_000_000 + position as i64,
    }
}

async fn pending_welcomes_are_kept_with_their_add_and_forgotten_once(fixture: &Fixture) {
    let store = fixture.open().await;
    let add = |position: u64, member: &str, welcome: &[u8]| CircleWrite {
        circle: Some(circle_row(CIRCLE, position, position)),
        log: vec![log_entry(CIRCLE, position, b"add commit")],
        welcome: Some(pending_welcome(member, position, welcome)),
        ..CircleWrite::default()
    };
    circle_write(&store, add(1, "NG", b"welcome NG")).await;
    // An add that lost its log position keeps no Welcome either.
    assert_eq!(
        store.circle_write(add(1, "SN", b"welcome SN")).await,
        Err(StorageError::LogPositionTaken {
            circle: CIRCLE.to_owned(),
            position: 1
        })
    );
    circle_write(&store, add(2, "SN", b"welcome SN")).await;
    assert_eq!(
        store.pending_welcomes().await,
        Ok(vec![
            pending_welcome("NG", 1, b"welcome NG"),
            pending_welcome("SN", 2, b"welcome SN"),
        ])
    );
    // Delivered: forgotten once; a delivery of an older add forgets nothing.
    assert_eq!(store.welcome_delivered(CIRCLE, "NG", 1).await, Ok(true));
    assert_eq!(store.welcome_delivered(CIRCLE, "NG", 1).await, Ok(false));
    assert_eq!(store.welcome_delivered(CIRCLE, "SN", 1).await, Ok(false));
    // SN removed before taking it, then added again: the removal drops the old Welcome and
    // the new add keeps its own.
    circle_write(
        &store,
        CircleWrite {
            log: vec![log_entry(CIRCLE, 3, b"remove commit")],
            welcomes_dropped: vec![(CIRCLE.to_owned(), "SN".to_owned())],
            ..CircleWrite::default()
        },
    )
    .await;
    assert_eq!(store.pending_welcomes().await, Ok(Vec::new()));
    circle_write(&store, add(4, "SN", b"welcome SN again")).await;
    assert_eq!(store.welcome_delivered(CIRCLE, "SN", 2).await, Ok(false));
    store.close().await;
    let store = fixture.open().await;
    assert_eq!(
        store.pending_welcomes().await,
        Ok(vec![pending_welcome("SN", 4, b"welcome SN again")])
    );
    store.close().await;
}

async fn outbox_entries_are_kept_and_forgotten_with_their_writes(fixture: &Fixture) {
    let store = fixture.open().await;
    let keep = |digest: &[u8], indicator: &[u8]| {
        (CIRCLE.to_owned(), digest.to_vec(), Some(indicator.to_vec()))
    };
    let forget = |digest: &[u8]| (CIRCLE.to_owned(), digest.to_vec(), None);
    // Kept with the sender's ratchet.
    circle_write(
        &store,
        CircleWrite {
            kv: vec![put(b"ratchet", b"1")],
            outbox: vec![keep(b"d1", b"indicator one"), keep(b"d2", b"indicator two")],
            ..CircleWrite::default()
        },
    )
    .await;
    assert_eq!(
        store.outbox_entry(CIRCLE, b"d1").await,
        Ok(Some(b"indicator one".to_vec()))
    );
    assert_eq!(store.outbox_entry("other", b"d1").await, Ok(None));
    // A write that fails forgets nothing and stores nothing.
    circle_write(
        &store,
        CircleWrite {
            log: vec![log_entry(CIRCLE, 1, b"taken")],
            ..CircleWrite::default()
        },
    )
    .await;
    assert!(
        store
            .circle_write(CircleWrite {
                log: vec![log_entry(CIRCLE, 1, b"again")],
                outbox: vec![forget(b"d1")],
                ..in_circle(vec![indicator("one", "ip")])
            })
            .await
            .is_err()
    );
    assert_eq!(
        store.outbox_entry(CIRCLE, b"d1").await,
        Ok(Some(b"indicator one".to_vec()))
    );
    // Forgotten in the write that stores the indicator.
    let outcome = circle_write(
        &store,
        CircleWrite {
            outbox: vec![forget(b"d1")],
            ..in_circle(vec![indicator("one", "ip")])
        },
    )
    .await;
    assert_eq!(outcome.stored.len(), 1);
    assert_eq!(store.outbox_entry(CIRCLE, b"d1").await, Ok(None));
    assert_eq!(
        store.outbox_entry(CIRCLE, b"d2").await,
        Ok(Some(b"indicator two".to_vec()))
    );
    store.close().await;
}

async fn circle_write_deletes_values_and_skips_held_indicators(fixture: &Fixture) {
    let store = fixture.open().await;
    let local = indicator("local", "ip");
    store.publish(vec![local.clone()]).await.expect("publish");
    let a = indicator("a", "ip");
    let b = indicator("b", "ip");
    let first = CircleWrite {
        kv: vec![put(b"k1", b"v1"), put(b"k2", b"v2"), put(b"k3", b"v3")],
        ..in_circle(vec![a.clone(), b.clone()])
    };
    circle_write(&store, first).await;

    // The last change of each key wins; deleting a key never stored is no error.
    let altered_b = NewIndicator {
        payload: b"other content".to_vec(),
        ..b.clone()
    };
    let foreign_a = NewIndicator {
        originator: OTHER_ORIGINATOR.to_owned(),
        ..a.clone()
    };
    let revision = NewIndicator {
        supersedes: Some("a".to_owned()),
        ..indicator("c", "url")
    };
    let second = CircleWrite {
        kv: vec![
            delete(b"k1"),
            put(b"k2", b"v2 again"),
            put(b"k3", b"short-lived"),
            delete(b"k3"),
            delete(b"k5"),
            put(b"k5", b"v5"),
            delete(b"never stored"),
        ],
        ..in_circle(vec![
            a.clone(),
            altered_b,
            revision.clone(),
            revision.clone(),
            foreign_a,
            local.clone(),
        ])
    };
    assert_eq!(
        circle_write(&store, second).await,
        CircleWriteOutcome {
            stored: vec![("c".to_owned(), 4)],
            duplicates: vec!["a".to_owned(), "c".to_owned(), "local".to_owned()],
            conflicts: vec!["b".to_owned(), "a".to_owned()],
        }
    );
    assert_eq!(
        store.mls_values().await,
        Ok(values(&[(b"k2", b"v2 again"), (b"k5", b"v5")]))
    );
    assert_eq!(
        store.head().await,
        Ok(4),
        "skipped indicators took sequences"
    );
    assert_eq!(sequences(&read(&store, 0, 10, &[]).await), [1, 2, 3, 4]);
    assert_eq!(stored_indicator(&store, "b").await.payload, b.payload);
    assert_eq!(stored_indicator(&store, "a").await.originator, a.originator);
    assert_eq!(superseded_by(&store, "a").await.as_deref(), Some("c"));
    assert_eq!(
        stored_indicator(&store, "c").await.circle.as_deref(),
        Some(CIRCLE)
    );
    assert_eq!(
        stored_indicator(&store, "local").await.circle,
        None,
        "a duplicate moved the indicator into the circle"
    );
    // A circle indicator is a feed indicator: publishing its id again is refused, and it can
    // be retracted.
    assert_eq!(
        store.publish(vec![indicator("c", "url")]).await,
        Err(StorageError::Duplicate { id: "c".to_owned() })
    );
    assert_eq!(store.retract("c", "withdrawn", 9, None).await, Ok(5));
    assert_eq!(store.checkpoint().await, Ok(()));
    store.close().await;
}

async fn key_packages_are_issued_and_departures_kept(fixture: &Fixture) {
    let store = fixture.open().await;
    let packages = vec![key_package(2, true), key_package(1, false)];
    circle_write(
        &store,
        CircleWrite {
            key_packages: packages.clone(),
            ..CircleWrite::default()
        },
    )
    .await;
    assert_eq!(
        store.key_packages().await,
        Ok(vec![key_package(1, false), key_package(2, true)]),
        "oldest first"
    );

    let issued = |tag: u8, last_resort: bool, to: &str, at: i64| KeyPackageRow {
        issued_to: Some(to.to_owned()),
        issued_micros: Some(at),
        ..key_package(tag, last_resort)
    };
    circle_write(
        &store,
        CircleWrite {
            issue_key_package: Some((vec![1; 32], "member-x".to_owned(), 123)),
            ..CircleWrite::default()
        },
    )
    .await;
    assert_eq!(
        store.key_packages().await,
        Ok(vec![
            issued(1, false, "member-x", 123),
            key_package(2, true)
        ])
    );
    // A last-resort one is issued again and again; the latest issue is kept.
    for (to, at) in [("member-y", 200), ("member-z", 300)] {
        circle_write(
            &store,
            CircleWrite {
                issue_key_package: Some((vec![2; 32], to.to_owned(), at)),
                ..CircleWrite::default()
            },
        )
        .await;
    }
    assert_eq!(
        store.key_packages().await,
        Ok(vec![
            issued(1, false, "member-x", 123),
            issued(2, true, "member-z", 300)
        ])
    );
    // A KeyPackage inserted and issued in one write.
    circle_write(
        &store,
        CircleWrite {
            key_packages: vec![key_package(3, false)],
            issue_key_package: Some((vec![3; 32], "member-w".to_owned(), 400)),
            ..CircleWrite::default()
        },
    )
    .await;
    assert_eq!(
        store.key_packages().await.map(|rows| rows.last().cloned()),
        Ok(Some(issued(3, false, "member-w", 400)))
    );
    let before = store.key_packages().await.expect("read key packages");
    // Issuing an unknown one, or inserting a stored one again, fails the whole write.
    for refused in [
        CircleWrite {
            kv: vec![put(b"k", b"v")],
            issue_key_package: Some((vec![9; 32], "member-x".to_owned(), 500)),
            ..CircleWrite::default()
        },
        CircleWrite {
            kv: vec![put(b"k", b"v")],
            key_packages: vec![key_package(1, false)],
            ..CircleWrite::default()
        },
    ] {
        assert!(
            matches!(
                store.circle_write(refused).await,
                Err(StorageError::Database(_))
            ),
            "refused write went through"
        );
        assert_eq!(store.key_packages().await, Ok(before.clone()));
        assert_eq!(store.mls_values().await, Ok(Vec::new()));
    }
    // Expired ones are forgotten, with the key-value changes of the same write; an unknown
    // hash_ref is ignored.
    circle_write(
        &store,
        CircleWrite {
            kv: vec![put(b"kp-3", b"private"), delete(b"kp-3")],
            key_packages_dropped: vec![vec![3; 32], vec![9; 32]],
            ..CircleWrite::default()
        },
    )
    .await;
    assert_eq!(
        store.key_packages().await,
        Ok(before[..before.len() - 1].to_vec())
    );

    let departure = |circle: &str, member: &str, last: Option<u64>| {
        (circle.to_owned(), member.to_owned(), last)
    };
    circle_write(
        &store,
        CircleWrite {
            departures: vec![
                departure(CIRCLE, "m1", Some(3)),
                departure(CIRCLE, "m2", Some(4)),
                departure("circle-ant", "m1", Some(7)),
            ],
            ..CircleWrite::default()
        },
    )
    .await;
    assert_eq!(store.departure(CIRCLE, "m1").await, Ok(Some(3)));
    assert_eq!(store.departure(CIRCLE, "m2").await, Ok(Some(4)));
    assert_eq!(store.departure("circle-ant", "m1").await, Ok(Some(7)));
    assert_eq!(store.departure(CIRCLE, "m3").await, Ok(None));
    // Admissions: the last add of a member wins.
    for position in [2, 9] {
        circle_write(
            &store,
            CircleWrite {
                admissions: vec![(CIRCLE.to_owned(), "m1".to_owned(), position)],
                ..CircleWrite::default()
            },
        )
        .await;
    }
    assert_eq!(store.admission(CIRCLE, "m1").await, Ok(Some(9)));
    assert_eq!(store.admission(CIRCLE, "m2").await, Ok(None));
    circle_write(
        &store,
        CircleWrite {
            departures: vec![
                departure(CIRCLE, "m1", Some(5)),
                departure(CIRCLE, "m2", None),
                departure(CIRCLE, "m3", Some(6)),
                departure(CIRCLE, "m3", None),
                departure(CIRCLE, "never", None),
            ],
            ..CircleWrite::default()
        },
    )
    .await;
    assert_eq!(store.departure(CIRCLE, "m1").await, Ok(Some(5)));
    assert_eq!(store.departure(CIRCLE, "m2").await, Ok(None));
    assert_eq!(store.departure(CIRCLE, "m3").await, Ok(None));
    assert_eq!(store.departure("circle-ant", "m1").await, Ok(Some(7)));
    store.close().await;
}

/// The database file and its WAL, concatenated.
fn sqlite_file_bytes(fixture: &Fixture) -> Vec<u8> {
    let Fixture::Sqlite { url, .. } = fixture else {
        panic!("sqlite_file_bytes is for sqlite fixtures");
    };
    let path = url.strip_prefix("sqlite://").expect("sqlite url");
    let mut bytes = std::fs::read(path).expect("read database file");
    match std::fs::read(format!("{path}-wal")) {
        Ok(wal) => bytes.extend(wal),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => panic!("read wal file: {error}"),
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// 32 random bytes.
fn marker() -> Vec<u8> {
    [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|uuid| uuid.into_bytes())
        .collect()
}

/// SQLite only: a deleted (or overwritten) MLS value is gone from the files after a checkpoint.
async fn deleted_mls_values_leave_no_trace_in_the_files(fixture: &Fixture) {
    let store = fixture.open().await;
    let deleted = marker();
    let overwritten = marker();
    let kept = marker();
    let value = |marker: &[u8]| [b"epoch secret: ".as_slice(), marker, b" end"].concat();
    circle_write(
        &store,
        CircleWrite {
            kv: vec![
                put(b"deleted", &value(&deleted)),
                put(b"overwritten", &value(&overwritten)),
                put(b"kept", &value(&kept)),
            ],
            ..CircleWrite::default()
        },
    )
    .await;
    let before = sqlite_file_bytes(fixture);
    for marker in [&deleted, &overwritten, &kept] {
        assert!(
            contains(&before, marker),
            "a stored value is not in the files"
        );
    }

    circle_write(
        &store,
        CircleWrite {
            kv: vec![delete(b"deleted"), put(b"overwritten", b"next epoch")],
            ..CircleWrite::default()
        },
    )
    .await;
    assert_eq!(store.checkpoint().await, Ok(()));
    let after = sqlite_file_bytes(fixture);
    assert!(
        !contains(&after, &deleted),
        "a deleted value is still in the files"
    );
    assert!(
        !contains(&after, &overwritten),
        "an overwritten value is still in the files"
    );
    assert!(
        contains(&after, &kept),
        "the check cannot see values at all"
    );
    assert_eq!(
        store.mls_values().await,
        Ok(vec![
            (b"kept".to_vec(), value(&kept)),
            (b"overwritten".to_vec(), b"next epoch".to_vec())
        ])
    );
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Screening: screenings, watches, alerts

fn screening(id: &str, agency: &str, watch: Option<(u64, i64)>) -> ScreeningRow {
    ScreeningRow {
        id: id.to_owned(),
        agency: agency.to_owned(),
        reference: format!("ref-{id}"),
        at_micros: 1_790_000_000_000_000,
        policy_revision: "sha256:r".to_owned(),
        level: "HIGH".to_owned(),
        score: 65,
        declaration: format!("declaration {id}").into_bytes(),
        result: format!("result {id}").into_bytes(),
        watch,
    }
}

async fn screenings_round_trip_with_their_watches(fixture: &Fixture) {
    let store = fixture.open().await;
    let watched = screening("s-1", "GH/customs", Some((7, 2_000)));
    let unwatched = screening("s-2", "GH/police", None);
    store
        .record_screenings(&[watched.clone(), unwatched.clone()])
        .await
        .expect("record screenings");
    let read = store.screening("s-1").await.expect("read").expect("stored");
    assert_eq!(
        read,
        ScreeningRow {
            watch: None,
            ..watched.clone()
        }
    );
    assert_eq!(store.screening("absent").await, Ok(None));
    let watches = store.watches_after(0, 1_000, 100).await.expect("watches");
    assert_eq!(watches.len(), 1, "{watches:?}");
    let watch = &watches[0].watch;
    assert_eq!(watch.kind, WatchKind::Declaration);
    assert_eq!(watch.reference_id, "s-1");
    assert_eq!(watch.agency, "GH/customs");
    assert_eq!(watch.subject, watched.declaration);
    assert_eq!((watch.from_sequence, watch.until_micros), (7, Some(2_000)));
    // The declaration is stored once, with its screening; the watch reads it from there.
    assert_eq!(stored_subject_length(fixture, "s-1").await, 0);
    // Ended watches are not read; nor those up to a number already read.
    assert_eq!(store.watches_after(0, 2_000, 100).await, Ok(Vec::new()));
    assert_eq!(
        store.watches_after(watches[0].number, 1_000, 100).await,
        Ok(Vec::new())
    );
    // A screening id stored twice refuses the whole batch.
    let again = store
        .record_screenings(&[screening("s-3", "GH/customs", None), watched])
        .await;
    assert!(again.is_err(), "{again:?}");
    assert_eq!(store.screening("s-3").await, Ok(None));
    store.close().await;
}

/// A batch's screenings and the release decisions they made, in one transaction where the
/// backend stores them so (SQLite, once the audit log's edge is held): the decisions under one
/// audit entry, the screenings and their watches beside them; a refused batch stores none of
/// it. Where it cannot, it says so and stores nothing.
async fn screenings_are_stored_with_their_decisions_or_not_at_all(fixture: &Fixture) {
    let store = fixture.open().await;
    let decided = |n: u64| decision(&decision_id(n), 1_790_000_000_000_000, "GH/customs", "v-1");
    let all = |store: &Store| {
        let store = store.clone();
        async move { every_decision(&store, all_decisions_query()).await }
    };
    // The first audit append after the store opened reads what it needs; the combined write
    // may leave that to the ordinary path.
    store
        .record_decisions(&[decided(1)])
        .await
        .expect("record decisions");
    let size = store.audit_size().await.expect("audit size");
    let watched = screening("s-1", "GH/customs", Some((7, 2_000)));
    let combined = store
        .record_screenings_with_decisions(
            &[watched.clone(), screening("s-2", "GH/customs", None)],
            &[decided(2), decided(3)],
        )
        .await
        .expect("record screenings with decisions");
    if !combined {
        assert_eq!(
            fixture.backend(),
            Backend::Postgres,
            "SQLite stores them together"
        );
        assert_eq!(store.screening("s-1").await, Ok(None));
        assert_eq!(ids(&all(&store).await), [decision_id(1)]);
        assert_eq!(store.audit_size().await, Ok(size));
        store.close().await;
        return;
    }
    assert_eq!(
        store.screening("s-1").await.expect("read"),
        Some(ScreeningRow {
            watch: None,
            ..watched.clone()
        })
    );
    assert!(store.screening("s-2").await.expect("read").is_some());
    let watches = store.watches_after(0, 1_000, 100).await.expect("watches");
    assert_eq!(watches.len(), 1, "{watches:?}");
    assert_eq!(watches[0].watch.reference_id, "s-1");
    assert_eq!(watches[0].watch.subject, watched.declaration);
    assert_eq!(stored_subject_length(fixture, "s-1").await, 0);
    assert_eq!(
        (
            watches[0].watch.from_sequence,
            watches[0].watch.until_micros
        ),
        (7, Some(2_000))
    );
    assert_eq!(all(&store).await, vec![decided(1), decided(2), decided(3)]);
    // One audit entry covers the two decisions, and the log still proves consistent.
    assert_eq!(store.audit_size().await, Ok(size + 1));
    assert_eq!(
        store.audit_decisions(size).await,
        Ok(vec![decided(2), decided(3)])
    );
    let root = store.audit_root(size + 1).await.expect("root");
    let proof = store
        .audit_consistency_proof(size, size + 1)
        .await
        .expect("consistency proof");
    let old_root = store.audit_root(size).await.expect("root");
    cordon_tlog::verify_consistency(size, size + 1, &old_root, &root, &proof).expect("consistent");
    // A screening id stored already refuses the whole batch, its decisions and entry too.
    let again = store
        .record_screenings_with_decisions(
            &[screening("s-3", "GH/customs", None), watched],
            &[decided(4)],
        )
        .await;
    assert!(again.is_err(), "{again:?}");
    assert_eq!(store.screening("s-3").await, Ok(None));
    assert_eq!(all(&store).await.len(), 3);
    assert_eq!(store.audit_size().await, Ok(size + 1));
    store.close().await;
}

/// The length of the subject stored in the row of the watch of `reference_id`.
async fn stored_subject_length(fixture: &Fixture, reference_id: &str) -> i64 {
    const LENGTH: &str = "SELECT length(subject) FROM watches WHERE reference_id = $1";
    match fixture {
        Fixture::Sqlite { url, .. } => {
            let mut connection = SqliteConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(LENGTH)
                .bind(reference_id)
                .fetch_one(&mut connection)
                .await
                .expect("subject length")
        }
        Fixture::Postgres { options, .. } => {
            let mut connection = PgConnection::connect_with(options).await.expect("connect");
            let length: i32 = sqlx::query_scalar(LENGTH)
                .bind(reference_id)
                .fetch_one(&mut connection)
                .await
                .expect("subject length");
            i64::from(length)
        }
    }
}

async fn watch_entries_are_added_listed_and_removed_by_their_agency(fixture: &Fixture) {
    let store = fixture.open().await;
    let entry = |id: &str, agency: &str| NewWatch {
        kind: WatchKind::Entry,
        agency: agency.to_owned(),
        reference_id: id.to_owned(),
        subject: format!("entry {id}").into_bytes(),
        from_sequence: 3,
        until_micros: None,
        created_micros: 1_790_000_000_000_000,
    };
    let first = store
        .add_watch(&entry("w-1", "GH/customs"))
        .await
        .expect("add");
    let second = store
        .add_watch(&entry("w-2", "GH/police"))
        .await
        .expect("add");
    assert!(second > first);
    assert!(
        store.add_watch(&entry("w-1", "GH/police")).await.is_err(),
        "ids are unique"
    );
    let listed = store
        .watches_of("GH/customs", WatchKind::Entry)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].number, first);
    assert_eq!(listed[0].watch, entry("w-1", "GH/customs"));
    // Entries never end by time.
    assert_eq!(
        store
            .watches_after(0, i64::MAX, 10)
            .await
            .expect("all")
            .len(),
        2
    );
    assert_eq!(
        store.remove_watch_entry("GH/police", "w-1").await,
        Ok(false)
    );
    assert_eq!(
        store.remove_watch_entry("GH/customs", "w-1").await,
        Ok(true)
    );
    assert_eq!(
        store.remove_watch_entry("GH/customs", "w-1").await,
        Ok(false)
    );
    assert_eq!(
        store.existing_watches(&[first, second, 999]).await,
        Ok(vec![second])
    );
    store.close().await;
}

fn alert(agency: &str, watch: u64, indicator: &str) -> NewAlert {
    NewAlert {
        agency: agency.to_owned(),
        watch,
        indicator_id: indicator.to_owned(),
        at_micros: 1_790_000_000_000_000,
        payload: format!("alert {watch} {indicator}").into_bytes(),
    }
}

fn cursors(feed: u64, watches: u64) -> AlertCursors {
    AlertCursors { feed, watches }
}

async fn alerts_are_numbered_in_order_and_stored_once(fixture: &Fixture) {
    let store = fixture.open().await;
    let mut woken = store.watch_alerts();
    woken.borrow_and_update();
    assert_eq!(store.alert_cursors().await, Ok(AlertCursors::default()));
    let first = store
        .record_alerts(
            &[alert("GH/customs", 1, "i-1"), alert("GH/police", 2, "i-1")],
            cursors(5, 2),
        )
        .await
        .expect("record");
    assert_eq!(first, [Some(1), Some(2)]);
    within_patience("the alert watch", woken.changed())
        .await
        .expect("watch open");
    assert_eq!(*woken.borrow(), 2);
    // The same pair again is stored once; a new one gets the next number; the cursor never
    // moves back.
    let second = store
        .record_alerts(
            &[alert("GH/customs", 1, "i-1"), alert("GH/customs", 1, "i-2")],
            cursors(3, 1),
        )
        .await
        .expect("record");
    assert_eq!(second, [None, Some(3)]);
    assert_eq!(store.alert_cursors().await, Ok(cursors(5, 2)));
    // Nothing new still moves the cursors.
    assert_eq!(
        store.record_alerts(&[], cursors(9, 4)).await,
        Ok(Vec::new())
    );
    assert_eq!(store.alert_cursors().await, Ok(cursors(9, 4)));
    let customs = store.alerts_after("GH/customs", 0, 10).await.expect("read");
    let summary: Vec<(u64, u64, &str)> = customs
        .iter()
        .map(|row| (row.sequence, row.watch, row.indicator_id.as_str()))
        .collect();
    assert_eq!(summary, [(1, 1, "i-1"), (3, 1, "i-2")]);
    assert_eq!(customs[1].payload, b"alert 1 i-2");
    assert_eq!(
        store
            .alerts_after("GH/customs", 1, 10)
            .await
            .expect("read")
            .len(),
        1
    );
    assert_eq!(
        store
            .alerts_after("GH/customs", 0, 1)
            .await
            .expect("read")
            .len(),
        1
    );
    assert_eq!(
        store.alerts_after("NG/customs", 0, 10).await,
        Ok(Vec::new())
    );
    store.close().await;
}

async fn indicators_are_read_by_the_sequence_that_published_them(fixture: &Fixture) {
    let store = fixture.open().await;
    store
        .publish(vec![indicator("a", "vessel"), indicator("b", "entity")])
        .await
        .expect("publish");
    store
        .retract("a", "wrong", 1_800_000_000_000_000, None)
        .await
        .expect("retract");
    let mut found = store.indicators_at(&[1, 2, 3, 99]).await.expect("read");
    found.sort_by_key(|indicator| indicator.sequence);
    let summary: Vec<(u64, &str, bool)> = found
        .iter()
        .map(|indicator| {
            (
                indicator.sequence,
                indicator.id.as_str(),
                indicator.retracted,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "a", true), (2, "b", false)],
        "the retraction's event is not an indicator"
    );
    store.close().await;
}

/// A publish that carries its release decisions stores them in its own transaction: they are
/// read back per decision, noted for the batch's events (per caller, in a group commit), under
/// an audit entry after the indicators' own, and `on_commit` sees the sequences before the feed
/// head moves past them. A refused publish stores none of its decisions.
async fn publish_decided_stores_decisions_with_the_batch(fixture: &Fixture) {
    use std::sync::{Arc, Mutex};
    let store = fixture.open().await;
    store
        .publish(vec![indicator("first", "ip")])
        .await
        .expect("publish first");
    let rows = |prefix: &str, ids: &[&str]| -> Vec<DecisionRow> {
        ids.iter()
            .enumerate()
            .flat_map(|(index, id)| {
                ["NG/customs", "SN"]
                    .into_iter()
                    .enumerate()
                    .map(move |(n, recipient)| {
                        let number = (index * 2 + n) as u64;
                        let mut row = decision(
                            &format!("{prefix}{}", &decision_id(number)[prefix.len()..]),
                            1_800_000_000_000_000 + number as i64,
                            recipient,
                            id,
                        );
                        row.allow = n == 0;
                        row
                    })
            })
            .collect()
    };
    // Each callback's sequences, and the head it saw.
    type Seen = Arc<Mutex<Vec<(Vec<u64>, u64)>>>;
    let seen: Seen = Arc::default();
    let on_commit = |store: &Store| -> cordon_storage::OnCommit {
        let seen = seen.clone();
        let head = store.watch_head();
        Box::new(move |sequences: &[u64]| {
            seen.lock()
                .unwrap()
                .push((sequences.to_vec(), *head.borrow()));
        })
    };
    // Two callers at once, so that a group commit may take both.
    let (a, b) = tokio::join!(
        store.publish_decided(
            vec![indicator("a1", "ip"), indicator("a2", "ip")],
            rows("a", &["a1", "a2"]),
            Some(on_commit(&store)),
        ),
        store.publish_decided(
            vec![indicator("b1", "ip")],
            rows("b", &["b1"]),
            Some(on_commit(&store)),
        ),
    );
    let (a, b) = (a.expect("publish a"), b.expect("publish b"));
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 1);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(
        seen.iter()
            .map(|(sequences, _)| sequences.clone())
            .collect::<Vec<_>>(),
        expected
    );
    for (sequences, head) in &seen {
        assert!(
            *head < sequences[0],
            "on_commit ran after the head moved past {sequences:?} (head {head})"
        );
    }

    let mut all = rows("a", &["a1", "a2"]);
    all.extend(rows("b", &["b1"]));
    assert_eq!(
        every_decision(&store, all_decisions_query()).await,
        sorted_by_keyset(all.clone())
    );
    // Each caller's decisions are noted for its own events.
    for (sequences, prefix, ids) in [(&a, "a", vec!["a1", "a2"]), (&b, "b", vec!["b1"])] {
        let page = (sequences[0] - 1, *sequences.last().unwrap());
        for recipient in ["NG/customs", "SN"] {
            // (A write's batch may hold another caller's decisions too: a look-up filters
            // what it finds.)
            let found = store
                .page_decisions(recipient, "rev-1", page, 0)
                .await
                .expect("page decisions");
            for wanted in decisions_of(&rows(prefix, &ids), None, Some(recipient)) {
                assert!(
                    found.contains(&wanted),
                    "{recipient}'s decisions on {page:?} lack {}",
                    wanted.decision_id
                );
            }
        }
    }
    // One audit entry per indicator, then one for each transaction's decisions (one or two,
    // as the two publishes were committed together or not).
    let size = store.audit_size().await.expect("audit size");
    assert!(size == 1 + 3 + 1 || size == 1 + 3 + 2, "audit size {size}");
    let mut covered = Vec::new();
    for position in 0..size {
        covered.extend(
            store
                .audit_decisions(position)
                .await
                .expect("audit decisions"),
        );
    }
    assert_eq!(sorted_by_keyset(covered), sorted_by_keyset(all.clone()));

    // A refused publish (a duplicate id) stores none of its decisions.
    let refused = store
        .publish_decided(
            vec![indicator("c1", "ip"), indicator("a1", "ip")],
            rows("c", &["c1", "a1"]),
            None,
        )
        .await;
    assert_eq!(
        refused,
        Err(StorageError::Duplicate {
            id: "a1".to_owned()
        })
    );
    assert_eq!(
        every_decision(&store, all_decisions_query()).await.len(),
        all.len(),
        "a refused publish stored decisions"
    );
    assert_eq!(store.audit_size().await, Ok(size));
    store.close().await;
}

/// Every publish, receive and retraction appends its entries to the audit log in its own
/// transaction; a refused write appends nothing. The log's root and proofs are those of the
/// same entries in memory, and each proof verifies.
async fn writes_append_their_entries_to_the_audit_log(fixture: &Fixture) {
    use cordon_tlog::{Entry, MemoryLog, verify_consistency, verify_inclusion};
    let store = fixture.open().await;
    assert_eq!(store.audit_size().await, Ok(0));
    let batch = indicators("p", 3, "vessel");
    store.publish(batch.clone()).await.expect("publish");
    assert!(
        store
            .publish(vec![indicator("p-0", "vessel")])
            .await
            .is_err(),
        "a duplicate is refused"
    );
    store
        .retract("p-1", "wrong", 1_800_000_000_000_000, Some(b"sig"))
        .await
        .expect("retract");
    receive(
        &store,
        7,
        vec![received("r0", "ip"), retraction("r0", &originator(), None)],
    )
    .await;

    let mut expected: Vec<Entry> = batch
        .iter()
        .map(|item| Entry::stored(&item.id, &item.originator, None, &item.payload))
        .collect();
    expected.push(Entry::retraction(
        "p-1",
        &batch[1].originator,
        "wrong",
        1_800_000_000_000_000,
        Some(b"sig"),
    ));
    let r0 = received_indicator("r0", "ip");
    expected.push(Entry::stored("r0", &r0.originator, Some(PEER), &r0.payload));
    let Received::Retracted {
        reason, at_micros, ..
    } = retraction("r0", &originator(), None)
    else {
        unreachable!()
    };
    expected.push(Entry::retraction(
        "r0",
        &originator(),
        &reason,
        at_micros,
        None,
    ));

    let size = expected.len() as u64;
    assert_eq!(store.audit_size().await, Ok(size));
    let stored = store.audit_entries(0, 100).await.expect("entries");
    let bytes: Vec<Vec<u8>> = expected.iter().map(Entry::canonical_bytes).collect();
    assert_eq!(
        stored,
        (0..).zip(bytes.clone()).collect::<Vec<(u64, Vec<u8>)>>()
    );
    let mut memory = MemoryLog::new();
    for entry in &bytes {
        memory.append(entry);
    }
    let root = store.audit_root(size).await.expect("root");
    assert_eq!(root, memory.root());
    for index in 0..size {
        let proof = store
            .audit_inclusion_proof(index, size)
            .await
            .expect("inclusion proof");
        verify_inclusion(
            index,
            size,
            &cordon_tlog::leaf_hash(&bytes[index as usize]),
            &proof,
            &root,
        )
        .expect("the proof verifies");
    }
    for first in 1..size {
        let proof = store
            .audit_consistency_proof(first, size)
            .await
            .expect("consistency proof");
        let first_root = store.audit_root(first).await.expect("root");
        verify_consistency(first, size, &first_root, &root, &proof).expect("consistent");
    }
    assert_eq!(store.audit_positions_of("p-1").await, Ok(vec![1, 3]));
    assert_eq!(store.audit_positions_of("r0").await, Ok(vec![4, 5]));

    // A longer log, in batches of several sizes: every stored hash is found again.
    for (batch, count) in [(1, 1), (2, 63), (3, 130), (4, 7)] {
        let more = indicators(&format!("q{batch}"), count, "vessel");
        for item in &more {
            memory.append(
                &Entry::stored(&item.id, &item.originator, None, &item.payload).canonical_bytes(),
            );
        }
        store.publish(more).await.expect("publish more");
    }
    let size = memory.size();
    assert_eq!(store.audit_size().await, Ok(size));
    let root = store.audit_root(size).await.expect("root");
    assert_eq!(root, memory.root());
    for index in [0, 1, 6, 63, 64, 127, 128, size - 1] {
        assert_eq!(
            store
                .audit_inclusion_proof(index, size)
                .await
                .expect("proof"),
            memory.inclusion_proof(index, size).unwrap(),
            "entry {index}"
        );
    }
    for first in [1, 7, 64, 65, 200, size - 1] {
        assert_eq!(
            store
                .audit_consistency_proof(first, size)
                .await
                .expect("proof"),
            memory.consistency_proof(first, size).unwrap(),
            "from {first}"
        );
        assert_eq!(
            store.audit_root(first).await,
            Ok(memory.root_at(first).unwrap())
        );
    }

    // Two writers of one database, taking turns: each appends from the right edge it kept
    // only while the log still has that edge's size, and reads the hashes otherwise.
    let other = fixture.open().await;
    for (turn, count) in [1, 2, 1, 5, 3, 1, 16, 1].into_iter().enumerate() {
        let more = indicators(&format!("w{turn}"), count, "vessel");
        for item in &more {
            memory.append(
                &Entry::stored(&item.id, &item.originator, None, &item.payload).canonical_bytes(),
            );
        }
        let writer = if turn % 2 == 0 { &store } else { &other };
        writer.publish(more).await.expect("publish in turn");
    }
    let size = memory.size();
    for reader in [&store, &other] {
        assert_eq!(reader.audit_size().await, Ok(size));
        assert_eq!(reader.audit_root(size).await, Ok(memory.root()));
        assert_eq!(
            reader.audit_consistency_proof(200, size).await,
            Ok(memory.consistency_proof(200, size).unwrap())
        );
    }
    other.close().await;
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Test generation

macro_rules! conformance_suite {
    (
        every_backend: [$($case:ident),* $(,)?],
        postgres_only: [$($postgres_case:ident),* $(,)?],
        sqlite_only: [$($sqlite_case:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let fixture = super::Fixture::sqlite();
                    super::$case(&fixture).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $sqlite_case() {
                    let fixture = super::Fixture::sqlite();
                    super::$sqlite_case(&fixture).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(fixture) = super::Fixture::postgres().await else {
                        return;
                    };
                    super::$case(&fixture).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $postgres_case() {
                    let Some(fixture) = super::Fixture::postgres().await else {
                        return;
                    };
                    super::$postgres_case(&fixture).await;
                }
            )*
        }
    };
}

conformance_suite! {
    every_backend: [
        writes_append_their_entries_to_the_audit_log,
        publish_and_read_round_trip,
        sequences_are_consecutive_across_batches,
        duplicate_id_stores_nothing,
        publish_decided_stores_decisions_with_the_batch,
        concurrent_duplicate_publish_stores_one,
        concurrent_publishes_through_one_store_each_get_their_own_answer,
        oversight_reads_count_the_feed_at_large_and_the_decisions,
        read_after_limit_and_scanned_to,
        read_after_kinds_filter,
        retract_appends_event_and_marks_indicator,
        retract_refusals_change_nothing,
        data_survives_close_and_reopen,
        operations_after_close_are_unavailable,
        concurrent_publishers_follower_sees_every_sequence_once,
        watch_head_wakes_on_own_commit,
        decisions_round_trip_every_field,
        decisions_filter_by_indicator_recipient_and_time,
        decisions_keyset_pagination_with_limit,
        decision_ids_order_bytewise,
        purge_decisions_before_cutoff,
        large_batches_are_capped_and_purged_in_chunks,
        duplicate_decision_id_stores_nothing,
        page_decisions_find_what_a_write_noted,
        decisions_of_the_old_form_are_read_beside_the_batches,
        decision_batches_and_publishes_interleave,
        receive_sequences_gap_free_between_publishes,
        concurrent_receives_and_publishes_follower_sees_every_sequence_once,
        receive_skips_duplicates_without_events,
        peer_cursor_moves_with_its_items_and_never_back,
        receive_retractions_apply_only_to_their_originator,
        publish_then_retract_in_one_receive,
        via_and_superseded_by_round_trip,
        receive_raises_watch_head,
        circle_write_round_trips,
        circle_write_at_a_taken_log_position_writes_nothing,
        circle_write_deletes_values_and_skips_held_indicators,
        key_packages_are_issued_and_departures_kept,
        pending_welcomes_are_kept_with_their_add_and_forgotten_once,
        outbox_entries_are_kept_and_forgotten_with_their_writes,
        screenings_round_trip_with_their_watches,
        screenings_are_stored_with_their_decisions_or_not_at_all,
        watch_entries_are_added_listed_and_removed_by_their_agency,
        alerts_are_numbered_in_order_and_stored_once,
        indicators_are_read_by_the_sequence_that_published_them,
    ],
    postgres_only: [
        watch_head_wakes_on_commit_by_replica,
        listener_reconnects_and_wakes_followers,
        closed_or_dropped_store_leaves_no_connection,
        head_notifications_only_when_the_head_moves,
    ],
    sqlite_only: [
        deleted_mls_values_leave_no_trace_in_the_files,
    ],
}
