//! The dispatcher: one reader of the feed for every caught-up subscription.
//!
//! Each committed event is read and decoded once, decided once per recipient identity that
//! has a caught-up stream (the indicator's policy input built once for all of them, each
//! decision through the policy's cache), the decisions of the whole page are stored in one
//! decision-log write, and only then is the page handed to every stream: a stream sends what
//! was released to its identity, and every stream of that identity shares it.
//!
//! A stream reads pages from storage on its own (`subscribe.rs`) until it has reached the
//! dispatcher's position, joins, and goes back to reading on its own whenever it misses a
//! page: it fell behind the ring of recent pages, or a page was decided before it joined.
//! Memory is bounded by the ring ([`RING_PAGES`]): a stalled stream holds only its place in
//! it, and the dispatcher never waits for anyone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use cordon_proto::v1::Event;
use tokio::sync::broadcast;

use super::GatewayState;
use crate::identity::Identity;

/// Events the dispatcher reads from storage per page.
const DISPATCH_PAGE: u32 = 1024;

/// Pages kept for streams that are a little behind; one further behind reads on its own.
const RING_PAGES: usize = 32;

/// Releases (events times identities) decided at publication and not yet dispatched, kept at
/// most (past it the dispatcher decides the events again, as it would any event).
const MAX_PREDECIDED: usize = 1 << 20;

/// An event decided at its publication for `identities` ([`super::predecide`]), its
/// decisions stored with it: what each identity, by index, was released.
pub(super) struct Predecided {
    pub sequence: u64,
    /// The policy revision of its decisions (none if they were made under two).
    pub revision: Option<String>,
    pub identities: Arc<[String]>,
    pub released: Vec<Option<Arc<Delivered>>>,
}

/// One released event, shared by every stream (of every identity) it was released to in
/// the same form.
#[derive(Debug)]
pub(crate) struct Delivered {
    pub event: Event,
}

/// One page of the feed, decided for every identity that was listening when it was read.
#[derive(Debug)]
pub(super) struct Page {
    /// The page holds the events after this sequence…
    pub after: u64,
    /// …up to this one (everything in between was seen, released or not).
    pub scanned_to: u64,
    /// The head the read saw.
    pub head: u64,
    /// Whether the read stopped at its size (more is waiting) rather than at the head.
    pub full: bool,
    /// What each identity (by name) was released, in order. An identity absent from the
    /// map was not decided for: its streams read this page on their own.
    pub released: Released,
}

#[derive(Debug)]
struct Registry {
    /// Everything up to here has been dispatched, or passed while no one listened.
    position: u64,
    /// Identities with joined streams, and how many.
    listening: HashMap<String, (Identity, usize)>,
    /// The ring; gone once [`Dispatcher::run`] has ended, so that joined streams see it
    /// closed and read on their own, and no stream joins any more.
    pages: Option<broadcast::Sender<Arc<Page>>>,
}

/// The gateway's dispatcher (see the module documentation).
#[derive(Debug)]
pub struct Dispatcher {
    registry: Mutex<Registry>,
    /// By sequence.
    predecided: Mutex<BTreeMap<u64, Predecided>>,
}

impl std::fmt::Debug for Predecided {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Predecided")
            .field("sequence", &self.sequence)
            .field("identities", &self.identities.len())
            .finish()
    }
}

/// A stream's place with the dispatcher; leaving is dropping it.
pub(super) struct Joined {
    pub pages: broadcast::Receiver<Arc<Page>>,
    _membership: Membership,
}

struct Membership {
    dispatcher: Arc<Dispatcher>,
    key: String,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut registry = self.dispatcher.lock();
        if let Some((_, streams)) = registry.listening.get_mut(&self.key) {
            *streams = streams.saturating_sub(1);
            if *streams == 0 {
                registry.listening.remove(&self.key);
            }
        }
    }
}

impl Dispatcher {
    /// A dispatcher whose first page follows `position` (the head when the gateway starts:
    /// no stream is caught up before it).
    pub fn new(position: u64) -> Arc<Dispatcher> {
        let (pages, _) = broadcast::channel(RING_PAGES);
        Arc::new(Dispatcher {
            registry: Mutex::new(Registry {
                position,
                listening: HashMap::new(),
                pages: Some(pages),
            }),
            predecided: Mutex::new(BTreeMap::new()),
        })
    }

