//! GetSession and CheckCode over real sockets against the sandbox.

mod common;

use common::{pb, reason};
use tonic::Code;

#[tokio::test]
async fn get_session_reads_without_code_and_check_code_sends_it() {
    let mut h = common::start().await;
    let session = h.start_sms("+6598765432").await;
    assert_eq!(session.status, pb::SessionStatus::Waiting as i32);
    assert_eq!(session.destination, "+6598765432");
    assert_eq!(session.subaccount_id, common::SUBACCOUNT);
    let id = session.session_id.clone();

    let read = h.get(&id).await.unwrap();
    assert_eq!(read.status, pb::SessionStatus::Waiting as i32);

    let code = h.code_of(&id).await;
    let checked = h.check(&id, &code).await.unwrap();
    assert_eq!(checked.status, pb::SessionStatus::Verified as i32);

    let requests = h.upstream_requests().await;
    let summary: Vec<(String, String, Option<String>)> = requests
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                r["query"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let session_path = format!("/api/v2/subaccounts/acme_verif8/sessions/{id}");
    assert_eq!(
        summary,
        vec![
            (
                "POST".into(),
                "/api/v2/subaccounts/acme_verif8/sessions".into(),
                None
            ),
            ("GET".into(), session_path.clone(), None),
            ("GET".into(), session_path, Some(format!("code={code}"))),
        ]
    );
    for request in &requests {
        assert_eq!(request["authorization"], "Bearer test-key");
    }
}

#[tokio::test]
async fn five_wrong_codes_fail_the_session_for_good() {
    let mut h = common::start().await;
    let id = h.start_sms("+6598765432").await.session_id;
    let right = h.code_of(&id).await;
    let wrong = if right == "0000" { "1111" } else { "0000" };
    let mut seen = Vec::new();
    for _ in 0..5 {
        let session = h.check(&id, wrong).await.unwrap();
        seen.push((session.status, session.attempt));
    }
    let waiting = pb::SessionStatus::Waiting as i32;
    assert_eq!(
        seen,
        vec![
            (waiting, 1),
            (waiting, 2),
            (waiting, 3),
            (waiting, 4),
            (pb::SessionStatus::Failed as i32, 5)
        ]
    );
    // Even the right code can't revive it.
    let after = h.check(&id, &right).await.unwrap();
    assert_eq!(after.status, pb::SessionStatus::Failed as i32);
}

#[tokio::test]
async fn a_session_past_its_validity_is_expired() {
    let mut h = common::start().await;
    let id = h.start_sms("+6598765432").await.session_id;
    let code = h.code_of(&id).await;
    h.advance_clock(301).await;
    let session = h
        .client
        .check_code(pb::CheckCodeRequest {
            session_id: id,
            code,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(session.status, pb::SessionStatus::Expired as i32);
}

#[tokio::test]
async fn unknown_session_is_not_found() {
    let mut h = common::start().await;
    let status = h.get("0123456789abcdef0123456789abcdef").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason(&status), "SESSION_NOT_FOUND");
    let info = tonic_types::StatusExt::get_error_details(&status)
        .error_info()
        .cloned()
        .unwrap();
    assert_eq!(info.domain, "verif8-grpc");
    assert_eq!(info.metadata["upstream_code"], "1404");
    assert_eq!(info.metadata["http_status"], "404");
    assert!(!info.metadata["error_id"].is_empty());
}

#[tokio::test]
async fn resending_reuses_the_session_and_code_or_resets_it() {
    let mut h = common::start().await;
    let first = h.start_sms("+6598765432").await;
    let first_code = h.code_of(&first.session_id).await;

    // Inside the default 10 s resending interval: refused, with RetryInfo.
    let status = h
        .client
        .start_verification(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "RESEND_TOO_SOON");
    let retry = tonic_types::StatusExt::get_error_details(&status)
        .retry_info()
        .cloned()
        .expect("RetryInfo");
    let delay = retry.retry_delay.unwrap();
    assert!(
        delay.as_secs() <= 10 && delay > std::time::Duration::from_secs(5),
        "{delay:?}"
    );

    h.advance_clock(11).await;
    let again = h.start_sms("+6598765432").await;
    assert_eq!(again.session_id, first.session_id);
    assert!(again.expires_at.unwrap().seconds > first.expires_at.unwrap().seconds);
    assert_eq!(h.messages(&first.session_id).await.len(), 2);
    assert_eq!(h.code_of(&first.session_id).await, first_code);

    h.advance_clock(11).await;
    let reset = h
        .start(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            reset_session: Some(true),
            code_length: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reset.session_id, first.session_id);
    let new_code = h.code_of(&first.session_id).await;
    assert_eq!(new_code.len(), 10);
    assert_ne!(new_code, first_code);
}

#[tokio::test]
async fn sma_sessions_verify_through_their_verification_url() {
    let mut h = common::start().await;
    let session = h
        .start(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            channel: pb::Channel::Sma as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        session
            .verification_url
            .starts_with(&format!("{}/sma/", h.sandbox.base_url)),
        "{}",
        session.verification_url
    );
    assert!(h.messages(&session.session_id).await.is_empty());
    let opened = h.http.get(&session.verification_url).send().await.unwrap();
    assert!(opened.status().is_success());
    let read = h.get(&session.session_id).await.unwrap();
    assert_eq!(read.status, pb::SessionStatus::Verified as i32);
}

#[tokio::test]
async fn sma_coverage_follows_the_sandbox_prefix_rule() {
    let h = common::start().await;
    let available = |destination: &'static str| {
        let mut client = h.client.clone();
        async move {
            client
                .check_sma_coverage(pb::CheckSmaCoverageRequest {
                    client_ip: "203.0.113.7".into(),
                    destination: destination.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .available
        }
    };
    assert!(available("+6598765432").await);
    assert!(!available("+14155550123").await);
    let requests = h.upstream_requests().await;
    assert_eq!(
        requests[0]["path"],
        "/api/v2/subaccounts/acme_verif8/sma/coverage"
    );
    assert_eq!(
        requests[0]["body"],
        serde_json::json!({"clientIp": "203.0.113.7", "destination": "+6598765432"})
    );
}
