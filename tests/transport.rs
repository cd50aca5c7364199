//! What the transport enforces over real sockets: each call's grpc-timeout,
//! a deadline on silent connections on both listeners, and the in-flight
//! slot of a start whose caller went away.

mod common;

use std::time::{Duration, Instant};

use common::{pb, reason};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn the_server_ends_a_call_when_its_grpc_timeout_runs_out() {
    let mut h = common::start().await;
    let id = h.start_sms("+6598765432").await.session_id;
    // The watch's first read waits on an upstream that answers after 3 s;
    // the handler has no deadline of its own there, so only the server's
    // grpc-timeout can end the call.
    h.inject_fault(json!({"status": 500, "code": 2000, "count": 5, "delayMs": 3000}))
        .await;
    let mut request = tonic::Request::new(pb::WatchSessionRequest {
        session_id: id,
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let ended = h.client.watch_session(request).await.unwrap_err();
    assert_eq!(ended.code(), Code::Cancelled, "{ended:?}");
    assert_eq!(ended.message(), "Timeout expired");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn silent_connections_are_closed_and_do_not_stop_health_checks() {
    let h = common::start().await;
    let mut silent = Vec::new();
    for _ in 0..2000 {
        silent.push(TcpStream::connect(h.grpc_addr).await.unwrap());
        silent.push(TcpStream::connect(h.http_addr).await.unwrap());
    }
    // Half a preface, and half a request head: these stall as well.
    let mut half_preface = TcpStream::connect(h.grpc_addr).await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut half_head = TcpStream::connect(h.http_addr).await.unwrap();
    half_head
        .write_all(b"GET /metrics HTTP/1.1\r\n")
        .await
        .unwrap();
    let opened = Instant::now();

    // A new client is served at once on both listeners.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.grpc_addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("a new client connects");
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .expect("Health/Check answers");
    assert_eq!(health.into_inner().status, 1, "SERVING");
    let metrics = h
        .http
        .get(format!("http://{}/metrics", h.http_addr))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("/metrics answers");
    assert!(metrics.status().is_success());

    // Every stalled connection is closed by the server within 30 s.
    let deadline = Duration::from_secs(33);
    let silent_http = silent.pop().unwrap();
    let silent_grpc = silent.pop().unwrap();
    for (name, mut stream) in [
        ("silent gRPC", silent_grpc),
        ("silent HTTP", silent_http),
        ("half preface", half_preface),
        ("half request head", half_head),
    ] {
        let left = deadline.saturating_sub(opened.elapsed());
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(left, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    // hyper may answer 408 before closing.
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{name} connection still open after 33 s");
    }
    assert!(
        opened.elapsed() >= Duration::from_secs(29),
        "closed only once the 30 s deadline passed"
    );
}

#[tokio::test]
async fn a_start_whose_caller_left_keeps_its_in_flight_slot_until_the_post_ends() {
    let mut h = common::start_with(|o, _| o.max_in_flight = 1).await;
    let id = h.start_sms("+6598765432").await.session_id;
    h.inject_fault(json!({"status": 500, "code": 2000, "count": 1, "delayMs": 1500}))
        .await;
    let mut caller = h.client.clone();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        caller.start_verification(pb::StartVerificationRequest {
            destination: "+6591234567".into(),
            ..Default::default()
        }),
    )
    .await;
    assert!(gave_up.is_err(), "the caller gave up before 8x8 answered");

    // The POST is still on its way: the slot is taken.
    let shed = h.get(&id).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted);
    assert_eq!(reason(&shed), "OVERLOADED");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(h.get(&id).await.unwrap().session_id, id);
    let posts = h
        .upstream_requests()
        .await
        .iter()
        .filter(|r| r["method"] == "POST")
        .count();
    assert_eq!(posts, 2, "the first start and the abandoned one, sent once");
}
