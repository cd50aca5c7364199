//! The store shared by replicas: one Redis hash per request_id. The first
//! claim writes the payload's fingerprint as an in-flight marker, the answer
//! is added beside it and the key then lives for the TTL; duplicates on any
//! replica poll for the answer while the marker is there.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::{Claim, IdempotencyStore};
use crate::cluster::Cluster;

/// How often a duplicate looks for the first request's answer.
const WAIT_STEP: Duration = Duration::from_millis(25);

/// Answers `proceed`, `mismatch`, `wait` or `replay` with the answer.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local fingerprint = redis.call('HGET', KEYS[1], 'fingerprint')
        if not fingerprint then
            redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1])
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return {'proceed', false}
        end
        if fingerprint ~= ARGV[1] then return {'mismatch', false} end
        local answer = redis.call('HGET', KEYS[1], 'answer')
        if answer then return {'replay', answer} end
        return {'wait', false}
        ",
    )
});

/// Adds the answer and keeps it for the TTL; a claim that expired meanwhile
/// is not brought back.
static ANSWER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then
            redis.call('HSET', KEYS[1], 'answer', ARGV[1])
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return 0
        ",
    )
});

/// Frees a claim that got no answer, so a retry may try again.
static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('HEXISTS', KEYS[1], 'answer') == 0 then
            redis.call('DEL', KEYS[1])
        end
        return 0
        ",
    )
});

pub struct RedisStore {
    cluster: Arc<Cluster>,
    ttl: Duration,
    /// How long an unanswered claim holds its ID: longer than any start
    /// takes, short enough that a replica that died mid-call frees it.
    in_flight: Duration,
}

impl RedisStore {
    pub fn new(cluster: Arc<Cluster>, ttl: Duration, in_flight: Duration) -> Self {
        RedisStore {
            cluster,
            ttl,
            in_flight,
        }
    }

    fn key(key: &str) -> String {
        format!("verif8:idempotency:{key}")
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().clamp(1, u64::MAX as u128) as u64
}

#[tonic::async_trait]
impl IdempotencyStore for RedisStore {
    async fn claim(&self, key: &str, fingerprint: [u8; 32]) -> Claim {
        let key = Self::key(key);
        loop {
            let answer: Result<(String, Option<Vec<u8>>), _> = self
                .cluster
                .call(|mut redis| {
                    let key = key.clone();
                    async move {
                        CLAIM
                            .key(key)
                            .arg(&fingerprint[..])
                            .arg(millis(self.in_flight))
                            .invoke_async(&mut redis)
                            .await
                    }
                })
                .await;
            match answer {
                Ok((verdict, answer)) => match (verdict.as_str(), answer) {
                    ("proceed", _) => return Claim::Proceed,
                    ("mismatch", _) => return Claim::Mismatch,
                    ("replay", Some(answer)) => return Claim::Replay(answer),
                    _ => tokio::time::sleep(WAIT_STEP).await,
                },
                Err(error) => {
                    tracing::warn!(%error, "idempotency store unreachable");
                    return Claim::Unavailable;
                }
            }
        }
    }

    async fn finish(&self, key: &str, answer: Option<Vec<u8>>) {
        let key = Self::key(key);
        let done = self
            .cluster
            .call(|mut redis| async move {
                match answer {
                    Some(answer) => {
                        ANSWER
                            .key(key)
                            .arg(answer)
                            .arg(millis(self.ttl))
                            .invoke_async::<()>(&mut redis)
                            .await
                    }
                    None => FORGET.key(key).invoke_async::<()>(&mut redis).await,
                }
            })
            .await;
        if let Err(error) = done {
            // The marker expires by itself; until then a retry waits.
            tracing::warn!(%error, "could not record a start's outcome in the idempotency store");
        }
    }
}
