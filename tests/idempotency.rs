//! Idempotent StartVerification (AIP-155) over real sockets, counted at the upstream.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{pb, reason, violated_fields};
use serde_json::json;
use tonic::Code;

const REQUEST_ID: &str = "3f2c1a9e-8d4b-4c5e-9f1a-2b3c4d5e6f70";

fn start(destination: &str) -> pb::StartVerificationRequest {
    pb::StartVerificationRequest {
        destination: destination.into(),
        request_id: REQUEST_ID.into(),
        ..Default::default()
    }
}

async fn posts(h: &common::Harness) -> usize {
    h.upstream_requests()
        .await
        .iter()
        .filter(|r| r["method"] == "POST")
        .count()
}

#[tokio::test]
async fn a_repeated_request_id_gets_the_first_answer_without_a_second_post() {
    let mut h = common::start().await;
    let first = h
        .client
        .start_verification(start("+6598765432"))
        .await
        .unwrap();
    let again = h
        .client
        .start_verification(start("+6598765432"))
        .await
        .unwrap();
    assert_eq!(first.into_inner(), again.into_inner());
    assert_eq!(posts(&h).await, 1);
}

#[tokio::test]
async fn another_payload_under_the_same_id_is_refused() {
    let mut h = common::start().await;
    h.client
        .start_verification(start("+6598765432"))
        .await
        .unwrap();
    let status = h
        .client
        .start_verification(start("+6598765433"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "REQUEST_ID_REUSED");
    assert_eq!(violated_fields(&status), vec!["request_id"]);
    assert_eq!(posts(&h).await, 1);
}

#[tokio::test]
async fn a_failed_first_call_does_not_hold_its_id() {
    let mut h = common::start().await;
    h.inject_fault(json!({"status": 503, "code": 2000, "count": 1}))
        .await;
    let failed = h
        .client
        .start_verification(start("+6598765432"))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable);
    h.client
        .start_verification(start("+6598765432"))
        .await
        .expect("the retry goes through");
    assert_eq!(posts(&h).await, 2);
}

#[tokio::test]
async fn a_request_id_must_be_a_uuid() {
    let mut h = common::start().await;
    let mut request = start("+6598765432");
    request.request_id = "retry-1".into();
    let status = h.client.start_verification(request).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["request_id"]);
    assert_eq!(posts(&h).await, 0);
}

#[tokio::test]
async fn duplicates_in_flight_wait_for_the_first_answer() {
    // An upstream that takes 500 ms per start and counts POSTs.
    let posted = Arc::new(AtomicUsize::new(0));
    let counter = posted.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(500)).await;
            axum::Json(json!({
                "sessionId": format!("session{n}"),
                "verifyUri": "/v",
                "destination": "+6598765432",
                "status": "WAITING",
                "attempt": 0,
                "expiresAt": "2030-01-01T00:05:00Z",
                "retryAfter": "2030-01-01T00:00:10Z"
            }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (addr, _stop) = common::spawn_facade(common::facade_options(&url, "k")).await;
    let client = common::connect(addr).await;

    let calls: Vec<_> = (0..5)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.start_verification(start("+6598765432")).await })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        let answer = call
            .await
            .unwrap()
            .expect("every duplicate gets the answer");
        ids.push(answer.into_inner().session.unwrap().session_id);
    }
    assert_eq!(ids, vec!["session0"; 5]);
    assert_eq!(posted.load(Ordering::SeqCst), 1, "one POST for five calls");
}
