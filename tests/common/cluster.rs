//! Several replicas: a private `redis-server` on an ephemeral port, replicas
//! as real processes of the binary, and one sandbox they all call.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use super::pb::verification_service_client::VerificationServiceClient;
use super::{API_KEY, SUBACCOUNT};
use verif8_grpc::sandbox::{RunningSandbox, Sandbox, SandboxConfig};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of the test's own: nothing saved, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
        server.restart().await;
        server
    }

    /// A server that isn't running yet, on a port kept for it.
    pub fn not_started() -> Self {
        RedisServer {
            port: free_port(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again, empty) on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new(redis_server())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/setup-tools.sh installs it)");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis never came up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `VERIF8_REDIS_SERVER`, or the one on PATH.
fn redis_server() -> String {
    std::env::var("VERIF8_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// The sandbox every replica calls, with its request log.
pub async fn sandbox(latency: Duration) -> RunningSandbox {
    Sandbox::spawn(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            api_key: API_KEY.into(),
            public_url: None,
            latency,
        },
    )
    .await
    .expect("sandbox starts")
}

/// Every request the sandbox received on its 8x8 routes, in order.
pub async fn upstream_requests(sandbox: &RunningSandbox) -> Vec<Value> {
    let url = format!("{}/_sandbox/requests", sandbox.base_url);
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    body["requests"].as_array().cloned().unwrap_or_default()
}

/// How many of them had `method` and a path containing `path`.
pub async fn count_requests(sandbox: &RunningSandbox, method: &str, path: &str) -> usize {
    upstream_requests(sandbox)
        .await
        .iter()
        .filter(|r| r["method"] == method && r["path"].as_str().is_some_and(|p| p.contains(path)))
        .count()
}

/// Checks a code straight at the sandbox, as if another service had: no
/// replica hears of it except by polling.
pub async fn check_at_sandbox(sandbox: &RunningSandbox, session_id: &str, code: &str) {
    let url = format!(
        "{}/api/v2/subaccounts/{SUBACCOUNT}/sessions/{session_id}?code={code}",
        sandbox.base_url
    );
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
}

/// The code the sandbox last delivered for a session.
pub async fn code_of(sandbox: &RunningSandbox, session_id: &str) -> String {
    let url = format!(
        "{}/_sandbox/messages?sessionId={session_id}",
        sandbox.base_url
    );
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["code"].as_str())
        .expect("a message was delivered")
        .to_owned()
}

/// Where replicas write their logs: `VERIF8_TEST_REPLICA_LOG` names a file
/// to append to (when a test fails); by default nowhere.
fn replica_log() -> Stdio {
    std::env::var_os("VERIF8_TEST_REPLICA_LOG")
        .and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        })
        .map_or_else(Stdio::null, Stdio::from)
}

/// One replica: the real binary, on its own ports.
pub struct Replica {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    child: Child,
}

impl Replica {
    /// A replica of `sandbox` sharing `redis_url`, with extra flags.
    pub async fn spawn(sandbox: &RunningSandbox, redis_url: &str, extra: &[&str]) -> Replica {
        let redis = ["--redis-url", redis_url];
        let flags: Vec<&str> = redis.iter().chain(extra).copied().collect();
        Replica::spawn_with(sandbox, &flags, &[]).await
    }

    /// The binary in front of `sandbox` with `flags` and environment `envs`.
    pub async fn spawn_with(
        sandbox: &RunningSandbox,
        flags: &[&str],
        envs: &[(&str, &str)],
    ) -> Replica {
        let (grpc, http) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_verif8-grpc"))
            .args(["--listen", &format!("127.0.0.1:{grpc}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args(["--upstream-url", &sandbox.base_url])
            .args(["--subaccount", SUBACCOUNT])
            .args(["--shutdown-grace", "2s"])
            .args(flags)
            .envs(envs.iter().copied())
            .env("VERIF8_API_KEY", API_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(replica_log())
            .spawn()
            .expect("the binary starts");
        let replica = Replica {
            grpc: format!("127.0.0.1:{grpc}").parse().unwrap(),
            http: format!("127.0.0.1:{http}").parse().unwrap(),
            child,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(replica.grpc).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "replica never came up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        replica
    }

    /// Three replicas alike.
    pub async fn three(sandbox: &RunningSandbox, redis_url: &str, extra: &[&str]) -> [Replica; 3] {
        [
            Replica::spawn(sandbox, redis_url, extra).await,
            Replica::spawn(sandbox, redis_url, extra).await,
            Replica::spawn(sandbox, redis_url, extra).await,
        ]
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .expect("replica accepts connections")
    }

    pub async fn client(&self) -> VerificationServiceClient<Channel> {
        VerificationServiceClient::new(self.channel().await)
    }

    /// Waits until its health says Redis is `up` (or not).
    pub async fn wait_for_redis(&self, up: bool) {
        let want = if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        let mut health = HealthClient::new(self.channel().await);
        let started = Instant::now();
        loop {
            let status = health
                .check(HealthCheckRequest {
                    service: verif8_grpc::server::REDIS_HEALTH.into(),
                })
                .await
                .map(|answer| answer.into_inner().status());
            if status.as_ref().ok() == Some(&want) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "redis health never became {want:?}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A counter (or gauge) from its /metrics, summed over labels.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
