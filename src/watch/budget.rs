//! Upstream poll budget: at most `rate` polls per second per subaccount,
//! however many sessions are watched. Polls queue for a grant from the
//! subaccount's ticker, which hands out one grant per `1/rate`; when many
//! sessions are watched, intervals stretch instead of the budget being
//! exceeded. Prompt reads (a new watcher's snapshot, a callback hint, the
//! expiry check) go before routine polls, so a newcomer isn't stuck behind
//! thousands of them. With Redis the spacing is kept there (GCRA on Redis's
//! clock), so the budget holds for all replicas together; the priorities
//! stay each replica's own. While Redis is unreachable each replica spaces
//! its own grants.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::cluster::Cluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Someone is waiting for this read right now.
    Prompt,
    /// A scheduled poll.
    Routine,
}

pub struct PollBudget {
    spacing: Duration,
    queues: Arc<Queues>,
    cluster: Option<Arc<Cluster>>,
}

type Queues = Mutex<HashMap<String, Arc<Queue>>>;

/// A subaccount with no poll asked for this long loses its queue and ticker.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    arrived: Notify,
}

#[derive(Default)]
struct Waiting {
    heap: BinaryHeap<Waiter>,
    /// Waiters queued per caller, for fair turns between callers.
    per_caller: HashMap<String, u64>,
}

struct Waiter {
    priority: Priority,
    /// How many of its caller's waiters were ahead of it when it came: one
    /// caller's thousand reads don't push another caller's one behind them.
    rank: u64,
    /// Arrival order within a priority and rank.
    ticket: u64,
    caller: String,
    grant: oneshot::Sender<()>,
}

impl PollBudget {
    /// `rate`: polls per second per subaccount (must be > 0), across all
    /// replicas sharing `cluster`.
    pub fn new(rate: f64, cluster: Option<Arc<Cluster>>) -> Self {
        PollBudget {
            spacing: Duration::from_secs_f64(1.0 / rate.max(0.001)),
            queues: Arc::default(),
            cluster,
        }
    }

    /// Waits for this subaccount's next poll grant; `caller` (who asked for
    /// the watch) gets fair turns with the other callers.
    pub async fn acquire(&self, subaccount: &str, priority: Priority, caller: &str) {
        let queue = self.queue(subaccount);
        let (grant, granted) = oneshot::channel();
        {
            let mut waiting = queue.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let queued = waiting.per_caller.entry(caller.to_owned()).or_default();
            let rank = *queued;
            *queued += 1;
            waiting.heap.push(Waiter {
                priority,
                rank,
                ticket: next_ticket(),
                caller: caller.to_owned(),
                grant,
            });
        }
        queue.arrived.notify_one();
        // The ticker lives as long as the queue: it always answers.
        let _ = granted.await;
    }

    fn queue(&self, subaccount: &str) -> Arc<Queue> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = queues.get(subaccount) {
            return queue.clone();
        }
        let queue = Arc::new(Queue::default());
        queues.insert(subaccount.to_owned(), queue.clone());
        let ticker = Ticker {
            queue: queue.clone(),
            queues: Arc::downgrade(&self.queues),
            subaccount: subaccount.to_owned(),
            spacing: self.spacing,
            cluster: self.cluster.clone(),
            key: format!("verif8:budget:{subaccount}"),
        };
        tokio::spawn(ticker.run());
        queue
    }
}

struct Ticker {
    queue: Arc<Queue>,
    queues: std::sync::Weak<Queues>,
    subaccount: String,
    spacing: Duration,
    cluster: Option<Arc<Cluster>>,
    /// The subaccount's rate state in Redis.
    key: String,
}

impl Ticker {
    /// Grants one waiter per `spacing`; a waiter that gave up costs no time.
    async fn run(self) {
        loop {
            let next = self.pop();
            let Some(waiter) = next else {
                let arrived = self.queue.arrived.notified();
                if tokio::time::timeout(IDLE, arrived).await.is_err() && self.retire() {
                    return;
                }
                continue;
            };
            if waiter.grant.is_closed() {
                continue;
            }
            let shared = self.wait_for_shared_slot().await;
            let granted = waiter.grant.send(()).is_ok();
            if granted && !shared {
                tokio::time::sleep(self.spacing).await;
            }
        }
    }

    /// Drops the idle queue, unless someone is about to wait in it (it is
    /// handed out under the same lock, so a holder shows in the count).
    fn retire(&self) -> bool {
        let Some(queues) = self.queues.upgrade() else {
            return true;
        };
        let mut queues = queues.lock().unwrap_or_else(|e| e.into_inner());
        let idle = Arc::strong_count(&self.queue) == 2
            && self
                .queue
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .heap
                .is_empty();
        if idle {
            queues.remove(&self.subaccount);
        }
        idle
    }

