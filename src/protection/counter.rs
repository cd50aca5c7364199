//! Sliding-window counts of events per bucket (a destination, a client IP, a
//! caller): in memory, or in Redis so every replica counts the same events.
//! The memory is a bounded cache whose entries go after their window idles.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::Script;

use super::Rate;
use crate::cluster::Cluster;

/// What a count does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuse if any bucket is full; otherwise count the event in all.
    Take,
    /// Only look: is any bucket full?
    Peek,
    /// Count the event whatever the buckets hold.
    Add,
}

/// Buckets remembered in memory at most.
const MEMORY_BUCKETS: u64 = 1_000_000;

/// Drops events older than each window, then answers `{full, wait_ms}`:
/// the 1-based index of the first full bucket (0: none) and when its oldest
/// event leaves. ARGV: mode, event id, shadow ("1": count even when full),
/// then COUNT and WINDOW (ms) per key.
static SLIDING_LOG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
        local mode, event, shadow = ARGV[1], ARGV[2], ARGV[3] == '1'
        local full, wait = 0, 0
        for i, key in ipairs(KEYS) do
            local count, window = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
            redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
            if mode ~= 'add' and full == 0 and redis.call('ZCARD', key) >= count then
                local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
                full, wait = i, tonumber(oldest[2]) + window - now
            end
        end
        if mode == 'add' or (mode == 'take' and (full == 0 or shadow)) then
            for i, key in ipairs(KEYS) do
                redis.call('ZADD', key, now, event)
                redis.call('PEXPIRE', key, ARGV[3 + 2 * i])
            end
        end
        return {full, wait}
        ",
    )
});

type Events = Arc<Mutex<VecDeque<Instant>>>;

pub struct Counter {
    memory: moka::sync::Cache<String, Events>,
    cluster: Option<Arc<Cluster>>,
}

impl Counter {
    /// `longest` is the longest window counted: a bucket idle that long
    /// holds nothing worth keeping.
    pub fn new(longest: Duration, cluster: Option<Arc<Cluster>>) -> Self {
        Counter {
            memory: moka::sync::Cache::builder()
                .max_capacity(MEMORY_BUCKETS)
                .time_to_idle(longest.max(Duration::from_secs(1)))
                .build(),
            cluster,
        }
    }

    /// Counts per `mode`; the first full bucket's index and how long until
    /// it has room. With Redis unreachable the replica counts alone.
    pub async fn count(
        &self,
        buckets: &[(String, Rate)],
        mode: Mode,
        shadow: bool,
    ) -> Option<(usize, Duration)> {
        if buckets.is_empty() {
            return None;
        }
        if let Some(cluster) = &self.cluster {
            match self.count_in_redis(cluster, buckets, mode, shadow).await {
                Ok(full) => return full,
                Err(error) => tracing::warn!(%error, "limits counted on this replica alone"),
            }
        }
        self.count_in_memory(buckets, mode, shadow)
    }

    async fn count_in_redis(
        &self,
        cluster: &Cluster,
        buckets: &[(String, Rate)],
        mode: Mode,
        shadow: bool,
    ) -> Result<Option<(usize, Duration)>, crate::cluster::ClusterError> {
        let mode = match mode {
            Mode::Take => "take",
            Mode::Peek => "peek",
            Mode::Add => "add",
        };
        let (full, wait_ms): (usize, u64) = cluster
            .call(|mut redis| async move {
                let mut invocation = SLIDING_LOG.prepare_invoke();
                invocation
                    .arg(mode)
                    .arg(uuid::Uuid::new_v4().simple().to_string())
                    .arg(if shadow { "1" } else { "0" });
                for (bucket, rate) in buckets {
                    invocation
                        .key(format!("verif8:limit:{bucket}"))
                        .arg(rate.count)
                        .arg(rate.window.as_millis() as u64);
                }
                invocation.invoke_async(&mut redis).await
            })
            .await?;
        Ok((full > 0).then(|| (full - 1, Duration::from_millis(wait_ms))))
    }

    fn count_in_memory(
        &self,
        buckets: &[(String, Rate)],
        mode: Mode,
        shadow: bool,
    ) -> Option<(usize, Duration)> {
        let now = Instant::now();
        let logs: Vec<Events> = buckets
            .iter()
            .map(|(bucket, _)| self.memory.get_with(bucket.clone(), Events::default))
            .collect();
        let mut locked: Vec<_> = logs
            .iter()
            .map(|log| log.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let mut full = None;
        for (i, ((_, rate), events)) in buckets.iter().zip(locked.iter_mut()).enumerate() {
            while events
                .front()
                .is_some_and(|at| now.duration_since(*at) >= rate.window)
            {
                events.pop_front();
            }
            if mode != Mode::Add && full.is_none() && events.len() >= rate.count as usize {
                let oldest = events.front().copied().unwrap_or(now);
                full = Some((i, (oldest + rate.window).saturating_duration_since(now)));
            }
        }
        let record = match mode {
            Mode::Add => true,
            Mode::Take => full.is_none() || shadow,
            Mode::Peek => false,
        };
        if record {
            for ((_, rate), events) in buckets.iter().zip(locked.iter_mut()) {
                events.push_back(now);
                // A shadow count may overfill; keep no more than the rate needs.
                while events.len() > rate.count as usize {
                    events.pop_front();
                }
            }
        }
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u32, secs: u64) -> Rate {
        Rate {
            count,
            window: Duration::from_secs(secs),
        }
    }

    #[tokio::test]
    async fn take_refuses_once_a_bucket_is_full_and_counts_nothing_then() {
        let counter = Counter::new(Duration::from_secs(60), None);
        let buckets = [
            ("a".to_string(), rate(2, 60)),
            ("b".to_string(), rate(5, 60)),
        ];
        assert_eq!(counter.count(&buckets, Mode::Take, false).await, None);
        assert_eq!(counter.count(&buckets, Mode::Take, false).await, None);
        let (full, wait) = counter.count(&buckets, Mode::Take, false).await.unwrap();
        assert_eq!(full, 0);
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60));
        // b holds two events, not three: the refused one wasn't counted.
        let b_of = |count| [("b".to_string(), rate(count, 60))];
        assert_eq!(counter.count(&b_of(3), Mode::Peek, false).await, None);
        assert!(counter.count(&b_of(2), Mode::Peek, false).await.is_some());
    }

    #[tokio::test]
    async fn shadow_counts_but_the_caller_decides() {
        let counter = Counter::new(Duration::from_secs(60), None);
        let buckets = [("a".to_string(), rate(1, 60))];
        assert_eq!(counter.count(&buckets, Mode::Take, true).await, None);
        assert!(counter.count(&buckets, Mode::Take, true).await.is_some());
        assert!(counter.count(&buckets, Mode::Peek, false).await.is_some());
    }
}
