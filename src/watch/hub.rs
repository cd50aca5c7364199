//! The watch engine's entry point: subscribe to a session, publish what the
//! facade learnt, nudge a poll, shut down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::budget::PollBudget;
use super::state::{
    Entry, Observation, SessionKey, Shared, Source, WatchConfig, WatchEnd, WatchState, apply,
};
use super::{poller, remote};
use crate::cluster::{Cluster, Messages};
use crate::upstream::{SessionInfo, UpstreamClient};

#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl Hub {
    /// With `cluster`, sessions are polled once across the replicas that
    /// share it, and what any of them learns reaches every watcher.
    pub fn new(
        upstream: UpstreamClient,
        config: WatchConfig,
        cluster: Option<(Arc<Cluster>, Messages)>,
    ) -> Self {
        let (cluster, messages) = cluster.unzip();
        let shared = Arc::new(Shared {
            entries: Mutex::new(HashMap::new()),
            upstream,
            budget: PollBudget::new(config.poll_budget_per_second, cluster.clone()),
            streams: Arc::new(Semaphore::new(config.max_streams)),
            config,
            shutting_down: AtomicBool::new(false),
            cluster,
        });
        if let (Some(cluster), Some(messages)) = (&shared.cluster, messages) {
            let replica = cluster.replica().to_owned();
            tokio::spawn(remote::listen(Arc::downgrade(&shared), replica, messages));
        }
        Hub { shared }
    }

    /// A stream slot, held for the stream's lifetime; None when all are taken.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.shared.streams.clone().try_acquire_owned().ok()
    }

    /// Follows a session, starting its poller if nobody watches it yet;
    /// `caller` (a name or an address) gets fair turns at the poll budget.
    pub fn subscribe(&self, key: SessionKey, caller: &str) -> watch::Receiver<WatchState> {
        if self.shared.shutting_down.load(Ordering::Acquire) {
            return watch::channel(WatchState::Ended(WatchEnd::ShuttingDown)).1;
        }
        let mut entries = self.shared.lock();
        if let Some(entry) = entries.get(&key) {
            return entry.state.subscribe();
        }
        let entry = Arc::new(Entry::new(caller));
        entries.insert(key.clone(), entry.clone());
        let receiver = entry.state.subscribe();
        tokio::spawn(poller::run(self.shared.clone(), key, entry));
        receiver
    }

    /// Write-through: what the facade learnt from its own call reaches the
    /// session's watchers at once, on this replica and (in the background,
    /// so the call doesn't wait for Redis) on the others.
    pub fn publish(&self, key: &SessionKey, session: &SessionInfo, source: Source) {
        let observation = Observation::now(session.clone(), source);
        if let Some(cluster) = self.shared.cluster.clone() {
            let (key, observation) = (key.clone(), observation.clone());
            tokio::spawn(async move { remote::share(&cluster, &key, &observation).await });
        }
        let entry = self.shared.lock().get(key).cloned();
        if let Some(entry) = entry {
            entry.writes.fetch_add(1, Ordering::AcqRel);
            apply(&entry, observation);
        }
    }

    /// A callback hint: the session's poller, on whichever replica, polls now.
    pub fn nudge(&self, key: &SessionKey) -> bool {
        if let Some(cluster) = self.shared.cluster.clone() {
            let key = key.clone();
            tokio::spawn(async move { remote::nudge(&cluster, &key).await });
        }
        match self.shared.lock().get(key) {
            Some(entry) => {
                entry.nudge.notify_one();
                true
            }
            None => false,
        }
    }

    /// Ends every stream with UNAVAILABLE, refuses new watchers, and hands
    /// this replica's leases back so another replica takes over at once.
    pub async fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        let entries: Vec<_> = self.shared.lock().drain().collect();
        for (_, entry) in &entries {
            entry
                .state
                .send_replace(WatchState::Ended(WatchEnd::ShuttingDown));
        }
        if let Some(cluster) = &self.shared.cluster {
            let releases = entries
                .iter()
                .filter(|(_, entry)| entry.leased.load(Ordering::Acquire))
                .map(|(key, _)| remote::release(cluster, key));
            futures_util::future::join_all(releases).await;
        }
    }

    /// Sessions with a poller right now.
    pub fn watched_sessions(&self) -> usize {
        self.shared.lock().len()
    }
}
