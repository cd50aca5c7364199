//! When to poll next: fast while a session is young (the user is typing the
//! code), slower as it ages, jittered so sessions started together don't
//! poll in lockstep, and backing off while the upstream fails.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct PollSchedule {
    /// Interval while the session is young.
    pub min_interval: Duration,
    /// Interval the schedule grows to.
    pub max_interval: Duration,
    /// ± fraction of randomness, e.g. 0.2.
    pub jitter: f64,
}

impl Default for PollSchedule {
    fn default() -> Self {
        PollSchedule {
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

impl PollSchedule {
    /// Interval after the session has been watched for `age`: the minimum for
    /// the first 10 s, then a tenth of the age, up to the maximum.
    pub fn interval(&self, age: Duration) -> Duration {
        (age / 10).clamp(self.min_interval, self.max_interval.max(self.min_interval))
    }

    /// Delay after `failures` consecutive failed polls: doubling from the
    /// minimum, capped at the maximum.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .min_interval
            .saturating_mul(1u32 << failures.min(16).saturating_sub(1));
        doubled.min(self.max_interval.max(self.min_interval))
    }

    pub fn jittered(&self, interval: Duration) -> Duration {
        if self.jitter <= 0.0 {
            return interval;
        }
        let factor = rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter);
        interval.mul_f64(factor.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_age_between_bounds() {
        let schedule = PollSchedule::default();
        assert_eq!(schedule.interval(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            schedule.interval(Duration::from_secs(30)),
            Duration::from_secs(3)
        );
        assert_eq!(
            schedule.interval(Duration::from_secs(3600)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let schedule = PollSchedule::default();
        let delays: Vec<u64> = (1..=6).map(|f| schedule.backoff(f).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let schedule = PollSchedule::default();
        for _ in 0..1000 {
            let delay = schedule.jittered(Duration::from_secs(10));
            assert!(delay >= Duration::from_secs(8) && delay <= Duration::from_secs(12));
        }
    }
}