    fn predecided(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Predecided>> {
        self.predecided
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The identities with joined streams (none once the dispatcher has stopped).
    pub(super) fn listeners(&self) -> Vec<Identity> {
        let registry = self.lock();
        if registry.pages.is_none() {
            return Vec::new();
        }
        registry
            .listening
            .values()
            .map(|(identity, _)| identity.clone())
            .collect()
    }

    /// Keeps what a publish decided, until its events are dispatched (called on commit,
    /// before the feed head moves past them).
    pub(super) fn deposit(&self, decided: Vec<Predecided>) {
        let position = self.lock().position;
        let mut kept = self.predecided();
        // Dispatched, or passed while no one listened.
        *kept = kept.split_off(&position.saturating_add(1));
        for item in decided {
            // Bounded by releases kept (events times identities), not by events alone.
            if item.sequence > position
                && (kept.len() + 1) * item.released.len().max(1) <= MAX_PREDECIDED
            {
                kept.insert(item.sequence, item);
            }
        }
    }

    /// Takes what was decided at publication on the events after `after` up to `to`,
    /// dropping what is older.
    fn take_predecided(&self, after: u64, to: u64) -> BTreeMap<u64, Predecided> {
        let mut kept = self.predecided();
        let later = kept.split_off(&to.saturating_add(1));
        let mut taken = std::mem::replace(&mut *kept, later);
        taken.split_off(&after.saturating_add(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins a stream of `identity` whose cursor is `cursor`, if it has read at least as far
    /// as the dispatcher has dispatched (otherwise it reads on until it has).
    pub(super) fn join(self: &Arc<Self>, identity: &Identity, cursor: u64) -> Option<Joined> {
        let mut registry = self.lock();
        if registry.position > cursor {
            return None;
        }
        // Subscribed under the lock: every page after `position` reaches this receiver.
        let pages = registry.pages.as_ref()?.subscribe();
        let key = identity.to_string();
        registry
            .listening
            .entry(key.clone())
            .or_insert_with(|| (identity.clone(), 0))
            .1 += 1;
        Some(Joined {
            pages,
            _membership: Membership {
                dispatcher: self.clone(),
                key,
            },
        })
    }

    /// Identities listening, or `None` (the position moved to `head`) if no one is; with
    /// the position.
    fn listening(&self, head: u64) -> (u64, Option<Vec<Identity>>) {
        let mut registry = self.lock();
        if registry.listening.is_empty() {
            registry.position = registry.position.max(head);
            return (registry.position, None);
        }
        let identities = registry
            .listening
            .values()
            .map(|(identity, _)| identity.clone())
            .collect();
        (registry.position, Some(identities))
    }

    /// Hands `page` to every joined stream and moves the position past it.
    fn publish(&self, page: Page) {
        let mut registry = self.lock();
        registry.position = registry.position.max(page.scanned_to);
        // No receiver is not an error: everyone may have left meanwhile.
        if let Some(pages) = &registry.pages {
            let _ = pages.send(Arc::new(page));
        }
    }

    /// Sends every joined stream back to reading on its own (after a failed read).
    fn release_everyone(&self, after: u64) {
        if let Some(pages) = &self.lock().pages {
            let _ = pages.send(Arc::new(Page {
                after,
                scanned_to: u64::MAX,
                head: 0,
                full: false,
                released: HashMap::new(),
            }));
        }
    }

    /// Dispatches every new page until the gateway stops. The decisions of one page are
    /// committed while the next is read and decided; a page is handed out only once its own
    /// decisions are stored.
    pub async fn run(self: Arc<Self>, state: Arc<GatewayState>) {
        /// Closes the ring however `run` ends (a panic included).
        struct Closing<'a>(&'a Dispatcher);
        impl Drop for Closing<'_> {
            fn drop(&mut self) {
                self.0.lock().pages = None;
            }
        }
        let _closing = Closing(&self);
        let mut head = state.store.watch_head();
        let mut shutdown = state.shutdown.clone();
        // Where the next read starts: past the page whose decisions are being stored.
        let mut next = 0;
        let mut storing: Option<Storing> = None;
        loop {
            // Mark the head seen before reading: a commit after this point changes the
            // watch, so the wait below cannot miss it.
            let target = *head.borrow_and_update();
            let (position, identities) = self.listening(target);
            next = next.max(position);
            let mut more = false;
            if let Some(identities) = identities
                && target > next
            {
                match state.store.read_after(next, DISPATCH_PAGE, &[]).await {
                    Ok(mut batch) => {
                        // No further than the head this process knows: a publish's events
                        // are known once its decisions made at publication are handed over.
                        let truncated = batch.scanned_to > target;
                        if truncated {
                            batch.events.retain(|event| event.sequence <= target);
                            batch.scanned_to = target;
                        }
                        // A retraction goes to those whose allow decision is stored: the
                        // previous page's decisions must be, before it is decided.
                        if batch.events.iter().any(|event| {
                            matches!(event.body, cordon_storage::EventBody::Retracted { .. })
                        }) {
                            self.hand_out(storing.take()).await;
                        }
                        let full = truncated || batch.events.len() >= DISPATCH_PAGE as usize;
                        let page = Page {
                            after: next,
                            scanned_to: batch.scanned_to.max(next),
                            head: batch.head,
                            full,
                            released: HashMap::new(),
                        };
                        // Events decided at publication (under the policy now active) go as
                        // they were decided; the others are decided here.
                        let predecided = self.take_predecided(page.after, page.scanned_to);
                        let revision = state.releaser.policy_revision();
                        let (at_publication, undecided) =
                            split_decided(&identities, batch.events, &predecided, &revision);
                        let stored = if undecided.is_empty() {
                            Some((None, at_publication))
                        } else {
                            match state.decide_page(&identities, undecided).await {
                                Ok((decided, records)) => {
                                    let log = state.decision_log.clone();
                                    let pages = crate::release::pages_of(
                                        &records,
                                        page.after,
                                        page.scanned_to,
                                    );
                                    let released = at_publication
                                        .into_iter()
                                        .zip(decided)
                                        .map(|(published, decided)| merged(published, decided));
                                    let write = tokio::spawn(async move {
                                        log.write_page(&records, pages).await
                                    });
                                    Some((Some(write), released.collect()))
                                }
                                Err(status) => {
                                    // Its streams read this page on their own, and meet the
                                    // failure there.
                                    tracing::warn!(%status, "dispatcher could not decide a page");
                                    None
                                }
                            }
                        };
                        let stored = stored.map(|(write, released)| {
                            let released = identities
                                .iter()
                                .map(Identity::to_string)
                                .zip(released)
                                .collect();
                            (write, released)
                        });
                        next = page.scanned_to;
                        self.hand_out(storing.take()).await;
                        storing = Some(Storing { page, stored });
                        more = full;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "dispatcher could not read the feed");
                        self.hand_out(storing.take()).await;
                        self.release_everyone(next);
                    }
                }
            }
            if more {
                continue;
            }
            self.hand_out(storing.take()).await;
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
    }

    /// Waits for a page's decisions to be stored, then hands it out; with nothing released
    /// (its streams read it on their own) if they could not be.
    async fn hand_out(&self, storing: Option<Storing>) {
        let Some(Storing { mut page, stored }) = storing else {
            return;
        };
        if let Some((write, released)) = stored {
            match write {
                // Decided at publication, stored with the events.
                None => page.released = released,
                Some(write) => match write.await {
                    Ok(Ok(())) => page.released = released,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "dispatcher could not store a page's decisions");
                    }
                    Err(error) => tracing::warn!(%error, "dispatcher's decision write failed"),
                },
            }
        }
        self.publish(page);
    }
}

/// A page whose decisions are being stored.
struct Storing {
    page: Page,
    /// The write of its decisions (none if they were stored at publication or could not be
    /// made) and, once it has committed, what each identity was released.
    stored: Option<(Option<DecisionWrite>, Released)>,
}

/// A publish's identities, and each one's index among them.
type IdentityIndex<'a> = (Arc<[String]>, HashMap<&'a str, usize>);

