//! How gRPC is served: tonic's server with the HTTP/2 settings chosen for a
//! service behind a mesh or load balancer, optionally over TLS (rustls), on
//! connections that sent their first bytes before the deadline.

pub mod accept;
mod preface;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::ServerTlsConfig;
use tonic::transport::server::{Router, TcpIncoming};
use tower::layer::util::{Identity, Stack};

use std::sync::Arc;

use crate::auth::Callers;
use crate::grpc::layers::{AuthenticateLayer, InFlightLimitLayer, RpcLogLayer};

pub use preface::PREFACE_TIMEOUT;

// Keepalive pings find dead peers behind NATs and idle-timeout proxies; a
// maximum connection age makes clients reconnect now and then, so new
// replicas get traffic; many streams per connection leave room for
// long-lived WatchSession streams; small messages are all this API needs.
const MAX_CONCURRENT_STREAMS: u32 = 4096;
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);
const MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(60);
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

pub type Layers = Stack<InFlightLimitLayer, Stack<AuthenticateLayer, Stack<RpcLogLayer, Identity>>>;

/// tonic's server with our settings and layers; add the services to it.
/// It enforces each call's `grpc-timeout` (tonic answers CANCELLED when it
/// runs out; our handlers answer DEADLINE_EXCEEDED a margin before).
pub fn server(
    max_in_flight: usize,
    callers: Option<Arc<Callers>>,
    tls: Option<ServerTlsConfig>,
) -> Result<tonic::transport::Server<Layers>, tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    Ok(builder
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(MAX_CONNECTION_AGE_GRACE)
        // hyper's limit on streams reset for a peer's protocol errors
        // (RUSTSEC-2024-0003); tonic passes none by default.
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        // Outermost first: every refusal is still logged, and an
        // unauthenticated call takes no in-flight slot.
        .layer(RpcLogLayer)
        .layer(AuthenticateLayer::new(callers))
        .layer(InFlightLimitLayer::new(max_in_flight)))
}

/// Serves `router` on `listener` until `stopping`; then stops accepting at
/// once and lets open connections finish their calls.
pub async fn serve(
    router: Router<Layers>,
    listener: TcpListener,
    stopping: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE));
    let ready = preface::gate(incoming, stopping.clone());
    router
        .serve_with_incoming_shutdown(ready, stopping.cancelled_owned())
        .await
}
