//! A session's state relayed to each thread that has watchers of it: one
//! small task per (session, thread) follows the session's shared channel and
//! republishes every value on a channel of that thread's own, which the
//! thread's watchers follow.
//!
//! Why: a change wakes every watcher's task, and waking a task that lives on
//! another serving thread costs a system call (tokio writes to that runtime's
//! eventfd for each one). Through the relay a change published on one thread
//! crosses to each other thread once, and its watchers there are woken
//! locally: in the fan-out benchmark ~500 fewer `write`s per change.
//!
//! The relay wakes a thread's watchers in groups, letting each group's
//! messages reach their connections before it wakes the next: woken all at
//! once, a thousand watchers would all be encoded before their connections
//! ran to send any of it, so the first message waited for the last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use tokio::sync::watch;

use super::hub::WatchState;

/// The relays of one session, by the thread they serve.
#[derive(Default)]
pub(super) struct Relays {
    by_thread: Arc<Mutex<ByThread>>,
}

type ByThread = HashMap<ThreadId, Arc<Local>>;

/// Watchers woken together. 16 and 64 measured alike in the fan-out
/// benchmark (BENCHMARKS.md); the smaller sends the first messages sooner.
const GROUP_SIZE: usize = 16;

/// One thread's watchers of a session, in groups of at most `GROUP_SIZE`,
/// each on a channel of its own.
struct Local {
    groups: Mutex<Vec<watch::Sender<WatchState>>>,
}

impl Local {
    fn new(first: WatchState) -> Self {
        Local {
            groups: Mutex::new(vec![watch::Sender::new(first)]),
        }
    }

    fn subscribe(&self) -> watch::Receiver<WatchState> {
        let mut groups = lock(&self.groups);
        if let Some(group) = groups.iter().find(|g| g.receiver_count() < GROUP_SIZE) {
            return group.subscribe();
        }
        let group = watch::Sender::new(groups[0].borrow().clone());
        let receiver = group.subscribe();
        groups.push(group);
        receiver
    }

    fn watchers(&self) -> usize {
        lock(&self.groups).iter().map(|g| g.receiver_count()).sum()
    }

    /// Every group's value replaced, yielding to the runtime between groups.
    async fn publish(&self, value: WatchState) {
        let count = lock(&self.groups).len();
        for index in 0..count {
            if index > 0 {
                tokio::task::yield_now().await;
            }
            if let Some(group) = lock(&self.groups).get(index) {
                group.send_replace(value.clone());
            }
        }
    }

    /// Until no group has a watcher (a group added meanwhile isn't waited
    /// for: the caller checks again).
    async fn emptied(&self) {
        let groups = lock(&self.groups).clone();
        for group in groups {
            group.closed().await;
        }
    }
}

impl Relays {
    /// A receiver of `shared`'s values for a watcher on the calling thread,
    /// starting this thread's relay if it has none.
    pub(super) fn subscribe(
        &self,
        shared: &watch::Sender<WatchState>,
    ) -> watch::Receiver<WatchState> {
        let thread = std::thread::current().id();
        let mut by_thread = lock(&self.by_thread);
        if let Some(local) = by_thread.get(&thread) {
            return local.subscribe();
        }
        let mut source = shared.subscribe();
        let local = Arc::new(Local::new(source.borrow_and_update().clone()));
        let receiver = local.subscribe();
        by_thread.insert(thread, local.clone());
        tokio::spawn(relay(
            source,
            Registration {
                by_thread: self.by_thread.clone(),
                thread,
                local,
            },
        ));
        receiver
    }
}

/// Forwards every value until the session's channel closes (its watchers
/// then see theirs close too) or this thread has no watchers left (so the
/// session's poller can see nobody watches).
async fn relay(mut source: watch::Receiver<WatchState>, registered: Registration) {
    let local = &registered.local;
    loop {
        tokio::select! {
            changed = source.changed() => {
                let value = source.borrow_and_update().clone();
                local.publish(value).await;
                if changed.is_err() {
                    return;
                }
            }
            () = local.emptied() => {
                // Checked under the lock: on a multi-threaded runtime a
                // watcher may be subscribing right now.
                let mut by_thread = lock(&registered.by_thread);
                if local.watchers() == 0 {
                    registered.remove_from(&mut by_thread);
                    return;
                }
            }
        }
    }
}

/// A relay's place in its session's map, given up when the relay ends,
/// also when its runtime drops it unfinished.
struct Registration {
    by_thread: Arc<Mutex<ByThread>>,
    thread: ThreadId,
    local: Arc<Local>,
}

