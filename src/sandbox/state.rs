//! State shared by every handler: configuration plus one mutex around all mutable parts.
//!
//! One lock keeps each request's effects atomic (session change + outbox entry) and is never
//! held across an await: handlers call [`Shared::with`] with a synchronous closure.

use std::sync::Mutex;

use super::clock::Clock;
use super::faults::Faults;
use super::outbox::Outbox;
use super::requests::RequestLog;
use super::sessions::SessionStore;

#[derive(Debug, Default)]
pub struct Inner {
    pub clock: Clock,
    pub sessions: SessionStore,
    pub outbox: Outbox,
    pub requests: RequestLog,
    pub faults: Faults,
}

#[derive(Debug)]
pub struct Shared {
    pub api_key: String,
    /// Base for absolute SMA verification URLs, without a trailing slash.
    pub public_base: String,
    /// Added before every `/api/` answer.
    pub latency: std::time::Duration,
    inner: Mutex<Inner>,
}

impl Shared {
    pub fn new(api_key: String, public_base: String, latency: std::time::Duration) -> Self {
        Self {
            api_key,
            public_base,
            latency,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Runs `f` under the lock. A poisoned lock is recovered rather than propagated: every
    /// mutation leaves the state consistent, and the sandbox must never panic on input.
    pub fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}
