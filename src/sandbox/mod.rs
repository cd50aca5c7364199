//! A faithful, in-memory simulation of the 8x8 Verification API v2 over real HTTP.
//!
//! It is the other side of the wire for the facade (when no 8x8 API key is configured), for
//! `verif8-grpc sandbox --listen ADDR`, and for every integration test and benchmark. It follows
//! 8x8's documented semantics (validation codes, resend interval, 5-attempt limit, expiry) rather
//! than a happy path, and shares no types with the client in `crate::upstream`.
//!
//! Deterministic rules where 8x8's behaviour depends on account data:
//! - the sandbox's key owns every subaccount except those whose id starts with `foreign`
//!   (HTTP 400, code 1001);
//! - SMA coverage (rule documented in `endpoints.rs`): available iff the destination's country
//!   code is 65, 62, 60 or 66, or no destination is given and `clientIp` is IPv4.
//!
//! Sandbox-only endpoints live under `/_sandbox/` (messages, requests, clock, faults).

mod clock;
mod codes;
mod endpoints;
mod errors;
mod faults;
mod gate;
mod inspect;
mod outbox;
mod phone;
mod requests;
mod sessions;
mod state;
mod validate;
mod wire;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use outbox::OutboxMessage;
use state::Shared;

/// How a sandbox instance authenticates and names itself.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Bearer token the sandbox accepts (anything else: 401 / code 1200).
    pub api_key: String,
    /// Base URL the sandbox is reachable at, used to build absolute SMA verification URLs
    /// (e.g. "http://127.0.0.1:4010"). None: derive from the bound local address.
    pub public_url: Option<String>,
    /// Added before every `/api/` answer, as a real 8x8 region's network
    /// distance would (benchmarks: `--latency 50ms`).
    pub latency: std::time::Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            api_key: "sandbox-key".to_owned(),
            public_url: None,
            latency: std::time::Duration::ZERO,
        }
    }
}

/// Handle on one sandbox's state, shared with its router.
#[derive(Debug, Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
}

impl Sandbox {
    /// A sandbox that will be served at `local_addr` (used when `public_url` is None).
    pub fn new(config: &SandboxConfig, local_addr: SocketAddr) -> Self {
        let public_base = match &config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => reachable_url(local_addr),
        };
        Self {
            shared: Arc::new(Shared::new(
                config.api_key.clone(),
                public_base,
                config.latency,
            )),
        }
    }

    /// Delivered messages, oldest first, as `GET /_sandbox/messages` lists them; `None` or
    /// empty filters match everything, destinations match with or without `+`.
    pub fn messages(
        &self,
        session_id: Option<&str>,
        destination: Option<&str>,
    ) -> Vec<OutboxMessage> {
        self.shared.with(|s| s.outbox.list(session_id, destination))
    }

    /// The HTTP router (8x8 API, `/sma/`, `/_sandbox/`), e.g. to embed or drive with `tower`.
    pub fn router(&self) -> Router {
        let shared = self.shared.clone();
        Router::new()
            .route(
                "/api/v2/subaccounts/{sub}/sessions",
                post(endpoints::create_session),
            )
            .route(
                "/api/v2/subaccounts/{sub}/sessions/{id}",
                get(endpoints::get_session),
            )
            .route(
                "/api/v2/subaccounts/{sub}/sma/coverage",
                post(endpoints::sma_coverage),
            )
            .route("/sma/{id}", get(endpoints::sma_visit))
            .route("/_sandbox/messages", get(inspect::messages))
            .route("/_sandbox/requests", get(inspect::requests))
            .route("/_sandbox/clock/advance", post(inspect::advance_clock))
            .route(
                "/_sandbox/faults",
                post(inspect::add_fault).delete(inspect::clear_faults),
            )
            .fallback(gate::not_found)
            .method_not_allowed_fallback(gate::method_not_allowed)
            .layer(from_fn_with_state(shared.clone(), gate::gate))
            .with_state(shared)
    }

    /// Binds, spawns the server task, returns once it is accepting.
    pub async fn spawn(
        listen: SocketAddr,
        config: SandboxConfig,
    ) -> std::io::Result<RunningSandbox> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let sandbox = Sandbox::new(&config, addr);
        let router = sandbox.router();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    // Either an explicit shutdown or the handle being dropped.
                    let _ = stopped.await;
                })
                .await
        });
        Ok(RunningSandbox {
            addr,
            base_url: reachable_url(addr),
            sandbox,
            stop,
            task,
        })
    }
}

/// A sandbox serving in a background task. Dropping it also stops the server.
#[derive(Debug)]
pub struct RunningSandbox {
    /// The bound address.
    pub addr: SocketAddr,
    /// `http://addr` (an unspecified bind address is replaced by loopback so it is reachable).
    pub base_url: String,
    sandbox: Sandbox,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningSandbox {
    /// The state handle behind the running server.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Delivered messages, oldest first; see [`Sandbox::messages`].
    pub fn messages(
        &self,
        session_id: Option<&str>,
        destination: Option<&str>,
    ) -> Vec<OutboxMessage> {
        self.sandbox.messages(session_id, destination)
    }

    /// Graceful stop: stops accepting, lets in-flight requests finish, then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "sandbox server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "sandbox server task failed"),
        }
    }
}

/// For `verif8-grpc sandbox --listen`: serve until the future `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: SandboxConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sandbox = Sandbox::new(&config, listener.local_addr()?);
    axum::serve(listener, sandbox.router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// `http://addr`, with 0.0.0.0 / [::] replaced by loopback (a client cannot connect to those).
fn reachable_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}
