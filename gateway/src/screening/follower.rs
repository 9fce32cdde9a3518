//! The screening follower: one task that keeps the candidate index current with the feed,
//! loads watches as they are stored, and raises alerts.
//!
//! At start it loads every watch that has not ended, then reads the whole feed into the
//! candidate index. Alerts are raised for feed events after the stored alert cursor (those up
//! to it were raised before a restart), and for watches stored after the stored watch cursor,
//! against the feed from their own start (they may have been stored just before a crash).
//! Alerts and both cursors are stored in one transaction; one alert per watch and indicator,
//! so raising one twice (after a crash, or by two replicas) stores it once.

use std::sync::Arc;
use std::time::Duration;

use cordon_matching::Prepared;
use cordon_proto::v1::{Declaration, Indicator, WatchEntry};
use cordon_storage::{AlertCursors, EventBody, StorageError, StoredEvent, WatchKind, WatchRow};
use prost::Message;

use super::subjects::{declaration_subject, entry_subject, indicator_subject};
use super::{Screening, WatchInfo};
use crate::clock::now_micros;

/// Feed events read per page.
const PAGE: u32 = 1024;
/// Alert cursors are stored at least this often when nothing else is written (a crash makes
/// the follower check again what it checked since: alerts are stored once whatever happens).
const CURSOR_INTERVAL: Duration = Duration::from_secs(2);
/// How often a follower with nothing to do looks for watches stored by another replica and
/// for watches that ended.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Runs until the gateway stops; an error (the database unreachable) is logged and the work
/// resumes after a pause, the indexes kept.
pub(super) async fn run(screening: Arc<Screening>) {
    let mut shutdown = screening.shutdown.clone();
    let mut attempt = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match follow(&screening).await {
            Ok(()) => return,
            Err(error) => {
                attempt = attempt.saturating_add(1);
                tracing::warn!(%error, "screening follower failed; resuming");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(crate::federation::backoff(attempt)) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// A watch's subject as stored: a declaration, or a watchlist entry.
pub(super) fn watch_subject(watch: &WatchRow) -> Option<Prepared> {
    let subject = match watch.watch.kind {
        WatchKind::Declaration => {
            declaration_subject(&Declaration::decode(watch.watch.subject.as_slice()).ok()?)
        }
        WatchKind::Entry => {
            entry_subject(&WatchEntry::decode(watch.watch.subject.as_slice()).ok()?)?
        }
    };
    Some(subject.prepare())
}

struct Follower {
    screening: Arc<Screening>,
    /// As stored.
    cursors: AlertCursors,
    /// The highest watch number loaded.
    loaded: u64,
    /// Watches loaded that still have to be checked against the feed from their start: number,
    /// subject, start.
    unchecked: Vec<(u64, Prepared, u64)>,
    /// Pairs (watch, feed sequence) to alert on.
    pending: Vec<(u64, u64)>,
    last_stored: std::time::Instant,
}

async fn follow(screening: &Arc<Screening>) -> Result<(), StorageError> {
    let store = screening.context.store.clone();
    let mut follower = Follower {
        screening: screening.clone(),
        cursors: store.alert_cursors().await?,
        loaded: 0,
        unchecked: Vec::new(),
        pending: Vec::new(),
        last_stored: std::time::Instant::now(),
    };
    follower.load_watches().await?;
    let mut head = store.watch_head();
    let mut shutdown = screening.shutdown.clone();
    let mut tick = tokio::time::interval(IDLE_TICK);
    loop {
        head.borrow_and_update();
        let position = screening.position();
        let batch = store.read_after(position, PAGE, &[]).await?;
        let full = batch.events.len() >= PAGE as usize;
        follower
            .apply(batch.events, batch.scanned_to.max(position))
            .await?;
        follower.raise().await?;
        if full {
            continue;
        }
        if follower.load_watches().await? {
            continue;
        }
        let ticked = tokio::select! {
            changed = head.changed() => if changed.is_err() { return Ok(()) } else { false },
            () = screening.watches_added.notified() => false,
            _ = tick.tick() => true,
            _ = shutdown.wait_for(|stopping| *stopping) => return Ok(()),
        };
        if ticked {
            follower.end_watches().await?;
        }
    }
}

impl Follower {
    /// Loads the watches stored since the last load; whether there were any.
    async fn load_watches(&mut self) -> Result<bool, StorageError> {
        let store = &self.screening.context.store;
        let mut any = false;
        loop {
            let rows = store
                .watches_after(
                    self.loaded,
                    now_micros(),
                    cordon_storage::MAX_WATCHES_PER_READ,
                )
                .await?;
            let Some(last) = rows.last().map(|row| row.number) else {
                return Ok(any);
            };
            any = true;
            let screening = self.screening.clone();
            let checked_to = self.cursors.watches;
            let fresh = tokio::task::spawn_blocking(move || {
                let subjects: Vec<(WatchRow, Option<Prepared>)> = rows
                    .into_iter()
                    .map(|row| {
                        // A declaration screened here comes prepared (the same subject the
                        // stored declaration gives).
                        let subject = match row.watch.kind {
                            WatchKind::Declaration => {
                                screening.take_handed_over(&row.watch.reference_id)
                            }
                            WatchKind::Entry => None,
                        }
                        .or_else(|| watch_subject(&row));
                        (row, subject)
                    })
                    .collect();
                let mut watches = screening.watches_mut();
                let mut fresh = Vec::new();
                for (row, subject) in subjects {
                    let Some(subject) = subject else {
                        tracing::error!(
                            watch = row.number,
                            "a stored watch does not decode; it raises no alert"
                        );
                        continue;
                    };
                    let info = WatchInfo {
                        from_sequence: row.watch.from_sequence,
                        until_micros: row.watch.until_micros,
                    };
                    watches.add(row.number, info, &subject);
                    if row.number > checked_to {
                        fresh.push((row.number, subject, row.watch.from_sequence));
                    }
                }
                fresh
            })
            .await
            .map_err(|error| StorageError::Unavailable(format!("loading watches: {error}")))?;
            self.unchecked.extend(fresh);
            self.loaded = last;
        }
    }

    /// Applies feed events to the candidate index, noting the watches each new indicator
    /// matches; the position becomes `scanned_to`.
    async fn apply(
        &mut self,
        events: Vec<StoredEvent>,
        scanned_to: u64,
    ) -> Result<(), StorageError> {
        let store = self.screening.context.store.clone();
        // What leaves the candidates: retracted indicators and those revised by a new one.
        let mut leaving = Vec::new();
        for event in &events {
            match &event.body {
                EventBody::Retracted { indicator_id, .. } => leaving.push(indicator_id.clone()),
                EventBody::Published { .. } => {}
            }
        }
        let mut arriving = Vec::with_capacity(events.len());
        for event in events {
            if let EventBody::Published { payload, .. } = event.body {
                match Indicator::decode(payload.as_slice()) {
                    Ok(indicator) => {
                        if !indicator.supersedes.is_empty() {
                            leaving.push(indicator.supersedes.clone());
                        }
                        arriving.push((event.sequence, indicator));
                    }
                    Err(error) => {
                        tracing::error!(sequence = event.sequence, %error, "a feed event does not decode; not indexed");
                    }
                }
            }
        }
        let mut left = Vec::new();
        for id in leaving {
            if let Some(stored) = store.indicator(&id).await?
                && let Ok(indicator) = Indicator::decode(stored.payload.as_slice())
            {
                left.push((stored.sequence, indicator));
            }
        }
        let screening = self.screening.clone();
        let alert_after = self.cursors.feed;
        let pending = tokio::task::spawn_blocking(move || {
            let arriving: Vec<(u64, Prepared)> = arriving
                .iter()
                .map(|(sequence, indicator)| (*sequence, indicator_subject(indicator).prepare()))
                .collect();
            let left: Vec<(u64, Prepared)> = left
                .iter()
                .map(|(sequence, indicator)| (*sequence, indicator_subject(indicator).prepare()))
                .collect();
            let threshold = super::name_threshold(&screening.context.releaser.policy());
            let mut candidates = screening.candidates_mut();
            let watches = screening.watches();
            let mut pending = Vec::new();
            for (sequence, subject) in &arriving {
                candidates.insert(*sequence, subject);
                if *sequence <= alert_after {
                    continue;
                }
                for watch in watches.index.candidates(subject, threshold) {
                    if watches
                        .watched
                        .get(&watch)
                        .is_some_and(|info| info.from_sequence < *sequence)
                    {
                        pending.push((watch, *sequence));
                    }
                }
            }
            for (sequence, subject) in &left {
                candidates.remove(*sequence, subject);
            }
            // Under the lock: a screening reads the candidates and the position together.
            screening.position.send_replace(scanned_to);
            pending
        })
        .await
        .map_err(|error| StorageError::Unavailable(format!("indexing: {error}")))?;
        self.pending.extend(pending);
        Ok(())
    }

    /// Checks the watches loaded since the last check against the feed from their start,
    /// then raises the pending alerts and stores the cursors.
    async fn raise(&mut self) -> Result<(), StorageError> {
        let position = self.screening.position();
        let caught_up = position >= self.cursors.feed;
        if caught_up && !self.unchecked.is_empty() {
            let unchecked = std::mem::take(&mut self.unchecked);
            let screening = self.screening.clone();
            let found = tokio::task::spawn_blocking(move || {
                checked_against_the_feed(&screening, &unchecked, position)
            })
            .await
            .map_err(|error| StorageError::Unavailable(format!("checking watches: {error}")))?;
            self.pending.extend(found);
        }
        let cursors = AlertCursors {
            feed: self.cursors.feed.max(position),
            watches: if self.unchecked.is_empty() {
                self.cursors.watches.max(self.loaded)
            } else {
                self.cursors.watches
            },
        };
        let moved = cursors != self.cursors;
        let due = self.last_stored.elapsed() >= CURSOR_INTERVAL;
        if self.pending.is_empty() && !(moved && due) {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let alerts = super::alerts::alerts_for(&self.screening, pending).await?;
        self.screening
            .context
            .store
            .record_alerts(&alerts, cursors)
            .await?;
        self.screening
            .context
            .metrics
            .alerts_raised(alerts.len() as u64);
        self.cursors = cursors;
        self.last_stored = std::time::Instant::now();
        Ok(())
    }

    /// Takes the watches that ended out of the index.
    async fn end_watches(&mut self) -> Result<(), StorageError> {
        let now = now_micros();
        let ended: Vec<u64> = {
            let mut watches = self.screening.watches_mut();
            let later = watches.ending.split_off(&now.saturating_add(1));
            let ended = std::mem::replace(&mut watches.ending, later);
            ended.into_values().flatten().collect()
        };
        if ended.is_empty() {
            return Ok(());
        }
        let rows = self
            .screening
            .context
            .store
            .watches_numbered(&ended)
            .await?;
        let mut watches = self.screening.watches_mut();
        for row in rows {
            if let Some(subject) = watch_subject(&row) {
                watches.remove(row.number, &subject);
            }
        }
        Ok(())
    }
}

/// The (watch, sequence) pairs of indicators held now, published after each watch's start and
/// up to `position`, that match the watch.
fn checked_against_the_feed(
    screening: &Screening,
    watches: &[(u64, Prepared, u64)],
    position: u64,
) -> Vec<(u64, u64)> {
    let threshold = super::name_threshold(&screening.context.releaser.policy());
    let candidates = screening.candidates();
    let mut found = Vec::new();
    for (number, subject, from) in watches {
        // A screening stores its watch from the position it read: nothing newer, nothing to look up.
        if *from >= position {
            continue;
        }
        for sequence in candidates.candidates(subject, threshold) {
            if sequence > *from && sequence <= position {
                found.push((*number, sequence));
            }
        }
    }
    found
}
