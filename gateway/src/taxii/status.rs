//! Status resources of add-objects requests, kept in memory for the caller that made them.
//! Adds complete before the response (they are one Publish call), so a status is final when
//! it is created; the newest [`KEPT`] are kept, the oldest forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

use crate::identity::Identity;

/// Status resources kept per gateway.
pub const KEPT: usize = 10_000;

#[derive(Debug, Default)]
pub struct Statuses {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, (String, Value)>,
    order: VecDeque<String>,
}

impl Statuses {
    /// Stores `status` for `caller` under a new id and returns it with its `id`.
    pub fn insert(&self, caller: &Identity, mut status: Value) -> Value {
        let id = uuid::Uuid::new_v4().to_string();
        status["id"] = Value::String(id.clone());
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.order.len() >= KEPT
            && let Some(oldest) = inner.order.pop_front()
        {
            inner.by_id.remove(&oldest);
        }
        inner.order.push_back(id.clone());
        inner.by_id.insert(id, (caller.to_string(), status.clone()));
        status
    }

    /// The status `id`, if `caller` made it.
    pub fn get(&self, caller: &Identity, id: &str) -> Option<Value> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .by_id
            .get(id)
            .filter(|(owner, _)| *owner == caller.to_string())
            .map(|(_, status)| status.clone())
    }
}
