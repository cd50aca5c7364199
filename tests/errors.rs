//! The error-mapping table, row by row, over real sockets: 8x8's answers
//! (from the sandbox's real rules or injected faults) become precise gRPC
//! statuses with ErrorInfo and, where a retry can work, RetryInfo.

mod common;

use std::time::Duration;

use common::{pb, reason};
use serde_json::json;
use tonic::{Code, Status};
use tonic_types::StatusExt;

fn start_request() -> pb::StartVerificationRequest {
    pb::StartVerificationRequest {
        destination: "+6598765432".into(),
        ..Default::default()
    }
}

fn metadata(status: &Status, key: &str) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get(key).cloned())
}

fn retry_delay(status: &Status) -> Option<Duration> {
    status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
}

/// Injects one fault and returns what StartVerification answers.
async fn start_with_fault(fault: serde_json::Value) -> Status {
    let mut h = common::start().await;
    h.inject_fault(fault).await;
    h.client
        .start_verification(start_request())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn bad_api_key_is_unauthenticated() {
    let sandbox = verif8_grpc::sandbox::Sandbox::spawn(
        "127.0.0.1:0".parse().unwrap(),
        verif8_grpc::sandbox::SandboxConfig {
            api_key: "the-right-key".into(),
            public_url: None,
            latency: std::time::Duration::ZERO,
        },
    )
    .await
    .unwrap();
    let (addr, _stop) =
        common::spawn_facade(common::facade_options(&sandbox.base_url, "a-wrong-key")).await;
    let status = common::connect(addr)
        .await
        .start_verification(start_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "UPSTREAM_UNAUTHENTICATED");
    assert_eq!(metadata(&status, "upstream_code").as_deref(), Some("1200"));
    assert_eq!(metadata(&status, "http_status").as_deref(), Some("401"));
    assert!(!status.message().contains("a-wrong-key"));
}

#[tokio::test]
async fn foreign_subaccount_is_permission_denied() {
    // No subaccount configured: which ones the key owns is 8x8's to say.
    let mut h = common::start_with(|options, _| options.default_subaccount = None).await;
    let mut request = start_request();
    request.subaccount_id = "foreign_corp".into();
    let status = h.client.start_verification(request).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "SUBACCOUNT_NOT_OWNED");
    assert_eq!(metadata(&status, "upstream_code").as_deref(), Some("1001"));
}

#[tokio::test]
async fn number_8x8_rejects_is_invalid_argument() {
    let mut h = common::start().await;
    let mut request = start_request();
    // Plausible locally (a national number with a country), too short for 8x8.
    request.destination = "12345".into();
    request.country = "SG".into();
    let status = h.client.start_verification(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "INVALID_DESTINATION");
    assert_eq!(metadata(&status, "upstream_code").as_deref(), Some("1002"));
    assert_eq!(metadata(&status, "http_status").as_deref(), Some("400"));
}

#[tokio::test]
async fn upstream_rows_of_the_table() {
    // (fault, gRPC code, reason, RetryInfo delay)
    let rows = [
        (
            json!({"status": 400, "code": 1010}),
            Code::InvalidArgument,
            "UPSTREAM_REJECTED_REQUEST",
            None,
        ),
        (
            json!({"status": 403, "code": 1201}),
            Code::PermissionDenied,
            "UPSTREAM_FORBIDDEN",
            None,
        ),
        (
            json!({"status": 404, "code": 1300}),
            Code::NotFound,
            "SESSION_NOT_FOUND",
            None,
        ),
        (
            json!({"status": 410, "code": 2002}),
            Code::FailedPrecondition,
            "UPSTREAM_API_VERSION_GONE",
            None,
        ),
        (
            json!({"status": 426, "code": 1014}),
            Code::FailedPrecondition,
            "TLS_UPGRADE_REQUIRED",
            None,
        ),
        (
            json!({"status": 429, "code": 1100, "retryAfterSeconds": 7}),
            Code::ResourceExhausted,
            "UPSTREAM_RATE_LIMITED",
            Some(Duration::from_secs(7)),
        ),
        (
            json!({"status": 500, "code": 2000}),
            Code::Unavailable,
            "UPSTREAM_UNAVAILABLE",
            Some(Duration::from_secs(1)),
        ),
        (
            json!({"status": 503, "code": 2000, "retryAfterSeconds": 3}),
            Code::Unavailable,
            "UPSTREAM_UNAVAILABLE",
            Some(Duration::from_secs(3)),
        ),
        // Anything the table doesn't name.
        (
            json!({"status": 409, "code": 1999}),
            Code::Unknown,
            "UPSTREAM_ERROR",
            None,
        ),
    ];
    for (fault, code, expected_reason, delay) in rows {
        let described = fault.to_string();
        let upstream_code = fault["code"].to_string();
        let http_status = fault["status"].to_string();
        let status = start_with_fault(fault).await;
        assert_eq!(status.code(), code, "{described}");
        assert_eq!(reason(&status), expected_reason, "{described}");
        assert_eq!(retry_delay(&status), delay, "{described}");
        assert_eq!(
            metadata(&status, "upstream_code"),
            Some(upstream_code),
            "{described}"
        );
        assert_eq!(
            metadata(&status, "http_status"),
            Some(http_status),
            "{described}"
        );
    }
}

