//! The registry of watched sessions and the state each one fans out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use super::budget::PollBudget;
use super::poller;
use super::relay::Relays;
use super::schedule::PollSchedule;
use crate::upstream::{SessionInfo, SessionStatus, UpstreamClient, UpstreamError};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub subaccount: String,
    pub session_id: String,
}

/// How the engine learnt a session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Poll,
    Start,
    CheckCode,
    Callback,
    Expiry,
}

#[derive(Debug, Clone)]
pub struct Observation {
    pub session: SessionInfo,
    pub source: Source,
    pub observed_at: DateTime<Utc>,
}

impl Observation {
    pub fn now(session: SessionInfo, source: Source) -> Self {
        Observation {
            session,
            source,
            observed_at: Utc::now(),
        }
    }

    /// What a watcher is told about when it changes.
    pub fn fingerprint(&self) -> (SessionStatus, u32, Option<DateTime<Utc>>) {
        (
            self.session.status,
            self.session.attempt,
            self.session.expires_at,
        )
    }
}

#[derive(Debug, Clone)]
pub enum WatchState {
    /// The first read of the session is under way.
    Pending,
    Live(Arc<Observation>),
    /// Watching stopped; open streams end with this.
    Ended(WatchEnd),
}

#[derive(Debug, Clone)]
pub enum WatchEnd {
    /// 8x8 answered an error (unknown session, bad key…).
    Upstream(Arc<UpstreamError>),
    /// 8x8 stayed unreachable for longer than the configured window.
    Unreachable,
    /// The server is shutting down.
    ShuttingDown,
}

#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub schedule: PollSchedule,
    /// Upstream polls per second per subaccount, never exceeded.
    pub poll_budget_per_second: f64,
    /// How long polls may keep failing before streams end UNAVAILABLE.
    pub unreachable_window: Duration,
    /// Open WatchSession streams at most.
    pub max_streams: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            schedule: PollSchedule::default(),
            poll_budget_per_second: 20.0,
            unreachable_window: Duration::from_secs(30),
            max_streams: 100_000,
        }
    }
}

/// One watched session: its latest state, a wake-up for callback hints, and
/// a count of write-throughs so a poll answer older than one is dropped.
pub(super) struct Entry {
    pub state: watch::Sender<WatchState>,
    /// Where the watchers on each thread take `state` from.
    relays: Relays,
    pub nudge: Notify,
    pub writes: AtomicU64,
}

pub(super) struct Shared {
    pub entries: Mutex<HashMap<SessionKey, Arc<Entry>>>,
    pub upstream: UpstreamClient,
    pub config: WatchConfig,
    pub budget: PollBudget,
    streams: Arc<Semaphore>,
    shutting_down: AtomicBool,
}

#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl Hub {
    pub fn new(upstream: UpstreamClient, config: WatchConfig) -> Self {
        Hub {
            shared: Arc::new(Shared {
                entries: Mutex::new(HashMap::new()),
                upstream,
                budget: PollBudget::new(config.poll_budget_per_second),
                streams: Arc::new(Semaphore::new(config.max_streams)),
                config,
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    /// A stream slot, held for the stream's lifetime; None when all are taken.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.shared.streams.clone().try_acquire_owned().ok()
    }

    /// Follows a session, starting its poller if nobody watches it yet.
    pub fn subscribe(&self, key: SessionKey) -> watch::Receiver<WatchState> {
        if self.shared.shutting_down.load(Ordering::Acquire) {
            return watch::channel(WatchState::Ended(WatchEnd::ShuttingDown)).1;
        }
        let mut entries = self.shared.lock();
        if let Some(entry) = entries.get(&key) {
            return entry.relays.subscribe(&entry.state);
        }
        let entry = Arc::new(Entry {
            state: watch::Sender::new(WatchState::Pending),
            relays: Relays::default(),
            nudge: Notify::new(),
            writes: AtomicU64::new(0),
        });
        entries.insert(key.clone(), entry.clone());
        let receiver = entry.relays.subscribe(&entry.state);
        tokio::spawn(poller::run(self.shared.clone(), key, entry));
        receiver
    }

    /// Write-through: what the facade learnt from its own call reaches the
    /// session's watchers at once.
    pub fn publish(&self, key: &SessionKey, session: &SessionInfo, source: Source) {
        let entry = self.shared.lock().get(key).cloned();
        if let Some(entry) = entry {
            entry.writes.fetch_add(1, Ordering::AcqRel);
            apply(&entry, Observation::now(session.clone(), source));
        }
    }

    /// A callback hint: poll this session now.
    pub fn nudge(&self, key: &SessionKey) -> bool {
        match self.shared.lock().get(key) {
            Some(entry) => {
                entry.nudge.notify_one();
                true
            }
            None => false,
        }
    }

    /// Ends every stream with UNAVAILABLE and refuses new watchers.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        for entry in self.shared.lock().drain().map(|(_, entry)| entry) {
            entry
                .state
                .send_replace(WatchState::Ended(WatchEnd::ShuttingDown));
        }
    }

    /// Sessions with a poller right now.
    pub fn watched_sessions(&self) -> usize {
        self.shared.lock().len()
    }
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the entry if it is still the registered one and, unless
    /// `always`, nobody watches it. Watchers subscribe under the same lock,
    /// so none can slip in between the check and the removal.
    pub fn retire(&self, key: &SessionKey, entry: &Arc<Entry>, always: bool) -> bool {
        let mut entries = self.lock();
        if !always && entry.state.receiver_count() > 0 {
            return false;
        }
        if entries
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, entry))
        {
            entries.remove(key);
        }
        true
    }
}

/// Applies an observation unless it says nothing new or the session already
/// ended (final statuses never change back).
pub(super) fn apply(entry: &Entry, observation: Observation) {
    entry.state.send_if_modified(|state| {
        let replace = match state {
            WatchState::Ended(_) => false,
            WatchState::Pending => true,
            WatchState::Live(current) => {
                !current.session.status.is_final()
                    && current.fingerprint() != observation.fingerprint()
            }
        };
        if replace {
            *state = WatchState::Live(Arc::new(observation));
        }
        replace
    });
}