impl Registration {
    fn remove_from(&self, by_thread: &mut ByThread) {
        if by_thread
            .get(&self.thread)
            .is_some_and(|registered| Arc::ptr_eq(registered, &self.local))
        {
            by_thread.remove(&self.thread);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.remove_from(&mut lock(&self.by_thread));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::watch::WatchEnd;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn label(state: &WatchState) -> &'static str {
        match state {
            WatchState::Pending => "pending",
            WatchState::Live(_) => "live",
            WatchState::Ended(WatchEnd::Unreachable) => "unreachable",
            WatchState::Ended(_) => "ended",
        }
    }

    /// Watches on its own thread and runtime, as a serving thread would:
    /// `watchers` receivers, each waiting for one change after the first value.
    fn watch_on_thread(
        relays: Arc<Relays>,
        shared: Arc<watch::Sender<WatchState>>,
        watchers: usize,
        subscribed: std::sync::mpsc::Sender<()>,
    ) -> std::thread::JoinHandle<Vec<(&'static str, &'static str)>> {
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let mut receivers: Vec<_> =
                    (0..watchers).map(|_| relays.subscribe(&shared)).collect();
                let firsts: Vec<_> = receivers
                    .iter_mut()
                    .map(|receiver| label(&receiver.borrow_and_update()))
                    .collect();
                subscribed.send(()).unwrap();
                let mut seen = Vec::new();
                for (receiver, first) in receivers.iter_mut().zip(firsts) {
                    tokio::time::timeout(Duration::from_secs(5), receiver.changed())
                        .await
                        .unwrap()
                        .unwrap();
                    seen.push((first, label(&receiver.borrow_and_update())));
                }
                seen
            })
        })
    }

    #[test]
    fn each_thread_follows_the_session_through_one_relay() {
        let relays = Arc::new(Relays::default());
        let shared = Arc::new(watch::Sender::new(WatchState::Pending));
        let (subscribed, ready) = std::sync::mpsc::channel();
        let threads: Vec<_> = (0..2)
            .map(|_| watch_on_thread(relays.clone(), shared.clone(), 3, subscribed.clone()))
            .collect();
        ready.recv().unwrap();
        ready.recv().unwrap();
        // Six watchers, two relays: the session's channel has one receiver per thread.
        assert_eq!(shared.receiver_count(), 2);
        assert_eq!(lock(&relays.by_thread).len(), 2);

        shared.send_replace(WatchState::Ended(WatchEnd::Unreachable));
        for thread in threads {
            assert_eq!(thread.join().unwrap(), vec![("pending", "unreachable"); 3]);
        }
        // The watchers are gone with their runtimes, and so are the relays.
        assert_eq!(shared.receiver_count(), 0);
        assert!(lock(&relays.by_thread).is_empty());
    }

    #[tokio::test]
    async fn many_watchers_on_one_thread_are_woken_group_by_group() {
        let relays = Relays::default();
        let shared = watch::Sender::new(WatchState::Pending);
        let mut watchers: Vec<_> = (0..GROUP_SIZE * 2 + 1)
            .map(|_| relays.subscribe(&shared))
            .collect();
        let local = lock(&relays.by_thread).values().next().unwrap().clone();
        assert_eq!(lock(&local.groups).len(), 3);
        assert_eq!(local.watchers(), GROUP_SIZE * 2 + 1);

        shared.send_replace(WatchState::Ended(WatchEnd::Unreachable));
        // The relay runs, wakes the first group and yields before the next.
        let mut woken = Vec::new();
        for _ in 0..3 {
            tokio::task::yield_now().await;
            woken.push(
                watchers
                    .iter_mut()
                    .filter(|watcher| watcher.has_changed().unwrap())
                    .count(),
            );
        }
        assert_eq!(woken, vec![GROUP_SIZE, GROUP_SIZE * 2, GROUP_SIZE * 2 + 1]);
        for watcher in &mut watchers {
            assert_eq!(label(&watcher.borrow_and_update()), "unreachable");
        }
    }

    #[tokio::test]
    async fn a_relay_ends_with_its_last_watcher() {
        let relays = Relays::default();
        let shared = watch::Sender::new(WatchState::Pending);
        let first = relays.subscribe(&shared);
        let second = relays.subscribe(&shared);
        assert_eq!(shared.receiver_count(), 1);
        drop(first);
        tokio::task::yield_now().await;
        assert_eq!(shared.receiver_count(), 1, "one watcher is left");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), shared.closed())
            .await
            .expect("the relay let go of the session");
        assert!(lock(&relays.by_thread).is_empty());

        // A later watcher on this thread gets a new relay.
        let mut again = relays.subscribe(&shared);
        shared.send_replace(WatchState::Ended(WatchEnd::ShuttingDown));
        again.changed().await.unwrap();
        assert_eq!(label(&again.borrow()), "ended");
    }

    #[tokio::test]
    async fn watchers_see_the_last_value_then_the_close() {
        let relays = Relays::default();
        let shared = watch::Sender::new(WatchState::Pending);
        let mut watcher = relays.subscribe(&shared);
        shared.send_replace(WatchState::Ended(WatchEnd::Unreachable));
        drop(shared);
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            while watcher.changed().await.is_ok() {}
        });
        closed.await.expect("the watcher's channel closes");
        assert_eq!(label(&watcher.borrow()), "unreachable");
        assert!(lock(&relays.by_thread).is_empty());
    }
}
