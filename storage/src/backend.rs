//! The plumbing every store shares: which backend, the clock, and the known feed head.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The current Unix time in microseconds (0 if the clock is before 1970).
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}

/// Reads the feed head (one row, one column).
pub(crate) const READ_HEAD: &str = "SELECT head FROM feed_head";

/// Raises the known head, waking followers only if it moved.
pub(crate) fn raise_known_head(head: &watch::Sender<u64>, value: u64) -> bool {
    head.send_if_modified(|known| {
        if value > *known {
            *known = value;
            true
        } else {
            false
        }
    })
}
