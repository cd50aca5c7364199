//! Load shedding and graceful shutdown over real sockets.

mod common;

use std::time::{Duration, Instant};

use common::{pb, reason};
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::Code;

#[tokio::test]
async fn calls_beyond_the_in_flight_limit_are_shed_at_once() {
    let mut h = common::start_with(|o, _| o.max_in_flight = 1).await;
    let id = h.start_sms("+6598765432").await.session_id;
    h.inject_fault(json!({"status": 500, "code": 2000, "count": 1, "delayMs": 1500}))
        .await;
    let mut slow_client = h.client.clone();
    let slow_id = id.clone();
    let slow = tokio::spawn(async move {
        slow_client
            .check_code(pb::CheckCodeRequest {
                session_id: slow_id,
                code: "1234".into(),
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A second connection goes to the other serving thread: the limit is the process's.
    let mut other_thread = common::connect(h.grpc_addr).await;
    let get = pb::GetSessionRequest {
        session_id: id.clone(),
        ..Default::default()
    };
    let started = Instant::now();
    let shed = other_thread.get_session(get.clone()).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted);
    assert_eq!(reason(&shed), "OVERLOADED");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "shed without queueing"
    );
    let shed_here = h.get(&id).await.unwrap_err();
    assert_eq!(reason(&shed_here), "OVERLOADED");
    assert_eq!(slow.await.unwrap().unwrap_err().code(), Code::Unavailable);
    // With the slot free again, the other thread calls 8x8 through its own client.
    let answer = other_thread.get_session(get).await.unwrap().into_inner();
    assert_eq!(answer.session.expect("a session").session_id, id);
}

#[tokio::test]
async fn shutdown_ends_watches_unavailable_and_lets_unary_calls_finish() {
    let sandbox = verif8_grpc::sandbox::Sandbox::spawn(
        "127.0.0.1:0".parse().unwrap(),
        verif8_grpc::sandbox::SandboxConfig {
            api_key: common::API_KEY.into(),
            public_url: None,
            latency: std::time::Duration::ZERO,
        },
    )
    .await
    .unwrap();
    let (addr, stop) =
        common::spawn_facade(common::facade_options(&sandbox.base_url, common::API_KEY)).await;
    let mut client = common::connect(addr).await;
    let session = client
        .start_verification(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let mut watch = client
        .watch_session(pb::WatchSessionRequest {
            session_id: session.session_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().kind(),
        pb::WatchEventKind::Snapshot
    );

    // A unary call that is still waiting on 8x8 when the shutdown begins.
    let http = reqwest::Client::new();
    http.post(format!("{}/_sandbox/faults", sandbox.base_url))
        .json(&json!({"status": 500, "code": 2000, "count": 1, "delayMs": 800}))
        .send()
        .await
        .unwrap();
    let mut in_flight_client = client.clone();
    let id = session.session_id.clone();
    let in_flight = tokio::spawn(async move {
        in_flight_client
            .check_code(pb::CheckCodeRequest {
                session_id: id,
                code: "1234".into(),
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();

    let ended = watch.next().await.unwrap().unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable);
    assert_eq!(reason(&ended), "SHUTTING_DOWN");
    // The in-flight call ran to its (faulted) answer instead of being cut off.
    let answer = in_flight.await.unwrap().unwrap_err();
    assert_eq!(answer.code(), Code::Unavailable);
    assert_eq!(reason(&answer), "UPSTREAM_UNAVAILABLE");
    // New calls are refused once the server has stopped.
    let refused = client
        .get_session(pb::GetSessionRequest {
            session_id: session.session_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(refused.code(), Code::Unavailable | Code::Unknown),
        "{refused:?}"
    );
}
