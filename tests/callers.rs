//! `--callers-file`: bearer tokens, scopes and subaccounts, checked before
//! anything reaches 8x8 (counted at the sandbox), with health and reflection
//! left open and the caller's name in the metrics.

mod common;

use std::sync::Arc;

use common::callers::{FULL, READER, callers, start, with_token};
use common::{pb, reason};
use tonic::Code;

#[tokio::test]
async fn calls_need_a_known_token_the_scope_and_the_subaccount() {
    let mut h = common::start_with(|options, _| options.callers = Some(Arc::new(callers()))).await;

    let missing = h
        .client
        .start_verification(start("+6591234567"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert_eq!(reason(&missing), "CALLER_UNAUTHENTICATED");
    let unknown = h
        .client
        .start_verification(with_token(start("+6591234567"), "guess"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(reason(&unknown), "CALLER_UNAUTHENTICATED");

    // The dashboard may read, not send.
    let no_scope = h
        .client
        .start_verification(with_token(start("+6591234567"), READER))
        .await
        .unwrap_err();
    assert_eq!(no_scope.code(), Code::PermissionDenied);
    assert_eq!(reason(&no_scope), "SCOPE_NOT_GRANTED");

    // Billing may send, but only for its own subaccount.
    let mut elsewhere = start("+6591234567");
    elsewhere.subaccount_id = "other_verif8".into();
    let not_its_own = h
        .client
        .start_verification(with_token(elsewhere, FULL))
        .await
        .unwrap_err();
    assert_eq!(not_its_own.code(), Code::PermissionDenied);
    assert_eq!(reason(&not_its_own), "SUBACCOUNT_NOT_ALLOWED");
    assert!(
        h.upstream_requests().await.is_empty(),
        "nothing reached 8x8"
    );

    let session = h
        .client
        .start_verification(with_token(start("+6591234567"), FULL))
        .await
        .expect("billing starts a verification")
        .into_inner()
        .session
        .unwrap();
    let read = h
        .client
        .get_session(with_token(
            pb::GetSessionRequest {
                session_id: session.session_id.clone(),
                ..Default::default()
            },
            READER,
        ))
        .await
        .expect("the dashboard reads it");
    assert_eq!(
        read.into_inner().session.unwrap().session_id,
        session.session_id
    );
    let denied_check = h
        .client
        .check_code(with_token(
            pb::CheckCodeRequest {
                session_id: session.session_id.clone(),
                code: "1234".into(),
                ..Default::default()
            },
            READER,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&denied_check), "SCOPE_NOT_GRANTED");
    let watch = h
        .client
        .watch_session(pb::WatchSessionRequest {
            session_id: session.session_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&watch), "CALLER_UNAUTHENTICATED");
    // One POST and one GET: the two allowed calls.
    assert_eq!(h.upstream_requests().await.len(), 2);

    let metrics = h.metrics().await;
    for line in [
        r#"verif8_refused_total{reason="CALLER_UNAUTHENTICATED"} 3"#,
        r#"verif8_refused_total{reason="SCOPE_NOT_GRANTED"} 2"#,
        r#"verif8_refused_total{reason="SUBACCOUNT_NOT_ALLOWED"} 1"#,
        r#"verif8_rpcs_total{method="StartVerification",code="Ok",caller="billing"} 1"#,
        r#"verif8_rpcs_total{method="GetSession",code="Ok",caller="dashboard"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
}

#[tokio::test]
async fn health_and_reflection_stay_open() {
    let h = common::start_with(|options, _| options.callers = Some(Arc::new(callers()))).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers without a token");
    assert_eq!(
        answer.into_inner().status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers without a token")
        .into_inner();
    assert!(answers.message().await.unwrap().is_some());
}
