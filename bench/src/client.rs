//! The load generator's side of the wire: gRPC channels to the facade, plain HTTP to the
//! sandbox (sessions, codes, its request journal), readiness checks, and a raw HTTP/2
//! SETTINGS probe.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use verif8_grpc::pb::v1 as pb;
use verif8_grpc::pb::v1::verification_service_client::VerificationServiceClient;

use crate::BoxError;

pub const API_KEY: &str = "bench-key";
pub const SUBACCOUNT: &str = "acme_verif8";
/// The service whose health says the facade is ready.
pub const SERVICE: &str = "verif8.v1.VerificationService";

pub type Client = VerificationServiceClient<Channel>;

/// One HTTP/2 connection to the facade.
pub async fn channel(addr: SocketAddr) -> Result<Channel, BoxError> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// `n` separate connections, each already established.
pub async fn channels(addr: SocketAddr, n: usize) -> Result<Vec<Channel>, BoxError> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        let channel = channel(addr).await?;
        // An RPC makes sure the HTTP/2 handshake is done before anything is measured.
        check_serving(channel.clone()).await?;
        channels.push(channel);
    }
    Ok(channels)
}

/// A VerificationService client on each of `n` separate, established connections.
pub async fn clients(addr: SocketAddr, n: usize) -> Result<Vec<Client>, BoxError> {
    let channels = channels(addr, n).await?;
    Ok(channels
        .into_iter()
        .map(VerificationServiceClient::new)
        .collect())
}

async fn check_serving(channel: Channel) -> Result<bool, BoxError> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: SERVICE.to_owned(),
        })
        .await?;
    Ok(response.into_inner().status == ServingStatus::Serving as i32)
}

