//! The watch engine's entry point: subscribe to a session, publish what the
//! facade learnt, nudge a poll, shut down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use super::budget::PollBudget;
use super::poller;
use super::state::{
    Entry, Observation, SessionKey, Shared, Source, WatchConfig, WatchEnd, WatchState, apply,
};
use crate::upstream::{SessionInfo, UpstreamClient};

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
            return entry.state.subscribe();
        }
        let entry = Arc::new(Entry {
            state: watch::Sender::new(WatchState::Pending),
            nudge: Notify::new(),
            writes: AtomicU64::new(0),
        });
        entries.insert(key.clone(), entry.clone());
        let receiver = entry.state.subscribe();
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
