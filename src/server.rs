//! Wiring: the gRPC services (ours, health, reflection) on tonic's server, the HTTP listener for metrics
//! and callback hints, and an orderly shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::api::{SandboxApi, VerificationApi};
use crate::callbacks::{self, CallbackTokens};
use crate::idempotency::IdempotencyStore;
use crate::pb;
use crate::pb::v1::sandbox_service_server::SandboxServiceServer;
use crate::pb::v1::verification_service_server::VerificationServiceServer;
use crate::sandbox::RunningSandbox;
use crate::upstream::{UpstreamClient, UpstreamConfig};
use crate::watch::{Hub, WatchConfig};

pub struct ServerOptions {
    pub upstream: UpstreamConfig,
    pub default_subaccount: Option<String>,
    pub watch: WatchConfig,
    /// Base URL at which 8x8 reaches the HTTP listener; enables callback hints.
    pub public_url: Option<Url>,
    /// Set when the upstream is the embedded sandbox: SandboxService reads its outbox.
    pub sandbox: Option<Arc<RunningSandbox>>,
    /// RPCs handled at once; more are shed with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// How long in-flight calls may finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Where StartVerification answers are kept by request_id.
    pub idempotency: Arc<dyn IdempotencyStore>,
}

// HTTP/2 settings, chosen for a service behind a mesh or load balancer:
// keepalive pings find dead peers behind NATs and idle-timeout proxies; a
// maximum connection age makes clients reconnect now and then, so new
// replicas get traffic; many streams per connection leave room for
// long-lived WatchSession streams; small messages are all this API needs.
const MAX_CONCURRENT_STREAMS: u32 = 4096;
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);
const MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(60);
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves gRPC on `grpc`, and the HTTP side on `http` when given, until
/// `shutdown` completes.
pub async fn serve(
    grpc: TcpListener,
    http: Option<TcpListener>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let upstream = UpstreamClient::new(options.upstream.clone())?;
    let hub = Hub::new(upstream.clone(), options.watch);
    let callbacks = options
        .public_url
        .map(|url| Arc::new(CallbackTokens::new(url)));
    let api = VerificationApi::new(
        upstream,
        options.default_subaccount,
        hub.clone(),
        callbacks.clone(),
        options.max_in_flight,
        options.idempotency,
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<VerificationServiceServer<Arc<VerificationApi>>>()
        .await;

    // Reflection lists what this replica serves: SandboxService is in the
    // descriptors either way but only served in sandbox mode.
    let mut served = vec![
        pb::v1::verification_service_server::SERVICE_NAME,
        tonic_health::pb::health_server::SERVICE_NAME,
    ];
    if options.sandbox.is_some() {
        served.push(pb::v1::sandbox_service_server::SERVICE_NAME);
    }
    let reflection = |own_name: &'static str| {
        served.iter().chain([&own_name]).fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET),
            |builder, name| builder.with_service_name(*name),
        )
    };
    let reflection_v1 =
        reflection(tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME).build_v1()?;
    let reflection_v1alpha =
        reflection(tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME)
            .build_v1alpha()?;

    let sandbox_service = options.sandbox.map(|sandbox| {
        SandboxServiceServer::new(SandboxApi::new(sandbox))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    });
    if sandbox_service.is_some() {
        health
            .set_serving::<SandboxServiceServer<SandboxApi>>()
            .await;
    }

    let stopping = CancellationToken::new();
    {
        let stopping = stopping.clone();
        let hub = hub.clone();
        let health = health.clone();
        tokio::spawn(async move {
            shutdown.await;
            // Tell the mesh first, then end watch streams so clients reconnect elsewhere.
            health
                .set_not_serving::<VerificationServiceServer<Arc<VerificationApi>>>()
                .await;
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            hub.shutdown();
            stopping.cancel();
        });
    }

    let http_server = http.map(|listener| {
        let router = match &callbacks {
            Some(tokens) => callbacks::router(tokens.clone(), hub.clone()),
            None => axum::Router::new(),
        }
        .route(
            "/metrics",
            axum::routing::get(|| async { crate::metrics::render() }),
        );
        let stopping = stopping.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopping.cancelled_owned())
                .await
        })
    });

    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(MAX_CONNECTION_AGE_GRACE)
        // hyper's limit on streams reset for a peer's protocol errors
        // (RUSTSEC-2024-0003); tonic passes none by default.
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .add_service(
            VerificationServiceServer::new(api).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_optional_service(sandbox_service);
    let incoming = tonic::transport::server::TcpIncoming::from(grpc)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE));
    // On `stopping` tonic stops accepting at once and lets open connections
    // finish their calls; the grace period bounds how long that may take.
    let mut serving = tokio::spawn(
        server.serve_with_incoming_shutdown(incoming, stopping.clone().cancelled_owned()),
    );
    tokio::select! {
        served = &mut serving => return Ok(served??),
        _ = stopping.cancelled() => {}
    }
    tokio::select! {
        served = &mut serving => served??,
        _ = tokio::time::sleep(options.shutdown_grace) => {
            tracing::warn!("shutdown grace period over with calls still in flight");
            serving.abort();
        }
    }
    if let Some(http_server) = http_server {
        http_server.abort();
    }
    Ok(())
}
