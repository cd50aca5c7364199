//! Wiring: the gRPC router with health, reflection and our services, the
//! HTTP listener for callback hints, and an orderly shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use url::Url;

use crate::api::{SandboxApi, VerificationApi};
use crate::callbacks::{self, CallbackTokens};
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
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves gRPC on `grpc`, and the HTTP side on `http` when given, until
/// `shutdown` completes.
pub async fn serve(
    grpc: TcpListener,
    http: Option<TcpListener>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let upstream = UpstreamClient::new(options.upstream)?;
    let hub = Hub::new(upstream.clone(), options.watch);
    let callbacks = options
        .public_url
        .map(|url| Arc::new(CallbackTokens::new(url)));
    let api = VerificationApi::new(
        upstream,
        options.default_subaccount,
        hub.clone(),
        callbacks.clone(),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<VerificationServiceServer<Arc<VerificationApi>>>()
        .await;

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let sandbox_service = options
        .sandbox
        .map(|sandbox| SandboxServiceServer::new(SandboxApi::new(sandbox)));
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
        };
        let stopping = stopping.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopping.cancelled_owned())
                .await
        })
    });

    Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(VerificationServiceServer::new(api))
        .add_optional_service(sandbox_service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), stopping.cancelled_owned())
        .await?;
    if let Some(http_server) = http_server {
        http_server.await??;
    }
    Ok(())
}