/// Waits until the facade at `addr` says SERVING; returns how long that took. Retries about
/// every 0.2 ms while the port is closed and every 1 ms after, so startup times are resolved to
/// about a millisecond.
pub async fn wait_serving(addr: SocketAddr, limit: Duration) -> Result<Duration, BoxError> {
    let started = Instant::now();
    let deadline = started + limit;
    loop {
        if Instant::now() > deadline {
            return Err(format!("facade at {addr} not SERVING after {limit:?}").into());
        }
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        if let Ok(channel) = channel(addr).await
            && check_serving(channel).await.unwrap_or(false)
        {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until an HTTP server answers at `addr`.
pub async fn wait_http(addr: SocketAddr, limit: Duration) -> Result<Duration, BoxError> {
    let started = Instant::now();
    let http = reqwest::Client::new();
    loop {
        if http
            .get(format!("http://{addr}/_sandbox/messages?sessionId=none"))
            .send()
            .await
            .is_ok()
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(format!("sandbox at {addr} not answering after {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub fn get_request(session_id: &str) -> pb::GetSessionRequest {
    pb::GetSessionRequest {
        subaccount_id: SUBACCOUNT.to_owned(),
        session_id: session_id.to_owned(),
    }
}

pub fn watch_request(session_id: &str) -> pb::WatchSessionRequest {
    pb::WatchSessionRequest {
        subaccount_id: SUBACCOUNT.to_owned(),
        session_id: session_id.to_owned(),
        heartbeat_interval: None,
    }
}

/// Opens `count` WatchSession streams spread over `clients` and `sessions` (round robin), and
/// returns them once each has delivered its SNAPSHOT.
pub async fn open_watchers(
    clients: &[Client],
    sessions: &[String],
    count: usize,
) -> Result<Vec<tonic::Streaming<pb::WatchSessionResponse>>, BoxError> {
    futures_util::stream::iter(0..count)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            let request = watch_request(&sessions[i % sessions.len()]);
            async move {
                let mut stream = client.watch_session(request).await?.into_inner();
                let snapshot = stream
                    .message()
                    .await?
                    .ok_or("stream ended before SNAPSHOT")?;
                if snapshot.kind != pb::WatchEventKind::Snapshot as i32 {
                    return Err::<_, BoxError>("first message is not a SNAPSHOT".into());
                }
                Ok(stream)
            }
        })
        .buffer_unordered(256)
        .try_collect()
        .await
}

/// The sandbox's HTTP API, spoken directly.
#[derive(Clone)]
pub struct Sandbox {
    pub http: reqwest::Client,
    pub base: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionBody {
    session_id: String,
}

#[derive(Deserialize)]
struct Messages {
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    code: String,
}

#[derive(Deserialize)]
struct Journal {
    requests: Vec<JournalEntry>,
}

/// One entry of `/_sandbox/requests` (the fields we count by).
#[derive(Deserialize)]
pub struct JournalEntry {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
}

impl JournalEntry {
    /// A status read without `code`: what the watch engine's pollers send.
    pub fn is_poll(&self) -> bool {
        self.method == "GET" && self.query.is_none()
    }
}

/// Entries `/_sandbox/requests` keeps at most (oldest dropped), as the sandbox defines it.
pub const JOURNAL_CAPACITY: usize = 10_000;

impl Sandbox {
    pub fn new(addr: SocketAddr) -> Self {
        Sandbox {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
        }
    }

    pub fn session_path(session_id: &str) -> String {
        format!("/api/v2/subaccounts/{SUBACCOUNT}/sessions/{session_id}")
    }

    pub fn session_url(&self, session_id: &str) -> String {
        format!("{}{}", self.base, Self::session_path(session_id))
    }

    /// Starts a session for destination number `n` (distinct numbers, so no resend limit
    /// applies), valid for two hours so nothing expires during a run.
    pub async fn create_session(&self, n: u64) -> Result<String, BoxError> {
        let response = self
            .http
            .post(format!(
                "{}/api/v2/subaccounts/{SUBACCOUNT}/sessions",
                self.base
            ))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({
                "destination": format!("+659{:07}", n % 10_000_000),
                "codeValidity": 7200,
            }))
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json::<SessionBody>().await?.session_id)
    }

    /// Sessions for destinations `first..first + count`, created 32 at a time.
    pub async fn create_sessions(&self, first: u64, count: usize) -> Result<Vec<String>, BoxError> {
        futures_util::stream::iter(0..count as u64)
            .map(|i| self.create_session(first + i))
            .buffered(32)
            .try_collect()
            .await
    }

    /// The code the sandbox "delivered" for a session.
    pub async fn code_of(&self, session_id: &str) -> Result<String, BoxError> {
        let messages: Messages = self
            .http
            .get(format!("{}/_sandbox/messages", self.base))
            .query(&[("sessionId", session_id)])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(messages
            .messages
            .into_iter()
            .last()
            .ok_or("no message for the session")?
            .code)
    }

    /// The request journal, oldest first, and the instant it was read (the midpoint of the
    /// exchange).
    pub async fn journal(&self) -> Result<(Instant, Vec<JournalEntry>), BoxError> {
        let sent = Instant::now();
        let response = self
            .http
            .get(format!("{}/_sandbox/requests", self.base))
            .send()
            .await?
            .error_for_status()?;
        let answered = Instant::now();
        let journal: Journal = response.json().await?;
        Ok((sent + (answered - sent) / 2, journal.requests))
    }
}

/// SETTINGS_MAX_CONCURRENT_STREAMS the server at `addr` announces in its first SETTINGS frame;
/// `None` means it announces none, i.e. no limit.
pub async fn announced_max_concurrent_streams(addr: SocketAddr) -> Result<Option<u32>, BoxError> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    const SETTINGS: u8 = 4;
    const MAX_CONCURRENT_STREAMS: u16 = 3;
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(PREFACE).await?;
    tcp.write_all(&EMPTY_SETTINGS).await?;
    let mut header = [0u8; 9];
    let read = async {
        tcp.read_exact(&mut header).await?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; length];
        tcp.read_exact(&mut payload).await?;
        Ok::<_, std::io::Error>(payload)
    };
    let payload = tokio::time::timeout(Duration::from_secs(5), read).await??;
    if header[3] != SETTINGS {
        return Err(format!("first HTTP/2 frame has type {}, not SETTINGS", header[3]).into());
    }
    Ok(payload.chunks_exact(6).find_map(|entry| {
        (u16::from_be_bytes([entry[0], entry[1]]) == MAX_CONCURRENT_STREAMS)
            .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
    }))
}