    fn pop(&self) -> Option<Waiter> {
        let mut waiting = self.queue.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let waiter = waiting.heap.pop()?;
        if let Some(queued) = waiting.per_caller.get_mut(&waiter.caller) {
            *queued -= 1;
            if *queued == 0 {
                waiting.per_caller.remove(&waiter.caller);
            }
        }
        Some(waiter)
    }

    /// Waits for the cluster's next grant; false without Redis (or while it
    /// is unreachable), when the caller spaces grants itself.
    async fn wait_for_shared_slot(&self) -> bool {
        let Some(cluster) = &self.cluster else {
            return false;
        };
        loop {
            match cluster.take_slot(&self.key, self.spacing).await {
                Ok(wait) if wait.is_zero() => return true,
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(_) => return false,
            }
        }
    }
}

/// A process-wide arrival counter keeps FIFO order within a priority.
fn next_ticket() -> u64 {
    static TICKETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    TICKETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

// BinaryHeap pops the greatest: Prompt before Routine, then the lowest rank
// (fair turns between callers), then the earliest ticket.
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then(other.rank.cmp(&self.rank))
            .then(other.ticket.cmp(&self.ticket))
    }
}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Waiter {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// Acquires in a task and reports when (relative to `start`) it was granted.
    fn spawn_acquire(
        budget: &Arc<PollBudget>,
        subaccount: &'static str,
        priority: Priority,
        start: Instant,
    ) -> tokio::task::JoinHandle<Duration> {
        let budget = budget.clone();
        tokio::spawn(async move {
            budget.acquire(subaccount, priority, "caller").await;
            start.elapsed()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn grants_are_spaced_per_subaccount() {
        let budget = Arc::new(PollBudget::new(10.0, None));
        let start = Instant::now();
        let polls: Vec<_> = (0..5)
            .map(|_| spawn_acquire(&budget, "a", Priority::Routine, start))
            .collect();
        let other = spawn_acquire(&budget, "b", Priority::Routine, start);
        let mut granted = Vec::new();
        for poll in polls {
            granted.push(poll.await.unwrap().as_millis());
        }
        assert_eq!(granted, [0, 100, 200, 300, 400]);
        assert_eq!(other.await.unwrap(), Duration::ZERO, "b has its own budget");
    }

    #[tokio::test(start_paused = true)]
    async fn prompt_reads_go_before_routine_polls() {
        let budget = Arc::new(PollBudget::new(10.0, None));
        let start = Instant::now();
        let routine: Vec<_> = (0..3)
            .map(|_| spawn_acquire(&budget, "a", Priority::Routine, start))
            .collect();
        tokio::task::yield_now().await;
        let prompt = spawn_acquire(&budget, "a", Priority::Prompt, start);
        let prompt_at = prompt.await.unwrap().as_millis();
        let mut routine_at = Vec::new();
        for poll in routine {
            routine_at.push(poll.await.unwrap().as_millis());
        }
        // The first routine poll was already granted at 0; the prompt one is next.
        assert_eq!(prompt_at, 100);
        assert_eq!(routine_at, [0, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_callers_backlog_does_not_hold_up_another() {
        let budget = Arc::new(PollBudget::new(10.0, None));
        let start = Instant::now();
        let mut flood = Vec::new();
        for _ in 0..20 {
            let budget = budget.clone();
            flood.push(tokio::spawn(async move {
                budget.acquire("a", Priority::Prompt, "flooder").await;
            }));
        }
        tokio::task::yield_now().await;
        let honest = {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget.acquire("a", Priority::Prompt, "honest").await;
                start.elapsed()
            })
        };
        // Behind at most the flooder's grant in progress and its rank-0 waiter.
        assert!(honest.await.unwrap() <= Duration::from_millis(200));
        for waiter in flood {
            waiter.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_subaccounts_queue_is_dropped() {
        let budget = Arc::new(PollBudget::new(10.0, None));
        budget.acquire("a", Priority::Prompt, "caller").await;
        assert_eq!(budget.queues.lock().unwrap().len(), 1);
        tokio::time::sleep(IDLE + Duration::from_secs(1)).await;
        assert_eq!(budget.queues.lock().unwrap().len(), 0);
        // And comes back when asked for.
        budget.acquire("a", Priority::Prompt, "caller").await;
        assert_eq!(budget.queues.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gave_up_costs_no_slot() {
        let budget = Arc::new(PollBudget::new(10.0, None));
        let start = Instant::now();
        let first = spawn_acquire(&budget, "a", Priority::Routine, start);
        let abandoned = spawn_acquire(&budget, "a", Priority::Routine, start);
        let last = spawn_acquire(&budget, "a", Priority::Routine, start);
        tokio::task::yield_now().await;
        abandoned.abort();
        assert_eq!(first.await.unwrap(), Duration::ZERO);
        assert_eq!(last.await.unwrap().as_millis(), 100);
    }
}
