//! The one poller of a watched session. It reads the session (never with
//! `code`) on an adaptive, jittered schedule inside the poll budget, wakes
//! early for callback hints and at the expiry instant, and stops when the
//! session ends or its last watcher leaves. With Redis it polls only while
//! this replica holds the session's lease, and follows otherwise.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::budget::Priority;
use super::remote::{self, RENEW_EVERY, Role};
use super::state::{Entry, Observation, SessionKey, Shared, Source, WatchEnd, WatchState, apply};
use crate::telemetry::traces;
use crate::upstream::{CallPolicy, SessionStatus, UpstreamError};

pub(super) async fn run(shared: Arc<Shared>, key: SessionKey, entry: Arc<Entry>) {
    follow(&shared, &key, &entry).await;
    if entry.leased.swap(false, Ordering::AcqRel)
        && let Some(cluster) = &shared.cluster
    {
        remote::release(cluster, &key).await;
    }
}

/// Polls, or follows another replica's polls, until the session ends or
/// nobody here watches it any more.
async fn follow(shared: &Shared, key: &SessionKey, entry: &Arc<Entry>) {
    let watched_since = Instant::now();
    let mut failures = 0u32;
    let mut failing_since: Option<Instant> = None;
    let mut source = Source::Poll;
    // When the next poll is due; the first one at once.
    let mut due = Instant::now();
    loop {
        let role = match &shared.cluster {
            None => Role::Poller,
            Some(cluster) => {
                let (role, latest) = remote::role(cluster, key).await;
                entry.leased.store(role == Role::Poller, Ordering::Release);
                if let Some(latest) = latest {
                    apply(entry, latest);
                }
                role
            }
        };
        if has_ended(entry) {
            shared.retire(key, entry, true);
            return;
        }
        if !role.polls() {
            // Another replica polls: its observations arrive by message; look
            // at the lease again in a while in case it went away.
            due = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                _ = entry.state.closed() => if shared.retire(key, entry, false) { return; },
            }
            continue;
        }

        // Until the poll is due (or a hint comes), renewing the lease on the way.
        if Instant::now() < due {
            let wake = match shared.cluster {
                Some(_) => due.min(Instant::now() + RENEW_EVERY),
                None => due,
            };
            tokio::select! {
                _ = sleep_until(wake) => if wake < due { continue; },
                _ = entry.nudge.notified() => source = Source::Callback,
                _ = entry.state.closed() => {
                    if shared.retire(key, entry, false) { return; }
                    continue;
                }
            }
        }

        // Wait for the budget's grant; someone waits on all but routine polls.
        let priority = match (first_read_pending(entry), source) {
            (false, Source::Poll) => Priority::Routine,
            _ => Priority::Prompt,
        };
        let granted = shared
            .budget
            .acquire(&key.subaccount, priority, &entry.caller);
        tokio::pin!(granted);
        let mut lease_lost = false;
        while !lease_lost {
            tokio::select! {
                _ = &mut granted => break,
                // The wait may be long with many sessions watched: keep the lease.
                _ = tokio::time::sleep(RENEW_EVERY), if shared.cluster.is_some() => {
                    if let Some(cluster) = &shared.cluster {
                        lease_lost = remote::role(cluster, key).await.0 == Role::Follower;
                    }
                }
                _ = entry.state.closed() => if shared.retire(key, entry, false) { return; },
            }
        }
        if lease_lost {
            entry.leased.store(false, Ordering::Release);
            continue;
        }

        poll(
            shared,
            key,
            entry,
            source,
            &mut failures,
            &mut failing_since,
        )
        .await;
        if has_ended(entry) {
            shared.retire(key, entry, true);
            return;
        }

        // When to poll next: the schedule, the backoff, or the expiry instant.
        let delay = if failures > 0 {
            shared.config.schedule.backoff(failures)
        } else {
            let schedule = &shared.config.schedule;
            schedule.jittered(schedule.interval(watched_since.elapsed()))
        };
        due = Instant::now() + delay;
        source = Source::Poll;
        if let Some(expiry) = time_to_expiry(entry).filter(|left| *left < delay) {
            due = Instant::now() + expiry;
            source = Source::Expiry;
        }
    }
}

/// One read of the session, applied to its watchers and shared with the
/// other replicas.
async fn poll(
    shared: &Shared,
    key: &SessionKey,
    entry: &Entry,
    source: Source,
    failures: &mut u32,
    failing_since: &mut Option<Instant>,
) {
    let writes_before = entry.writes.load(Ordering::Acquire);
    crate::telemetry::metrics::poll();
    // Each poll is a trace of its own, linked to the watch that started the
    // poller: it serves every watcher, not one call.
    let span = tracing::info_span!(
        target: traces::TARGET,
        "poll",
        otel.name = "poll session",
        otel.kind = "internal",
        "verif8.session_id" = %key.session_id,
        "verif8.observation_source" = source.name(),
    );
    traces::link(&span, &entry.origin);
    // One try per poll: the poller's own backoff and budget pace retries.
    match shared
        .upstream
        .get_session(&key.subaccount, &key.session_id, CallPolicy::once(None))
        .instrument(span)
        .await
    {
        Ok(session) => {
            if session.status == SessionStatus::Verified {
                crate::telemetry::metrics::verified(&session.session_id);
            }
            *failures = 0;
            *failing_since = None;
            // A write-through during the poll is newer than this answer.
            if entry.writes.load(Ordering::Acquire) == writes_before {
                let observation = Observation::now(session, source);
                if let Some(cluster) = &shared.cluster {
                    remote::share(cluster, key, &observation).await;
                }
                apply(entry, observation);
            }
        }
        Err(error) if is_transient(&error) => {
            *failures += 1;
            let since = *failing_since.get_or_insert_with(Instant::now);
            if let Some(expired) = expire_locally(entry) {
                // Upstream unreachable at expiry: the local clock decides.
                if let Some(cluster) = &shared.cluster {
                    remote::share(cluster, key, &expired).await;
                }
            } else if first_read_pending(entry) {
                entry
                    .state
                    .send_replace(WatchState::Ended(WatchEnd::Upstream(Arc::new(error))));
            } else if since.elapsed() >= shared.config.unreachable_window {
                tracing::warn!(
                    failures = *failures,
                    "8x8 unreachable while watching; ending streams"
                );
                entry
                    .state
                    .send_replace(WatchState::Ended(WatchEnd::Unreachable));
            } else {
                tracing::debug!(failures = *failures, %error, "poll failed; backing off");
            }
        }
        Err(error) => {
            entry
                .state
                .send_replace(WatchState::Ended(WatchEnd::Upstream(Arc::new(error))));
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
fn expire_locally(entry: &Entry) -> Option<Observation> {
    let expired = match &*entry.state.borrow() {
        WatchState::Live(observation) => {
            let session = &observation.session;
            (session.status == SessionStatus::Waiting
                && session.expires_at.is_some_and(|at| at <= Utc::now()))
            .then(|| session.clone())
        }
        _ => None,
    };
    let mut session = expired?;
    session.status = SessionStatus::Expired;
    let observation = Observation::now(session, Source::Expiry);
    apply(entry, observation.clone());
    Some(observation)
}
