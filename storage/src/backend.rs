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
/// Holds back the raises of the known head that come from elsewhere (PostgreSQL's
/// notifications of commits) while this process's publish committer is between a transaction
/// and the commit callbacks of its publishes, so that a callback always runs before the head
/// moves past its events ([`crate::Store::publish_decided`]). A raise held back is made when
/// the committer lets go.
#[derive(Debug, Default)]
pub(crate) struct HeadGate(std::sync::Mutex<Option<u64>>);

impl HeadGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Raises `head` to `value` now, or when the committer lets go.
    pub(crate) fn raise(&self, head: &watch::Sender<u64>, value: u64) {
        let mut held = self.lock();
        match held.as_mut() {
            Some(highest) => *highest = (*highest).max(value),
            None => {
                raise_known_head(head, value);
            }
        }
    }

    /// The committer starts a transaction; it lets go when the guard drops (a panic
    /// included), and what was held back is raised then.
    pub(crate) fn hold<'a>(&'a self, head: &'a watch::Sender<u64>) -> HeldHead<'a> {
        *self.lock() = Some(0);
        HeldHead { gate: self, head }
    }
}

/// See [`HeadGate::hold`].
pub(crate) struct HeldHead<'a> {
    gate: &'a HeadGate,
    head: &'a watch::Sender<u64>,
}

impl Drop for HeldHead<'_> {
    fn drop(&mut self) {
        if let Some(highest) = self.gate.lock().take() {
            raise_known_head(self.head, highest);
        }
    }
}

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
