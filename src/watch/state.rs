//! What the parts of the watch engine share: a session's key and state, what
//! a watcher is told, and the registry of watched sessions. Hub, poller and
//! the gRPC stream import these instead of each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, watch};

use super::budget::PollBudget;
use super::schedule::PollSchedule;
use crate::cluster::Cluster;
use crate::upstream::{SessionInfo, SessionStatus, UpstreamClient, UpstreamError};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub subaccount: String,
    pub session_id: String,
}

/// How the engine learnt a session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Source {
    Poll,
    Start,
    CheckCode,
    Callback,
    Expiry,
}

impl Source {
    /// As the proto's ObservationSource names it, for spans.
    pub fn name(self) -> &'static str {
        match self {
            Source::Poll => "POLL",
            Source::Start => "START",
            Source::CheckCode => "CHECK_CODE",
            Source::Callback => "CALLBACK",
            Source::Expiry => "EXPIRY",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

/// One watched session: its latest state, a wake-up for callback hints, a
/// count of write-throughs so a poll answer older than one is dropped, and
/// whether this replica holds its lease (released at shutdown).
pub(super) struct Entry {
    pub state: watch::Sender<WatchState>,
    pub nudge: Notify,
    pub writes: AtomicU64,
    pub leased: AtomicBool,
    /// Who first asked to watch it: its polls take turns with other callers'.
    pub caller: String,
    /// The span of the watch that started the poller: each poll's span
    /// links to it (invalid with traces off).
    pub origin: opentelemetry::trace::SpanContext,
}

impl Entry {
    pub fn new(caller: &str) -> Self {
        Entry {
            state: watch::Sender::new(WatchState::Pending),
            nudge: Notify::new(),
            writes: AtomicU64::new(0),
            leased: AtomicBool::new(false),
            caller: caller.to_owned(),
            origin: crate::telemetry::traces::current_span_context(),
        }
    }
}

pub(super) struct Shared {
    pub entries: Mutex<HashMap<SessionKey, Arc<Entry>>>,
    pub upstream: UpstreamClient,
    pub config: WatchConfig,
    pub budget: PollBudget,
    pub streams: Arc<Semaphore>,
    pub shutting_down: AtomicBool,
    /// Set with `--redis-url`: sessions are polled once across replicas.
    pub cluster: Option<Arc<Cluster>>,
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
