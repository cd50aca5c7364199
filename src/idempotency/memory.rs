//! The in-memory store: answers in a bounded cache (the least recently used
//! go first, and none outlives the TTL); claims in flight apart, since
//! evicting one could let a duplicate send a second SMS. Those are bounded
//! by the starts running at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::policy::EvictionPolicy;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Claim, IdempotencyStore};

#[derive(Clone)]
struct Answer {
    fingerprint: [u8; 32],
    encoded: Arc<Vec<u8>>,
    /// On tokio's clock (the cache's own TTL is a backstop on the system's).
    expires: Instant,
}

struct InFlight {
    fingerprint: [u8; 32],
    /// Dropped (waking the duplicates) when the first call ends.
    done: watch::Sender<()>,
}

pub struct MemoryStore {
    ttl: Duration,
    answers: moka::sync::Cache<String, Answer>,
    in_flight: Mutex<HashMap<String, InFlight>>,
}

impl MemoryStore {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        MemoryStore {
            ttl,
            answers: moka::sync::Cache::builder()
                .max_capacity(capacity.max(1) as u64)
                .eviction_policy(EvictionPolicy::lru())
                .time_to_live(ttl.max(Duration::from_secs(1)))
                .build(),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(&self, key: &str, fingerprint: [u8; 32]) -> Claim {
        loop {
            let mut waiting = {
                let mut in_flight = self.in_flight();
                if let Some(first) = in_flight.get(key) {
                    if first.fingerprint != fingerprint {
                        return Claim::Mismatch;
                    }
                    first.done.subscribe()
                } else {
                    match self.answers.get(key).filter(|a| a.expires > Instant::now()) {
                        Some(answer) if answer.fingerprint != fingerprint => {
                            return Claim::Mismatch;
                        }
                        Some(answer) => return Claim::Replay(answer.encoded.as_ref().clone()),
                        None => {
                            let done = watch::channel(()).0;
                            in_flight.insert(key.to_owned(), InFlight { fingerprint, done });
                            return Claim::Proceed;
                        }
                    }
                }
            };
            // The first request is in flight: wait until it ends, then look again.
            let _ = waiting.changed().await;
        }
    }

    async fn finish(&self, key: &str, answer: Option<Vec<u8>>) {
        let mut in_flight = self.in_flight();
        let Some(first) = in_flight.remove(key) else {
            return;
        };
        if let Some(encoded) = answer {
            let answer = Answer {
                fingerprint: first.fingerprint,
                encoded: Arc::new(encoded),
                expires: Instant::now() + self.ttl,
            };
            self.answers.insert(key.to_owned(), answer);
        }
        // Dropping `first.done` here, after the answer is stored, wakes the duplicates.
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
        store.answers.run_pending_tasks();
        assert_eq!(store.answers.entry_count(), 3);
        // "a" was evicted: it can be claimed afresh, even with another payload.
        assert_eq!(store.claim("a", B).await, Claim::Proceed);
        assert_eq!(store.claim("d", A).await, Claim::Replay(b"d".to_vec()));
    }
}