#[tokio::test]
async fn unreachable_upstream_is_unavailable() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (addr, _stop) = common::spawn_facade(common::facade_options(
        &format!("http://127.0.0.1:{port}"),
        "k",
    ))
    .await;
    let status = common::connect(addr)
        .await
        .get_session(pb::GetSessionRequest {
            session_id: "abc".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "UPSTREAM_UNREACHABLE");
    assert!(retry_delay(&status).is_some());
}

#[tokio::test]
async fn slow_upstream_is_deadline_exceeded() {
    let mut h = common::start_with(|options, _| {
        options.upstream.timeout = Duration::from_millis(300);
    })
    .await;
    h.inject_fault(json!({"status": 500, "code": 2000, "delayMs": 3000}))
        .await;
    let started = std::time::Instant::now();
    let status = h.get("abc").await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(reason(&status), "UPSTREAM_TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A stand-in upstream that answers every request with `status` and `body`.
async fn raw_upstream(status: u16, content_type: &'static str, body: &'static str) -> String {
    use axum::http::{StatusCode, header};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || async move {
        (
            StatusCode::from_u16(status).unwrap(),
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn unreadable_answers_are_internal() {
    for (status, content_type, body) in [
        (
            200,
            "application/json",
            "{\"sessionId\": \"abc\", \"status\"",
        ),
        (200, "text/html", "<html>maintenance</html>"),
        (
            200,
            "application/json",
            "{\"sessionId\":\"abc\",\"status\":\"PONDERING\"}",
        ),
    ] {
        let url = raw_upstream(status, content_type, body).await;
        let (addr, _stop) = common::spawn_facade(common::facade_options(&url, "k")).await;
        let answer = common::connect(addr)
            .await
            .get_session(pb::GetSessionRequest {
                session_id: "abc".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(answer.code(), Code::Internal, "{body}");
        assert_eq!(reason(&answer), "UPSTREAM_BAD_RESPONSE", "{body}");
        assert!(!answer.message().contains(body), "details stay in the logs");
    }
}

#[tokio::test]
async fn error_pages_without_8x8_bodies_keep_the_http_status() {
    let url = raw_upstream(502, "text/html", "<html>bad gateway</html>").await;
    let (addr, _stop) = common::spawn_facade(common::facade_options(&url, "k")).await;
    let status = common::connect(addr)
        .await
        .start_verification(start_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), "UPSTREAM_UNAVAILABLE");
    assert_eq!(metadata(&status, "http_status").as_deref(), Some("502"));
    assert_eq!(metadata(&status, "upstream_code"), None);
}

#[tokio::test]
async fn a_10_mb_answer_is_refused_not_buffered() {
    // A JSON string 10 MB long: valid JSON, absurd size.
    let huge: &'static str =
        Box::leak(format!("\"{}\"", "x".repeat(10 * 1024 * 1024)).into_boxed_str());
    let url = raw_upstream(200, "application/json", huge).await;
    let (addr, _stop) = common::spawn_facade(common::facade_options(&url, "k")).await;
    let status = common::connect(addr)
        .await
        .get_session(pb::GetSessionRequest {
            session_id: "abc".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(reason(&status), "UPSTREAM_BAD_RESPONSE");
}

#[tokio::test]
async fn the_content_type_is_not_trusted_the_body_is_read() {
    // 8x8's JSON under a wrong content type is still 8x8's JSON.
    let body = r#"{"sessionId":"abc","status":"WAITING","attempt":0,"destination":"6598765432"}"#;
    let url = raw_upstream(200, "text/plain", body).await;
    let (addr, _stop) = common::spawn_facade(common::facade_options(&url, "k")).await;
    let session = common::connect(addr)
        .await
        .get_session(pb::GetSessionRequest {
            session_id: "abc".into(),
            ..Default::default()
        })
        .await
        .expect("read despite the content type")
        .into_inner()
        .session
        .unwrap();
    assert_eq!(session.destination, "+6598765432");
    assert_eq!(session.status(), pb::SessionStatus::Waiting);
}
