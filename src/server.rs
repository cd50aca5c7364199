//! Wiring: the gRPC services (ours, health, reflection) on tonic's server, the HTTP listener for metrics
//! and callback hints, and an orderly shutdown.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::auth::Callers;
use crate::cluster::{Cluster, Messages};
use crate::grpc::{Guards, SandboxApi, VerificationApi};
use crate::http_listener::{self, callbacks::CallbackTokens};
use crate::idempotency::IdempotencyStore;
use crate::pb;
use crate::pb::v1::sandbox_service_server::SandboxServiceServer;
use crate::pb::v1::verification_service_server::VerificationServiceServer;
use crate::protection::{Protection, ProtectionConfig};
use crate::sandbox::RunningSandbox;
use crate::transport::{self, MAX_MESSAGE_BYTES};
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
    /// WatchSession streams one `--callers-file` caller may hold open.
    pub max_watch_streams_per_caller: usize,
    /// RPCs handled at once; more are shed with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// How long in-flight calls may finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Where StartVerification answers are kept by request_id.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Send limits, failed-check limit, countries.
    pub protection: ProtectionConfig,
    /// Set with `--tls-cert`/`--tls-key` (and `--tls-client-ca` for mTLS).
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Set with `--callers-file`: who may call, with which subaccounts and scopes.
    pub callers: Option<Arc<Callers>>,
    /// Set with `--redis-url`: what replicas share.
    pub cluster: Option<(Arc<Cluster>, Messages)>,
}

/// The health service name that reports whether Redis answers.
pub const REDIS_HEALTH: &str = "verif8.redis";

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves gRPC on `grpc`, and the HTTP side on `http` when given, until
/// `shutdown` completes.
pub async fn serve(
    grpc: TcpListener,
    http: Option<TcpListener>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let configured = configured_subaccounts(&options);
    let upstream = UpstreamClient::new(options.upstream.clone())?;
    let cluster = options.cluster.as_ref().map(|(cluster, _)| cluster.clone());
    let hub = Hub::new(upstream.clone(), options.watch, options.cluster);
    let callbacks = options
        .public_url
        .map(|url| Arc::new(CallbackTokens::new(url, cluster.clone())));
    let api = VerificationApi::new(
        upstream,
        options.default_subaccount,
        hub.clone(),
        callbacks.clone(),
        options.idempotency,
        Guards {
            protection: Arc::new(Protection::new(options.protection, cluster.clone())),
            configured_subaccounts: configured,
            max_watch_streams_per_caller: options.max_watch_streams_per_caller,
        },
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<VerificationServiceServer<Arc<VerificationApi>>>()
        .await;
    if let Some(cluster) = &cluster {
        tokio::spawn(report_redis_health(cluster.up_changes(), health.clone()));
    }

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
            hub.shutdown().await;
            stopping.cancel();
        });
    }

    let http_server = http.map(|listener| {
        let router = http_listener::router(callbacks, hub.clone());
        tokio::spawn(http_listener::serve(listener, router, stopping.clone()))
    });

    let router = transport::server(options.max_in_flight, options.callers, options.tls)?
        .add_service(
            VerificationServiceServer::new(api).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_optional_service(sandbox_service);
    // On `stopping` tonic stops accepting at once and lets open connections
    // finish their calls; the grace period bounds how long that may take.
    let mut serving = tokio::spawn(transport::serve(router, grpc, stopping.clone()));
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

/// The subaccounts the operator named: the keys file's, the default, the
/// callers'. Empty when none is named (a single key for any subaccount).
fn configured_subaccounts(options: &ServerOptions) -> HashSet<String> {
    let keys = options.upstream.keys.per_subaccount.keys().cloned();
    let default = options.default_subaccount.iter().cloned();
    let callers = options
        .callers
        .iter()
        .flat_map(|callers| callers.subaccounts().map(str::to_owned));
    keys.chain(default).chain(callers).collect()
}

/// Mirrors whether Redis answers into the health service `verif8.redis`;
/// the replica itself stays SERVING (it degrades, it doesn't stop).
async fn report_redis_health(
    mut up: tokio::sync::watch::Receiver<bool>,
    health: tonic_health::server::HealthReporter,
) {
    loop {
        let status = match *up.borrow_and_update() {
            true => tonic_health::ServingStatus::Serving,
            false => tonic_health::ServingStatus::NotServing,
        };
        health.set_service_status(REDIS_HEALTH, status).await;
        if up.changed().await.is_err() {
            return;
        }
    }
}
