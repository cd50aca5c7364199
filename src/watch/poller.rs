//! The one poller of a watched session. It reads the session (never with
//! `code`) on an adaptive, jittered schedule inside the poll budget, wakes
//! early for callback hints and at the expiry instant, and stops when the
//! session ends or its last watcher leaves.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::{Instant, sleep_until};

use super::budget::Priority;
use super::state::{Entry, Observation, SessionKey, Shared, Source, WatchEnd, WatchState, apply};
use crate::upstream::{CallPolicy, SessionStatus, UpstreamError};

pub(super) async fn run(shared: Arc<Shared>, key: SessionKey, entry: Arc<Entry>) {
    let watched_since = Instant::now();
    let mut failures = 0u32;
    let mut failing_since: Option<Instant> = None;
    let mut source = Source::Poll;
    loop {
        // Wait for the budget's grant; someone waits on all but routine polls.
        let priority = match (first_read_pending(&entry), source) {
            (false, Source::Poll) => Priority::Routine,
            _ => Priority::Prompt,
        };
        tokio::select! {
            _ = shared.budget.acquire(&key.subaccount, priority) => {}
            _ = entry.state.closed() => {
                if shared.retire(&key, &entry, false) { return; }
                continue;
            }
        }

        let writes_before = entry.writes.load(std::sync::atomic::Ordering::Acquire);
        crate::telemetry::metrics::poll();
        // One try per poll: the poller's own backoff and budget pace retries.
        match shared
            .upstream
            .get_session(&key.subaccount, &key.session_id, CallPolicy::once(None))
            .await
        {
            Ok(session) => {
                if session.status == SessionStatus::Verified {
                    crate::telemetry::metrics::verified(&session.session_id);
                }
                failures = 0;
                failing_since = None;
                // A write-through during the poll is newer than this answer.
                if entry.writes.load(std::sync::atomic::Ordering::Acquire) == writes_before {
                    apply(&entry, Observation::now(session, source));
                }
            }
            Err(error) if is_transient(&error) => {
                failures += 1;
                let since = *failing_since.get_or_insert_with(Instant::now);
                if expire_locally(&entry) {
                    // Upstream unreachable at expiry: the local clock decides.
                } else if first_read_pending(&entry) {
                    entry
                        .state
                        .send_replace(WatchState::Ended(WatchEnd::Upstream(Arc::new(error))));
                } else if since.elapsed() >= shared.config.unreachable_window {
                    tracing::warn!(failures, "8x8 unreachable while watching; ending streams");
                    entry
                        .state
                        .send_replace(WatchState::Ended(WatchEnd::Unreachable));
                } else {
                    tracing::debug!(failures, %error, "poll failed; backing off");
                }
            }
            Err(error) => {
                entry
                    .state
                    .send_replace(WatchState::Ended(WatchEnd::Upstream(Arc::new(error))));
            }
        }
        if has_ended(&entry) {
            shared.retire(&key, &entry, true);
            return;
        }

        // Sleep until the next poll, a callback hint, the expiry instant, or
        // the last watcher leaving.
        let delay = if failures > 0 {
            shared.config.schedule.backoff(failures)
        } else {
            let schedule = &shared.config.schedule;
            schedule.jittered(schedule.interval(watched_since.elapsed()))
        };
        let mut wake = Instant::now() + delay;
        source = Source::Poll;
        if let Some(expiry) = time_to_expiry(&entry).filter(|left| *left < delay) {
            wake = Instant::now() + expiry;
            source = Source::Expiry;
        }
        tokio::select! {
            _ = sleep_until(wake) => {}
            _ = entry.nudge.notified() => source = Source::Callback,
            _ = entry.state.closed() => {
                if shared.retire(&key, &entry, false) { return; }
            }
        }
    }
}

/// Connect errors, lost connections, timeouts, 429 and 5xx may pass; a 4xx
/// answer (unknown session, bad key) will not.
fn is_transient(error: &UpstreamError) -> bool {
    match error {
        UpstreamError::Api(api) => api.http_status == 429 || api.http_status >= 500,
        UpstreamError::Connect(_) | UpstreamError::Transport(_) | UpstreamError::Timeout => true,
        UpstreamError::Malformed(_) | UpstreamError::NoApiKey(_) => false,
    }
}

fn first_read_pending(entry: &Entry) -> bool {
    matches!(*entry.state.borrow(), WatchState::Pending)
}

fn has_ended(entry: &Entry) -> bool {
    match &*entry.state.borrow() {
        WatchState::Pending => false,
        WatchState::Live(observation) => observation.session.status.is_final(),
        WatchState::Ended(_) => true,
    }
}

/// How long until a WAITING session's expires_at, if it is still ahead.
fn time_to_expiry(entry: &Entry) -> Option<Duration> {
    match &*entry.state.borrow() {
        WatchState::Live(observation) if observation.session.status == SessionStatus::Waiting => {
            (observation.session.expires_at? - Utc::now()).to_std().ok()
        }
        _ => None,
    }
}

/// Marks a WAITING session whose expires_at has passed as EXPIRED.
fn expire_locally(entry: &Entry) -> bool {
    let expired = match &*entry.state.borrow() {
        WatchState::Live(observation) => {
            let session = &observation.session;
            (session.status == SessionStatus::Waiting
                && session.expires_at.is_some_and(|at| at <= Utc::now()))
            .then(|| session.clone())
        }
        _ => None,
    };
    match expired {
        Some(mut session) => {
            session.status = SessionStatus::Expired;
            apply(entry, Observation::now(session, Source::Expiry));
            true
        }
        None => false,
    }
}
