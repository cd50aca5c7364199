//! Remembers each destination's `retryAfter` from 8x8's answers, so a
//! re-send refused as too soon (403/1400, whose body says nothing about
//! when) can tell the caller exactly how long to wait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Enough for every destination started within a resending interval on a
/// busy replica; past it, expired entries are dropped first.
const CAPACITY: usize = 50_000;

#[derive(Default)]
pub struct ResendHints {
    retry_after: Mutex<HashMap<(String, String), DateTime<Utc>>>,
}

impl ResendHints {
    pub fn remember(&self, subaccount: &str, destination: &str, retry_after: DateTime<Utc>) {
        let mut map = self.retry_after.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            let now = Utc::now();
            map.retain(|_, at| *at > now);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert((subaccount.to_owned(), destination.to_owned()), retry_after);
    }

    /// Time left until a re-send is allowed, if known and still ahead.
    pub fn wait_for(&self, subaccount: &str, destination: &str) -> Option<Duration> {
        let map = self.retry_after.lock().unwrap_or_else(|e| e.into_inner());
        let at = map.get(&(subaccount.to_owned(), destination.to_owned()))?;
        (*at - Utc::now()).to_std().ok()
    }
}
