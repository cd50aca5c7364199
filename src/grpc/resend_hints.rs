//! Remembers each destination's `retryAfter` from 8x8's answers, so a
//! re-send refused as too soon (403/1400, whose body says nothing about
//! when) can tell the caller exactly how long to wait.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Enough for every destination started within a resending interval on a
/// busy replica; past it the cache evicts the least used.
const CAPACITY: u64 = 50_000;
/// 8x8's longest resending interval: no hint is worth more.
const LONGEST_INTERVAL: Duration = Duration::from_secs(7200);

pub struct ResendHints {
    retry_after: moka::sync::Cache<(String, String), DateTime<Utc>>,
}

impl Default for ResendHints {
    fn default() -> Self {
        ResendHints {
            retry_after: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(LONGEST_INTERVAL)
                .build(),
        }
    }
}

impl ResendHints {
    pub fn remember(&self, subaccount: &str, destination: &str, retry_after: DateTime<Utc>) {
        self.retry_after
            .insert((subaccount.to_owned(), destination.to_owned()), retry_after);
    }

    /// Time left until a re-send is allowed, if known and still ahead.
    pub fn wait_for(&self, subaccount: &str, destination: &str) -> Option<Duration> {
        let at = self
            .retry_after
            .get(&(subaccount.to_owned(), destination.to_owned()))?;
        (at - Utc::now()).to_std().ok()
    }
}
