//! Upstream poll budget: at most `rate` polls per second per subaccount,
//! however many sessions are watched. A poll reserves the next free slot and
//! waits for it, so intervals stretch instead of the budget being exceeded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct PollBudget {
    spacing: Duration,
    next_free: Mutex<HashMap<String, Instant>>,
}

impl PollBudget {
    /// `rate`: polls per second per subaccount (must be > 0).
    pub fn new(rate: f64) -> Self {
        PollBudget {
            spacing: Duration::from_secs_f64(1.0 / rate.max(0.001)),
            next_free: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves a poll slot for `subaccount`: the instant the poll may go.
    /// Slots are `1/rate` apart, so any window of length T holds at most
    /// `T·rate + 1` polls.
    pub fn reserve(&self, subaccount: &str) -> Instant {
        let now = Instant::now();
        let mut next_free = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
        if next_free.len() > 10_000 {
            // Forget subaccounts whose slots are all in the past.
            next_free.retain(|_, at| *at > now);
        }
        let slot = next_free
            .get(subaccount)
            .copied()
            .filter(|at| *at > now)
            .unwrap_or(now);
        next_free.insert(subaccount.to_owned(), slot + self.spacing);
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_spaced_per_subaccount() {
        let budget = PollBudget::new(10.0);
        let start = Instant::now();
        let slots: Vec<_> = (0..5).map(|_| budget.reserve("a") - start).collect();
        let expected: Vec<_> = (0..5).map(|i| Duration::from_millis(100 * i)).collect();
        assert_eq!(slots, expected);
        // Another subaccount has its own budget.
        assert_eq!(budget.reserve("b"), start);
        // Slots in the past don't accumulate credit.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(budget.reserve("a"), Instant::now());
        assert_eq!(
            budget.reserve("a"),
            Instant::now() + Duration::from_millis(100)
        );
    }
}
