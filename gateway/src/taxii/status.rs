//! Status resources of add-objects requests, kept in memory for the caller that made them.
//! Adds complete before the response (they are one Publish call), so a status is final when
//! it is created. Each caller keeps its newest [`PER_CALLER`] (so that one caller cannot push
//! out the others'), the gateway its newest [`KEPT`]; the oldest are forgotten first. A status
//! lists at most `MAX_OBJECTS_PER_ADD` objects, the limit of one request.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

use crate::identity::Identity;

/// Status resources kept per gateway, and per caller.
pub const KEPT: usize = 10_000;
pub const PER_CALLER: usize = 100;

#[derive(Debug, Default)]
pub struct Statuses {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, (String, Value)>,
    /// Every status id, oldest first, with its caller.
    order: VecDeque<(String, String)>,
    /// Each caller's status ids, oldest first.
    by_caller: HashMap<String, VecDeque<String>>,
}

impl Inner {
    fn forget(&mut self, id: &str) {
        if let Some((caller, _)) = self.by_id.remove(id)
            && let Some(ids) = self.by_caller.get_mut(&caller)
        {
            ids.retain(|kept| kept != id);
            if ids.is_empty() {
                self.by_caller.remove(&caller);
            }
        }
    }
}

impl Statuses {
    /// Stores `status` for `caller` under a new id and returns it with its `id`.
    pub fn insert(&self, caller: &Identity, mut status: Value) -> Value {
        let id = uuid::Uuid::new_v4().to_string();
        status["id"] = Value::String(id.clone());
        let caller = caller.to_string();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let oldest_of_caller = inner
            .by_caller
            .get(&caller)
            .filter(|ids| ids.len() >= PER_CALLER)
            .and_then(|ids| ids.front().cloned());
        if let Some(oldest) = oldest_of_caller {
            inner.forget(&oldest);
        }
        while inner.by_id.len() >= KEPT {
            let Some((oldest, _)) = inner.order.pop_front() else {
                break;
            };
            inner.forget(&oldest);
        }
        // Ids already forgotten leave the order lazily.
        if inner.order.len() > 2 * KEPT {
            let Inner { order, by_id, .. } = &mut *inner;
            order.retain(|(id, _)| by_id.contains_key(id));
        }
        inner.order.push_back((id.clone(), caller.clone()));
        inner
            .by_caller
            .entry(caller.clone())
            .or_default()
            .push_back(id.clone());
        inner.by_id.insert(id, (caller, status.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_cannot_push_out_anothers_statuses() {
        let statuses = Statuses::default();
        let first = Identity::parse("GH/customs").unwrap();
        let second = Identity::parse("GH/police").unwrap();
        let kept = statuses.insert(&first, serde_json::json!({"status": "complete"}));
        let id = kept["id"].as_str().unwrap().to_string();
        let mut last = Value::Null;
        for _ in 0..3 * PER_CALLER {
            last = statuses.insert(&second, serde_json::json!({"status": "complete"}));
        }
        assert_eq!(statuses.get(&first, &id), Some(kept));
        assert!(
            statuses.get(&second, &id).is_none(),
            "another caller's status"
        );
        let newest = last["id"].as_str().unwrap();
        assert!(statuses.get(&second, newest).is_some());
        let inner = statuses.inner.lock().unwrap();
        assert_eq!(inner.by_caller[&second.to_string()].len(), PER_CALLER);
        assert_eq!(inner.by_id.len(), PER_CALLER + 1);
    }
}