/// What was released at publication, per identity of `identities` and in order, on the events
/// decided then for every one of them under `revision`; and the other events, to decide now.
fn split_decided(
    identities: &[Identity],
    events: Vec<cordon_storage::StoredEvent>,
    predecided: &BTreeMap<u64, Predecided>,
    revision: &str,
) -> (Vec<Vec<Arc<Delivered>>>, Vec<cordon_storage::StoredEvent>) {
    let keys: Vec<String> = identities.iter().map(Identity::to_string).collect();
    // The decisions of one publish share their identities: index each list once.
    let mut indexes: Vec<IdentityIndex<'_>> = Vec::new();
    let mut released = vec![Vec::new(); identities.len()];
    let mut undecided = Vec::new();
    for event in events {
        let Some(item) = predecided
            .get(&event.sequence)
            .filter(|item| item.revision.as_deref() == Some(revision))
        else {
            undecided.push(event);
            continue;
        };
        let index = match indexes
            .iter()
            .position(|(known, _)| Arc::ptr_eq(known, &item.identities))
        {
            Some(index) => index,
            None => {
                let index: HashMap<&str, usize> = item
                    .identities
                    .iter()
                    .enumerate()
                    .map(|(position, key)| (key.as_str(), position))
                    .collect();
                indexes.push((item.identities.clone(), index));
                indexes.len() - 1
            }
        };
        let positions: Option<Vec<usize>> = keys
            .iter()
            .map(|key| indexes[index].1.get(key.as_str()).copied())
            .collect();
        let Some(positions) = positions else {
            undecided.push(event);
            continue;
        };
        for (list, position) in released.iter_mut().zip(positions) {
            list.extend(item.released[position].clone());
        }
    }
    (released, undecided)
}

/// Two lists of released events, each in order of sequence, as one.
fn merged(first: Vec<Arc<Delivered>>, second: Vec<Arc<Delivered>>) -> Vec<Arc<Delivered>> {
    if second.is_empty() {
        return first;
    }
    let mut all = first;
    all.extend(second);
    all.sort_by_key(|delivered| delivered.event.sequence);
    all
}

type DecisionWrite = tokio::task::JoinHandle<Result<(), cordon_storage::StorageError>>;

/// What each identity (by name) was released of a page.
type Released = HashMap<String, Vec<Arc<Delivered>>>;
