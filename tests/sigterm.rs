//! SIGTERM to the real binary with a unary call in flight and streams open:
//! health turns NOT_SERVING, watch streams end UNAVAILABLE, the in-flight
//! call finishes, new connections are refused, and the process exits 0
//! before its grace period runs out.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{pb, reason};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let (grpc_port, sandbox_port) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_verif8-grpc"))
        .args(["--listen", &format!("127.0.0.1:{grpc_port}")])
        .args(["--sandbox-listen", &format!("127.0.0.1:{sandbox_port}")])
        .args(["--shutdown-grace", "8s"])
        .env_remove("VERIF8_API_KEY")
        .env_remove("VERIF8_UPSTREAM_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
    let started = Instant::now();
    let channel = loop {
        match tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => break channel,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("never came up: {error}"),
        }
    };
    let mut client =
        pb::verification_service_client::VerificationServiceClient::new(channel.clone());
    let mut health = HealthClient::new(channel);
    let mut health_updates = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health_updates.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

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
    watch.next().await.unwrap().unwrap();

    // The next 8x8 call takes 1.5 s: it will be in flight at SIGTERM.
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{sandbox_port}/_sandbox/faults"))
        .json(&serde_json::json!({"status": 500, "code": 2000, "count": 1, "delayMs": 1500}))
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
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let update = health_updates.next().await.unwrap().unwrap();
    assert_eq!(
        update.status(),
        health_check_response::ServingStatus::NotServing
    );
    drop(health_updates);

    let ended = watch.next().await.unwrap().unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable);
    assert_eq!(reason(&ended), "SHUTTING_DOWN");

    let answer = in_flight.await.unwrap().unwrap_err();
    assert_eq!(
        reason(&answer),
        "UPSTREAM_UNAVAILABLE",
        "ran to 8x8's answer"
    );

    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections once draining"
    );

    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let took = signalled.elapsed();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        took < Duration::from_secs(8),
        "exited within the grace period: {took:?}"
    );
}
