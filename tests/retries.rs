//! Retries only where safe, and deadlines, proven by request counts at the
//! upstream: reads retry, CheckCode and StartVerification never do, and a
//! start whose outcome is unknown says so.

mod common;

use std::time::{Duration, Instant};

use common::{pb, reason};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

fn get(session_id: &str) -> pb::GetSessionRequest {
    pb::GetSessionRequest {
        session_id: session_id.into(),
        ..Default::default()
    }
}

/// Requests the sandbox saw for `path` (with `query` or none).
async fn count(h: &common::Harness, method: &str, path_end: &str) -> usize {
    h.upstream_requests()
        .await
        .iter()
        .filter(|r| r["method"] == method && r["path"].as_str().unwrap().ends_with(path_end))
        .count()
}

#[tokio::test]
async fn get_session_retries_5xx_and_succeeds() {
    let mut h = common::start().await;
    let id = h.start_sms("+6598765432").await.session_id;
    h.inject_fault(json!({"status": 503, "code": 2000, "count": 2}))
        .await;
    let session = h.client.get_session(get(&id)).await.unwrap().into_inner();
    assert_eq!(session.session.unwrap().session_id, id);
    assert_eq!(
        count(&h, "GET", &id).await,
        3,
        "two failures, then the answer"
    );
}

#[tokio::test]
async fn get_session_gives_up_after_three_tries() {
    let mut h = common::start().await;
    let id = h.start_sms("+6598765432").await.session_id;
    h.inject_fault(json!({"status": 500, "code": 2000, "count": 5}))
        .await;
    let status = h.client.get_session(get(&id)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE");
    assert_eq!(count(&h, "GET", &id).await, 3);
}

#[tokio::test]
async fn get_session_honours_retry_after() {
    let mut h = common::start().await;
    let id = h.start_sms("+6598765432").await.session_id;
    h.inject_fault(json!({"status": 429, "code": 1100, "count": 1, "retryAfterSeconds": 1}))
        .await;
    let started = Instant::now();
    h.client
        .get_session(get(&id))
        .await
        .expect("the retry succeeds");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(count(&h, "GET", &id).await, 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_is_not_waited_for() {
    let mut h = common::start().await;
    let id = h.start_sms("+6598765432").await.session_id;
    h.inject_fault(json!({"status": 429, "code": 1100, "count": 1, "retryAfterSeconds": 30}))
        .await;
    let started = Instant::now();
    let status = h.client.get_session(get(&id)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "UPSTREAM_RATE_LIMITED");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(count(&h, "GET", &id).await, 1);
}

#[tokio::test]
async fn check_code_is_never_retried() {
    let mut h = common::start().await;
    let id = h.start_sms("+6598765432").await.session_id;
    h.inject_fault(json!({"status": 503, "code": 2000, "count": 3}))
        .await;
    let status = h.check(&id, "1234").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(count(&h, "GET", &id).await, 1, "exactly one GET with code");
}

#[tokio::test]
async fn start_verification_is_never_retried() {
    let mut h = common::start().await;
    h.inject_fault(json!({"status": 503, "code": 2000, "count": 3}))
        .await;
    let status = h
        .client
        .start_verification(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE");
    assert_eq!(count(&h, "POST", "/sessions").await, 1, "exactly one POST");
}

#[tokio::test]
async fn a_start_without_an_answer_reports_an_unknown_outcome() {
    let mut h = common::start_with(|o, _| o.upstream.timeout = Duration::from_millis(300)).await;
    h.inject_fault(json!({"status": 500, "code": 2000, "count": 1, "delayMs": 2000}))
        .await;
    let status = h
        .client
        .start_verification(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(reason(&status), "START_OUTCOME_UNKNOWN");
    assert_eq!(count(&h, "POST", "/sessions").await, 1);
}

#[tokio::test]
async fn a_connection_reset_mid_request_is_an_unknown_outcome() {
    // Reads the request, then closes the connection without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let _ = socket.shutdown().await;
        }
    });
    let (addr, _stop) = common::spawn_facade(common::facade_options(&url, "k")).await;
    let status = common::connect(addr)
        .await
        .start_verification(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "START_OUTCOME_UNKNOWN");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one POST, no retry"
    );
}

#[tokio::test]
async fn the_callers_deadline_bounds_the_upstream_call() {
    let mut h = common::start().await;
    let id = h.start_sms("+6598765432").await.session_id;
    h.inject_fault(json!({"status": 500, "code": 2000, "count": 1, "delayMs": 5000}))
        .await;
    let mut request = tonic::Request::new(get(&id));
    request.set_timeout(Duration::from_millis(400));
    let started = Instant::now();
    let status = h.client.get_session(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(reason(&status), "UPSTREAM_TIMEOUT");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "answered on time: {took:?}"
    );
}

#[tokio::test]
async fn sma_coverage_is_a_read_and_retries() {
    let mut h = common::start().await;
    h.inject_fault(json!({"status": 502, "code": 2000, "count": 2}))
        .await;
    let answer = h
        .client
        .check_sma_coverage(pb::CheckSmaCoverageRequest {
            client_ip: "203.0.113.7".into(),
            destination: "+6598765432".into(),
            ..Default::default()
        })
        .await
        .expect("the third try answers")
        .into_inner();
    assert!(answer.available);
    assert_eq!(count(&h, "POST", "/sma/coverage").await, 3);
}
