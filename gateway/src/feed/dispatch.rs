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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cordon_proto::v1::Event;
use tokio::sync::broadcast;

use super::GatewayState;
use crate::identity::Identity;

/// Events the dispatcher reads from storage per page.
const DISPATCH_PAGE: u32 = 1024;

/// Pages kept for streams that are a little behind; one further behind reads on its own.
const RING_PAGES: usize = 32;

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
        })
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
                    Ok(batch) => {
                        // A retraction goes to those whose allow decision is stored: the
                        // previous page's decisions must be, before it is decided.
                        if batch.events.iter().any(|event| {
                            matches!(event.body, cordon_storage::EventBody::Retracted { .. })
                        }) {
                            self.hand_out(storing.take()).await;
                        }
                        let full = batch.events.len() >= DISPATCH_PAGE as usize;
                        let page = Page {
                            after: next,
                            scanned_to: batch.scanned_to.max(next),
                            head: batch.head,
                            full,
                            released: HashMap::new(),
                        };
                        let decided = state.decide_page(&identities, batch.events).await;
                        let stored = match decided {
                            Ok((released, records)) => {
                                let log = state.decision_log.clone();
                                let pages =
                                    crate::release::pages_of(&records, page.after, page.scanned_to);
                                let write =
                                    tokio::spawn(
                                        async move { log.write_page(&records, pages).await },
                                    );
                                let released = identities
                                    .iter()
                                    .map(Identity::to_string)
                                    .zip(released)
                                    .collect();
                                Some((write, released))
                            }
                            Err(status) => {
                                // Its streams read this page on their own, and meet the
                                // failure there.
                                tracing::warn!(%status, "dispatcher could not decide a page");
                                None
                            }
                        };
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
            match write.await {
                Ok(Ok(())) => page.released = released,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "dispatcher could not store a page's decisions");
                }
                Err(error) => tracing::warn!(%error, "dispatcher's decision write failed"),
            }
        }
        self.publish(page);
    }
}

/// A page whose decisions are being stored.
struct Storing {
    page: Page,
    /// The write and, once it has committed, what each identity was released.
    stored: Option<(DecisionWrite, Released)>,
}

type DecisionWrite = tokio::task::JoinHandle<Result<(), cordon_storage::StorageError>>;

/// What each identity (by name) was released of a page.
type Released = HashMap<String, Vec<Arc<Delivered>>>;
