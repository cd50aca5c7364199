//! WatchSession against a scripted upstream: expiry (confirmed by a poll,
//! or from the local clock when 8x8 can't be reached), an upstream that
//! stays down, and the cap on open streams.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use common::{fixed_polling, pb, reason};
use tokio_stream::StreamExt;
use tonic::Code;

/// How the scripted upstream behaves after the session's expiry.
#[derive(Clone, Copy)]
enum AfterExpiry {
    /// Answers EXPIRED, as 8x8 does.
    ReportsExpired,
    /// Answers 503 to everything once the session expired.
    GoesDown,
}

/// Serves one WAITING session expiring at `expires_at`; every GET counts.
async fn scripted_upstream(
    expires_at: DateTime<Utc>,
    after: AfterExpiry,
    healthy_answers: Option<usize>,
) -> (String, Arc<AtomicUsize>) {
    let gets = Arc::new(AtomicUsize::new(0));
    let counter = gets.clone();
    let app = axum::Router::new().fallback(move || {
        let gets = counter.clone();
        async move {
            let served = gets.fetch_add(1, Ordering::SeqCst);
            let expired = Utc::now() >= expires_at;
            let down = healthy_answers.is_some_and(|healthy| served >= healthy);
            if down || (expired && matches!(after, AfterExpiry::GoesDown)) {
                let body = r#"{"code":2000,"message":"Internal server error","errorId":"e","timestamp":"2025-12-18T09:42:38Z"}"#;
                return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
            }
            let body = serde_json::json!({
                "sessionId": "a44a91be5ea5ea118169020897df5459",
                "verifyUri": "/api/v2/subaccounts/acme_verif8/sessions/a44a91be5ea5ea118169020897df5459",
                "destination": "+6598765432",
                "status": if expired { "EXPIRED" } else { "WAITING" },
                "attempt": 0,
                "expiresAt": expires_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                "retryAfter": expires_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            });
            axum::Json(body).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, gets)
}

async fn watch_scripted(
    url: &str,
    adjust: impl FnOnce(&mut verif8_grpc::server::ServerOptions),
) -> (
    tonic::Streaming<pb::WatchSessionResponse>,
    tokio::sync::oneshot::Sender<()>,
) {
    let mut options = common::facade_options(url, "k");
    adjust(&mut options);
    let (addr, stop) = common::spawn_facade(options).await;
    let stream = common::connect(addr)
        .await
        .watch_session(pb::WatchSessionRequest {
            session_id: "a44a91be5ea5ea118169020897df5459".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (stream, stop)
}

async fn expires_with(after: AfterExpiry) -> (pb::WatchSessionResponse, Duration, usize) {
    let expires_at = Utc::now() + chrono::Duration::milliseconds(1500);
    let (url, gets) = scripted_upstream(expires_at, after, None).await;
    let (mut stream, _stop) =
        watch_scripted(&url, |o| o.watch = fixed_polling(Duration::from_secs(600))).await;
    let snapshot = stream.next().await.unwrap().unwrap();
    assert_eq!(
        snapshot.session.unwrap().status(),
        pb::SessionStatus::Waiting
    );
    let event = stream.next().await.unwrap().unwrap();
    let late_by = (Utc::now() - expires_at).to_std().unwrap_or_default();
    assert!(stream.next().await.is_none(), "EXPIRED ends the stream OK");
    (event, late_by, gets.load(Ordering::SeqCst))
}

#[tokio::test]
async fn expiry_is_confirmed_by_one_poll() {
    let (event, late_by, gets) = expires_with(AfterExpiry::ReportsExpired).await;
    assert_eq!(event.kind(), pb::WatchEventKind::Changed);
    assert_eq!(
        event.session.as_ref().unwrap().status(),
        pb::SessionStatus::Expired
    );
    assert_eq!(event.previous_status(), pb::SessionStatus::Waiting);
    assert_eq!(event.source(), pb::ObservationSource::Expiry);
    assert!(late_by < Duration::from_millis(500), "{late_by:?}");
    assert_eq!(gets, 2, "the snapshot read and one confirming poll");
}

#[tokio::test]
async fn expiry_falls_back_to_the_local_clock_when_8x8_is_down() {
    let (event, late_by, gets) = expires_with(AfterExpiry::GoesDown).await;
    assert_eq!(
        event.session.as_ref().unwrap().status(),
        pb::SessionStatus::Expired
    );
    assert_eq!(event.source(), pb::ObservationSource::Expiry);
    assert!(late_by < Duration::from_millis(500), "{late_by:?}");
    assert_eq!(gets, 2);
}

#[tokio::test]
async fn an_upstream_down_past_the_window_ends_the_stream_unavailable() {
    let expires_at = Utc::now() + chrono::Duration::seconds(300);
    let (url, _gets) = scripted_upstream(expires_at, AfterExpiry::ReportsExpired, Some(1)).await;
    let (mut stream, _stop) = watch_scripted(&url, |o| {
        o.watch = fixed_polling(Duration::from_millis(100));
        o.watch.unreachable_window = Duration::from_secs(1);
    })
    .await;
    let started = Instant::now();
    assert_eq!(
        stream.next().await.unwrap().unwrap().kind(),
        pb::WatchEventKind::Snapshot
    );
    let status = stream.next().await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "UPSTREAM_UNREACHABLE");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_secs(1) && after < Duration::from_secs(3),
        "{after:?}"
    );
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn streams_beyond_the_cap_are_refused_until_one_closes() {
    let mut h = common::start_with(|o, _| o.watch.max_streams = 2).await;
    let id = h.start_sms("+6598765432").await.session_id;
    let request = || pb::WatchSessionRequest {
        session_id: id.clone(),
        ..Default::default()
    };
    let first = h.client.watch_session(request()).await.unwrap();
    let _second = h.client.watch_session(request()).await.unwrap();
    let refused = h.client.watch_session(request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "TOO_MANY_WATCH_STREAMS");
    drop(first);
    // The slot is released as soon as the server notices the cancellation.
    let mut admitted = false;
    for _ in 0..50 {
        if h.client.watch_session(request()).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a cancelled stream frees its slot");
}
