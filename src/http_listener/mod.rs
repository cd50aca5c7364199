//! The HTTP listener (`--http-listen`): `/metrics` and callback hints.
//! HTTP/1.1 only, which is what Prometheus and 8x8's webhooks speak, served by
//! hyper with a deadline on each request head: a connection that doesn't
//! finish one within `HEADER_READ_TIMEOUT` (or sends nothing) is closed.

pub mod callbacks;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics;
use crate::transport::accept::next_connection;
use crate::watch::Hub;
use callbacks::CallbackTokens;

pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(callbacks: Option<Arc<CallbackTokens>>, hub: Hub) -> axum::Router {
    let router = match callbacks {
        Some(tokens) => callbacks::router(tokens, hub),
        None => axum::Router::new(),
    };
    router.route(
        "/metrics",
        axum::routing::get(|| async { metrics::render() }),
    )
}

/// Serves `router` until `stopping`, then lets open requests finish.
pub async fn serve(listener: TcpListener, router: axum::Router, stopping: CancellationToken) {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = GracefulShutdown::new();
    let mut incoming = TcpListenerStream::new(listener);
    while let Some(stream) = next_connection(&mut incoming, &stopping).await {
        let service = TowerToHyperService::new(router.clone());
        let connection = connections.watch(http1.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
    drop(incoming);
    connections.shutdown().await;
}
