//! One WatchSession stream: the snapshot, then a message per change seen on
//! the session's shared state, heartbeats when asked, and the end. It is a
//! plain state machine polled by tonic: no task and no buffer per watcher.

use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tonic::{Code, Status};

use super::watch_quota::QuotaSlot;
use super::{convert, status};
use crate::pb::v1 as pb;
use crate::telemetry::{metrics, traces};
use crate::watch::{Observation, Source, WatchEnd, WatchState};

/// Waits for the session's first state: the snapshot, or the error that ends
/// the call before any message (NOT_FOUND for an unknown session).
pub async fn first_observation(
    state: &mut watch::Receiver<WatchState>,
) -> Result<std::sync::Arc<Observation>, Status> {
    loop {
        match &*state.borrow_and_update() {
            WatchState::Pending => {}
            WatchState::Live(observation) => return Ok(observation.clone()),
            WatchState::Ended(end) => return Err(end_status(end)),
        }
        if state.changed().await.is_err() {
            return Err(end_status(&WatchEnd::ShuttingDown));
        }
    }
}

struct Watcher {
    state: watch::Receiver<WatchState>,
    subaccount: String,
    heartbeat: Option<Duration>,
    /// What this watcher was last told; None until the snapshot went out.
    last_sent: Option<std::sync::Arc<Observation>>,
    done: bool,
    /// For the line logged when the stream ends.
    opened: std::time::Instant,
    messages_sent: u64,
    /// How the stream ended; None while open, and when the client left.
    ended: Option<&'static str>,
    /// The call's server span: each message pushed is an event on it.
    span: tracing::Span,
    /// The replica's stream slot and the caller's quota place.
    _slots: (OwnedSemaphorePermit, Option<QuotaSlot>),
    _counted: metrics::WatchStreamGuard,
}

pub fn stream(
    state: watch::Receiver<WatchState>,
    snapshot: std::sync::Arc<Observation>,
    subaccount: String,
    heartbeat: Option<Duration>,
    slots: (OwnedSemaphorePermit, Option<QuotaSlot>),
) -> impl Stream<Item = Result<pb::WatchSessionResponse, Status>> + Send + 'static {
    let watcher = Watcher {
        state,
        subaccount,
        heartbeat,
        last_sent: None,
        done: false,
        opened: std::time::Instant::now(),
        messages_sent: 0,
        ended: None,
        span: tracing::Span::current(),
        _slots: slots,
        _counted: metrics::WatchStreamGuard::open(),
    };
    let first = Some(snapshot);
    futures_util::stream::unfold((watcher, first), |(mut watcher, first)| async move {
        let item = match first {
            Some(snapshot) => Some(Ok(watcher.emit(snapshot, pb::WatchEventKind::Snapshot))),
            None => watcher.next().await,
        };
        item.map(|item| (item, (watcher, None)))
    })
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<pb::WatchSessionResponse, Status>> {
        if self.done {
            return None;
        }
        loop {
            let changed = match self.heartbeat {
                Some(every) => match tokio::time::timeout(every, self.state.changed()).await {
                    Ok(changed) => changed,
                    Err(_) => return Some(Ok(self.heartbeat_message())),
                },
                None => self.state.changed().await,
            };
            // A dropped sender with no final state seen: the poller is gone.
            let state = self.state.borrow_and_update().clone();
            match state {
                WatchState::Pending => {}
                WatchState::Live(observation) => {
                    let news = self
                        .last_sent
                        .as_ref()
                        .is_none_or(|last| last.fingerprint() != observation.fingerprint());
                    if news {
                        return Some(Ok(self.emit(observation, pb::WatchEventKind::Changed)));
                    }
                }
                WatchState::Ended(end) => return Some(Err(self.end(&end))),
            }
            if changed.is_err() {
                return Some(Err(self.end(&WatchEnd::ShuttingDown)));
            }
        }
    }

    fn emit(
        &mut self,
        observation: std::sync::Arc<Observation>,
        kind: pb::WatchEventKind,
    ) -> pb::WatchSessionResponse {
        let previous = self
            .last_sent
            .as_ref()
            .map_or(pb::SessionStatus::Unspecified, |last| {
                convert::status(last.session.status)
            });
        if observation.session.status.is_final() {
            self.done = true;
            self.ended = Some("final_status");
        }
        self.messages_sent += 1;
        tracing::info!(
            target: traces::TARGET,
            parent: &self.span,
            {
                verif8.watch.kind = kind.as_str_name(),
                verif8.session.status = convert::status(observation.session.status).as_str_name(),
                verif8.session.previous_status = previous.as_str_name(),
                verif8.observation_source = observation.source.name(),
            },
            "session change pushed"
        );
        let message = response(&self.subaccount, &observation, kind, previous);
        self.last_sent = Some(observation);
        message
    }

    fn heartbeat_message(&mut self) -> pb::WatchSessionResponse {
        self.messages_sent += 1;
        let last = self.last_sent.as_ref().expect("the snapshot goes first");
        let status = convert::status(last.session.status);
        let mut message = response(
            &self.subaccount,
            last,
            pb::WatchEventKind::Heartbeat,
            status,
        );
        message.observed_at = Some(convert::timestamp(chrono::Utc::now()));
        message
    }

    /// The status that ends the stream, noted for the closing log line.
    fn end(&mut self, end: &WatchEnd) -> Status {
        self.done = true;
        let status = end_status(end);
        self.ended = Some(metrics::code_name(status.code()));
        status
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        tracing::info!(
            method = "WatchSession",
            ended = self.ended.unwrap_or("client_left"),
            duration_ms = self.opened.elapsed().as_millis() as u64,
            messages_sent = self.messages_sent,
            "watch stream ended"
        );
    }
}

fn response(
    subaccount: &str,
    observation: &Observation,
    kind: pb::WatchEventKind,
    previous: pb::SessionStatus,
) -> pb::WatchSessionResponse {
    pb::WatchSessionResponse {
        session: Some(convert::session(subaccount, &observation.session)),
        kind: kind as i32,
        previous_status: previous as i32,
        source: source(observation.source) as i32,
        observed_at: Some(convert::timestamp(observation.observed_at)),
    }
}

fn source(source: Source) -> pb::ObservationSource {
    match source {
        Source::Poll => pb::ObservationSource::Poll,
        Source::Start => pb::ObservationSource::Start,
        Source::CheckCode => pb::ObservationSource::CheckCode,
        Source::Callback => pb::ObservationSource::Callback,
        Source::Expiry => pb::ObservationSource::Expiry,
    }
}

fn end_status(end: &WatchEnd) -> Status {
    match end {
        WatchEnd::Upstream(error) => status::from_upstream(error, None),
        WatchEnd::Unreachable => status::error(
            Code::Unavailable,
            "UPSTREAM_UNREACHABLE",
            "8x8 stayed unreachable while watching; reconnect to resume",
            Default::default(),
            Some(Duration::from_secs(1)),
        ),
        WatchEnd::ShuttingDown => status::error(
            Code::Unavailable,
            "SHUTTING_DOWN",
            "this replica is shutting down; reconnect to resume watching",
            Default::default(),
            Some(Duration::ZERO),
        ),
    }
}
