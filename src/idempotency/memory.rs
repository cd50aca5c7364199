//! The in-memory store: bounded, entries live for a TTL.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Claim, IdempotencyStore};

#[derive(Clone)]
enum State {
    InFlight,
    Done(Arc<Vec<u8>>),
}

struct Slot {
    fingerprint: [u8; 32],
    state: watch::Sender<State>,
    expires: Instant,
}

pub struct MemoryStore {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<String, Slot>,
    /// Keys oldest first, for eviction when full.
    order: VecDeque<String>,
}

impl MemoryStore {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        MemoryStore {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Makes room by dropping the oldest answered entries (in-flight ones stay).
    fn evict_for_one_more(&mut self, capacity: usize) {
        let mut kept = VecDeque::new();
        while self.slots.len() >= capacity {
            let Some(key) = self.order.pop_front() else {
                break;
            };
            match self.slots.get(&key) {
                Some(slot) if matches!(*slot.state.borrow(), State::InFlight) => {
                    kept.push_back(key)
                }
                _ => {
                    self.slots.remove(&key);
                }
            }
        }
        while let Some(key) = kept.pop_back() {
            self.order.push_front(key);
        }
    }
}

#[tonic::async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(&self, key: &str, fingerprint: [u8; 32]) -> Claim {
        loop {
            let mut waiting = {
                let mut inner = self.lock();
                let now = Instant::now();
                let live = inner.slots.get(key).filter(|slot| slot.expires > now);
                match live {
                    Some(slot) if slot.fingerprint != fingerprint => return Claim::Mismatch,
                    Some(slot) => match &*slot.state.borrow() {
                        State::Done(answer) => return Claim::Replay(answer.as_ref().clone()),
                        State::InFlight => slot.state.subscribe(),
                    },
                    None => {
                        inner.slots.remove(key);
                        inner.order.retain(|k| k != key);
                        inner.evict_for_one_more(self.capacity);
                        let slot = Slot {
                            fingerprint,
                            state: watch::channel(State::InFlight).0,
                            expires: now + self.ttl,
                        };
                        inner.slots.insert(key.to_owned(), slot);
                        inner.order.push_back(key.to_owned());
                        return Claim::Proceed;
                    }
                }
            };
            // The first request is in flight: wait for its answer, or for
            // its claim to be dropped (then claim again).
            let _ = waiting.changed().await;
        }
    }

    async fn finish(&self, key: &str, answer: Option<Vec<u8>>) {
        let mut inner = self.lock();
        match answer {
            Some(answer) => {
                if let Some(slot) = inner.slots.get(key) {
                    slot.state.send_replace(State::Done(Arc::new(answer)));
                }
            }
            None => {
                // Dropping the sender wakes the waiters, which claim again.
                inner.slots.remove(key);
                inner.order.retain(|k| k != key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    #[tokio::test]
    async fn replays_the_first_answer_and_refuses_another_payload() {
        let store = MemoryStore::new(Duration::from_secs(60), 10);
        assert_eq!(store.claim("k", A).await, Claim::Proceed);
        store.finish("k", Some(b"answer".to_vec())).await;
        assert_eq!(store.claim("k", A).await, Claim::Replay(b"answer".to_vec()));
        assert_eq!(store.claim("k", B).await, Claim::Mismatch);
    }

    #[tokio::test]
    async fn duplicates_wait_for_the_first_in_flight() {
        let store = Arc::new(MemoryStore::new(Duration::from_secs(60), 10));
        assert_eq!(store.claim("k", A).await, Claim::Proceed);
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.claim("k", A).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        store.finish("k", Some(b"first".to_vec())).await;
        assert_eq!(waiter.await.unwrap(), Claim::Replay(b"first".to_vec()));
    }

    #[tokio::test]
    async fn a_failed_first_lets_a_duplicate_proceed() {
        let store = Arc::new(MemoryStore::new(Duration::from_secs(60), 10));
        assert_eq!(store.claim("k", A).await, Claim::Proceed);
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.claim("k", A).await })
        };
        tokio::task::yield_now().await;
        store.finish("k", None).await;
        assert_eq!(waiter.await.unwrap(), Claim::Proceed);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let store = MemoryStore::new(Duration::from_secs(60), 10);
        store.claim("k", A).await;
        store.finish("k", Some(b"x".to_vec())).await;
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(store.claim("k", B).await, Claim::Proceed);
    }

    #[tokio::test]
    async fn memory_is_bounded_by_evicting_the_oldest_answers() {
        let store = MemoryStore::new(Duration::from_secs(60), 3);
        for key in ["a", "b", "c", "d"] {
            store.claim(key, A).await;
            store.finish(key, Some(key.as_bytes().to_vec())).await;
        }
        assert_eq!(store.lock().slots.len(), 3);
        // "a" was evicted: it can be claimed afresh, even with another payload.
        assert_eq!(store.claim("a", B).await, Claim::Proceed);
        assert_eq!(store.claim("d", A).await, Claim::Replay(b"d".to_vec()));
    }
}
