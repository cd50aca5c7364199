//! The Lua scripts: each runs atomically inside Redis, on Redis's clock.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{CHANNEL, Cluster, ClusterError};
use crate::telemetry::metrics;

/// Take the lease if nobody holds it, renew it if we do; otherwise answer
/// with the latest value stored beside it (what the holder last saw).
static HOLD_OR_FOLLOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local holder = redis.call('GET', KEYS[1])
        if not holder then
            redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
            return {1, 1, false}
        end
        if holder == ARGV[1] then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return {1, 0, false}
        end
        return {0, 0, redis.call('GET', KEYS[2])}
        ",
    )
});

/// Delete the lease only if we still hold it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('DEL', KEYS[1])
        end
        return 0
        ",
    )
});

/// While someone holds the lease KEYS[1], store ARGV[1] under KEYS[2] for
/// ARGV[2] ms and publish ARGV[4] on channel ARGV[3]; with no lease nobody
/// watches, and nothing is stored or sent.
static SHARE_WHILE_LEASED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
        redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
        redis.call('PUBLISH', ARGV[3], ARGV[4])
        return 1
        ",
    )
});

/// GCRA with no burst: grants when the theoretical arrival time has come and
/// moves it one `spacing` on; otherwise answers how many µs to wait.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
        local spacing = tonumber(ARGV[1])
        local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
        if tat > now then return tat - now end
        -- %.0f: tostring would print a 16-digit µs count in exponent form.
        redis.call('SET', KEYS[1], string.format('%.0f', now + spacing),
            'PX', string.format('%.0f', math.ceil(spacing / 1000) + 1000))
        return 0
        ",
    )
});

/// What [`Cluster::hold_or_follow`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lease {
    /// This replica holds it; `fresh` when it was just taken.
    Held { fresh: bool },
    /// Another replica holds it; here is what it last stored, if anything.
    Follower(Option<Vec<u8>>),
}

impl Cluster {
    /// Takes or renews the lease `key` for `ttl`, or reads `latest_key` when
    /// another replica holds it.
    pub async fn hold_or_follow(
        &self,
        key: &str,
        latest_key: &str,
        ttl: Duration,
    ) -> Result<Lease, ClusterError> {
        let (held, fresh, latest): (bool, bool, Option<Vec<u8>>) = self
            .call(|mut redis| async move {
                HOLD_OR_FOLLOW
                    .key(key)
                    .key(latest_key)
                    .arg(self.replica())
                    .arg(ttl.as_millis() as u64)
                    .invoke_async(&mut redis)
                    .await
            })
            .await?;
        Ok(if held {
            Lease::Held { fresh }
        } else {
            Lease::Follower(latest)
        })
    }

    /// Stores `value` under `latest_key` for `ttl` and publishes `payload`
    /// to every replica, in one step, if the lease `key` is held (someone
    /// watches); a replica that missed the message reads the key. True when
    /// shared.
    pub async fn share_while_leased(
        &self,
        key: &str,
        latest_key: &str,
        value: Vec<u8>,
        ttl: Duration,
        payload: Vec<u8>,
    ) -> Result<bool, ClusterError> {
        let shared: u32 = self
            .call(|mut redis| async move {
                SHARE_WHILE_LEASED
                    .key(key)
                    .key(latest_key)
                    .arg(value)
                    .arg(ttl.as_millis() as u64)
                    .arg(CHANNEL)
                    .arg(payload)
                    .invoke_async(&mut redis)
                    .await
            })
            .await?;
        if shared == 1 {
            metrics::cluster_message("sent");
        }
        Ok(shared == 1)
    }

    /// Gives up the lease `key` if this replica holds it.
    pub async fn release(&self, key: &str) -> Result<bool, ClusterError> {
        let deleted: u32 = self
            .call(|mut redis| async move {
                RELEASE
                    .key(key)
                    .arg(self.replica())
                    .invoke_async(&mut redis)
                    .await
            })
            .await?;
        Ok(deleted == 1)
    }

    /// One grant of the rate `1/spacing` kept under `key`: `Duration::ZERO`
    /// when granted, else how long until the next one is due.
    pub async fn take_slot(&self, key: &str, spacing: Duration) -> Result<Duration, ClusterError> {
        let wait_us: u64 = self
            .call(|mut redis| async move {
                GCRA.key(key)
                    .arg(spacing.as_micros().max(1) as u64)
                    .invoke_async(&mut redis)
                    .await
            })
            .await?;
        Ok(Duration::from_micros(wait_us))
    }
}
