//! Shared harness: a real sandbox on an ephemeral port, the real gRPC server
//! in front of it, and a client for each. Every test goes over sockets.

#![allow(dead_code)]

pub mod callers;
pub mod cluster;

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Status;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use verif8_grpc::pb::v1::verification_service_client::VerificationServiceClient;
use verif8_grpc::sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use verif8_grpc::server::{self, ServerOptions};
use verif8_grpc::upstream::{ApiKeys, UpstreamConfig};
use verif8_grpc::watch::WatchConfig;

pub use verif8_grpc::pb::v1 as pb;

pub const API_KEY: &str = "test-key";
pub const SUBACCOUNT: &str = "acme_verif8";

pub struct Harness {
    pub sandbox: RunningSandbox,
    pub grpc_addr: SocketAddr,
    /// The facade's HTTP listener (callback hints).
    pub http_addr: SocketAddr,
    pub client: VerificationServiceClient<Channel>,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Sandbox plus facade with a default subaccount.
pub async fn start() -> Harness {
    start_with(|_, _| {}).await
}

/// Like `start`, with a chance to adjust the facade's options; the closure
/// also gets the base URL of the facade's HTTP listener.
pub async fn start_with(adjust: impl FnOnce(&mut ServerOptions, &str)) -> Harness {
    let sandbox = Sandbox::spawn(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            api_key: API_KEY.into(),
            public_url: None,
            latency: std::time::Duration::ZERO,
        },
    )
    .await
    .expect("sandbox starts");
    let mut options = facade_options(&sandbox.base_url, API_KEY);
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    adjust(&mut options, &format!("http://{http_addr}"));
    let (grpc_addr, stop) = spawn_facade_with_http(options, Some(http)).await;
    Harness {
        sandbox,
        grpc_addr,
        http_addr,
        client: connect(grpc_addr).await,
        http: reqwest::Client::new(),
        stop: Some(stop),
    }
}

pub fn facade_options(upstream_url: &str, api_key: &str) -> ServerOptions {
    ServerOptions {
        upstream: UpstreamConfig {
            base_url: upstream_url.parse().unwrap(),
            keys: ApiKeys::single(SecretString::from(api_key)),
            timeout: Duration::from_secs(5),
        },
        default_subaccount: Some(SUBACCOUNT.into()),
        watch: WatchConfig::default(),
        public_url: None,
        sandbox: None,
        max_in_flight: 1024,
        max_watch_streams_per_caller: 100_000,
        shutdown_grace: Duration::from_secs(5),
        // More than one, so tests cross the hand-over between threads.
        idempotency: std::sync::Arc::new(verif8_grpc::idempotency::MemoryStore::new(
            Duration::from_secs(24 * 3600),
            10_000,
        )),
        callers: None,
        cluster: None,
        protection: Default::default(),
        tls: None,
    }
}

pub async fn spawn_facade(options: ServerOptions) -> (SocketAddr, oneshot::Sender<()>) {
    spawn_facade_with_http(options, None).await
}

pub async fn spawn_facade_with_http(
    options: ServerOptions,
    http: Option<TcpListener>,
) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        server::serve(listener, http, options, async {
            let _ = stopped.await;
        })
        .await
        .expect("facade serves");
    });
    (addr, stop)
}

pub async fn connect(addr: SocketAddr) -> VerificationServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("facade accepts connections");
    VerificationServiceClient::new(channel)
}

impl Harness {
    /// The facade's /metrics text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.http_addr);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Every request the sandbox received on its 8x8 routes, in order.
    pub async fn upstream_requests(&self) -> Vec<Value> {
        let url = format!("{}/_sandbox/requests", self.sandbox.base_url);
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["requests"].as_array().cloned().unwrap_or_default()
    }

    /// Messages the sandbox delivered for a session.
    pub async fn messages(&self, session_id: &str) -> Vec<Value> {
        let url = format!(
            "{}/_sandbox/messages?sessionId={session_id}",
            self.sandbox.base_url
        );
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["messages"].as_array().cloned().unwrap_or_default()
    }

    /// The code last delivered for a session.
    pub async fn code_of(&self, session_id: &str) -> String {
        let messages = self.messages(session_id).await;
        let last = messages.last().expect("a message was delivered");
        last["code"].as_str().unwrap().to_owned()
    }

    pub async fn advance_clock(&self, seconds: u64) {
        let url = format!("{}/_sandbox/clock/advance", self.sandbox.base_url);
        let response = self
            .http
            .post(url)
            .json(&serde_json::json!({ "seconds": seconds }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// Makes the next `count` upstream requests fail as described.
    pub async fn inject_fault(&self, fault: Value) {
        let url = format!("{}/_sandbox/faults", self.sandbox.base_url);
        let response = self.http.post(url).json(&fault).send().await.unwrap();
        assert!(response.status().is_success(), "fault accepted");
    }

    /// CheckCode through the facade; the session after the attempt.
    pub async fn check(&mut self, session_id: &str, code: &str) -> Result<pb::Session, Status> {
        let request = pb::CheckCodeRequest {
            session_id: session_id.into(),
            code: code.into(),
            ..Default::default()
        };
        let answer = self.client.check_code(request).await?.into_inner();
        Ok(answer.session.expect("a session"))
    }

    /// GetSession through the facade.
    pub async fn get(&mut self, session_id: &str) -> Result<pb::Session, Status> {
        let request = pb::GetSessionRequest {
            session_id: session_id.into(),
            ..Default::default()
        };
        let answer = self.client.get_session(request).await?.into_inner();
        Ok(answer.session.expect("a session"))
    }

    /// StartVerification through the facade; the session it answered.
    pub async fn start(
        &mut self,
        request: pb::StartVerificationRequest,
    ) -> Result<pb::Session, Status> {
        let answer = self.client.start_verification(request).await?.into_inner();
        Ok(answer.session.expect("a session"))
    }

    /// Starts an SMS verification to `destination` and returns its session.
    pub async fn start_sms(&mut self, destination: &str) -> pb::Session {
        let request = pb::StartVerificationRequest {
            destination: destination.into(),
            ..Default::default()
        };
        self.start(request).await.expect("start succeeds")
    }
}

/// The ErrorInfo reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"))
}

/// Fields named by a status's BadRequest, in order.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

pub fn duration(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// A fixed poll interval without jitter, for tests that count polls.
pub fn fixed_polling(interval: Duration) -> WatchConfig {
    WatchConfig {
        schedule: verif8_grpc::watch::PollSchedule {
            min_interval: interval,
            max_interval: interval,
            jitter: 0.0,
        },
        ..WatchConfig::default()
    }
}

impl Harness {
    /// GETs of a session's status (no query) the sandbox received.
    pub async fn status_reads(&self, session_id: &str) -> usize {
        self.upstream_requests()
            .await
            .iter()
            .filter(|r| r["method"] == "GET" && r["path"].as_str().unwrap().ends_with(session_id))
            .filter(|r| r["query"].is_null())
            .count()
    }

    /// Submits a code straight to the sandbox, as if another 8x8 client did.
    pub async fn check_code_upstream(&self, session_id: &str, code: &str) {
        let url = format!(
            "{}/api/v2/subaccounts/{SUBACCOUNT}/sessions/{session_id}?code={code}",
            self.sandbox.base_url
        );
        let response = self
            .http
            .get(url)
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
}
