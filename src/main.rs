//! `verif8-grpc`: parse the configuration, start, wait for a signal.

use std::sync::Arc;

use clap::Parser;
use secrecy::SecretString;
use tokio::net::TcpListener;

use verif8_grpc::cluster::Cluster;
use verif8_grpc::config::{Cli, Command, UpstreamChoice};
use verif8_grpc::idempotency::{IdempotencyStore, MemoryStore, RedisStore};
use verif8_grpc::protection::Number;
use verif8_grpc::sandbox::{Sandbox, SandboxConfig};
use verif8_grpc::server::{self, BoxError, ServerOptions};
use verif8_grpc::telemetry::{logs, traces};
use verif8_grpc::upstream::{ApiKeys, UpstreamConfig};

/// Subaccount assumed in sandbox mode when none is configured, so a newcomer
/// can leave subaccount_id empty.
const SANDBOX_SUBACCOUNT: &str = "sandbox_verif8";

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    // Read before anything starts: a variable this build can't honour stops it.
    let traces_protocol = traces::protocol_from_env().map_err(|error| error.to_string())?;
    // An explicit worker count: tokio would otherwise read
    // TOKIO_WORKER_THREADS and panic on a malformed value.
    let workers = cli.worker_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.get())
        .enable_all()
        .build()?;
    let (traces, traces_layer) = match traces_protocol {
        Some(protocol) => {
            let _inside = runtime.enter();
            let (traces, layer) = traces::start(protocol)?;
            (Some(traces), Some(layer))
        }
        None => (None, None),
    };
    let _flush_logs_on_exit = logs::init(cli.log_format, traces_layer);
    if let Some(protocol) = traces_protocol {
        tracing::info!(?protocol, "exporting traces over OTLP");
    }
    let outcome = match cli.command {
        Some(Command::Sandbox(args)) => runtime.block_on(run_sandbox(args)),
        None => runtime.block_on(serve(cli.serve)),
    };
    // The exporter's last batch goes out on the runtime, which is still up.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    outcome
}

async fn run_sandbox(args: verif8_grpc::config::SandboxArgs) -> Result<(), BoxError> {
    let listener = TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "8x8 sandbox serving");
    let config = SandboxConfig {
        api_key: args.api_key,
        public_url: None,
        latency: args.latency,
    };
    verif8_grpc::sandbox::serve(listener, config, shutdown_signal()).await?;
    Ok(())
}

async fn serve(args: verif8_grpc::config::ServeArgs) -> Result<(), BoxError> {
    let choice = args.upstream()?;
    let real_account = matches!(choice, UpstreamChoice::Remote { .. });
    let callers = args.callers(real_account)?.map(Arc::new);
    let protection = args.protection()?;
    let tls = args.tls()?;
    // A malformed URL stops start-up here; an unreachable Redis doesn't.
    let cluster = match args.redis_url.as_deref() {
        Some(url) => {
            let (cluster, messages) = Cluster::connect(url, args.redis_timeout)?;
            tracing::info!("sharing state with other replicas through redis");
            Some((cluster, messages))
        }
        None => None,
    };
    let (upstream, sandbox, default_subaccount) = match choice {
        UpstreamChoice::EmbeddedSandbox => {
            let api_key = uuid::Uuid::new_v4().simple().to_string();
            let sandbox = Sandbox::spawn(
                args.sandbox_listen,
                SandboxConfig {
                    api_key: api_key.clone(),
                    public_url: None,
                    latency: std::time::Duration::ZERO,
                },
            )
            .await?;
            tracing::warn!(
                sandbox = %sandbox.base_url,
                "no 8x8 API key configured: SANDBOX MODE, nothing reaches real phones; read codes with verif8.v1.SandboxService/ListMessages"
            );
            let upstream = UpstreamConfig {
                base_url: sandbox.base_url.parse()?,
                keys: ApiKeys::single(SecretString::from(api_key)),
                timeout: args.upstream_timeout,
            };
            let subaccount = args
                .subaccount
                .clone()
                .unwrap_or_else(|| SANDBOX_SUBACCOUNT.to_owned());
            (upstream, Some(Arc::new(sandbox)), Some(subaccount))
        }
        UpstreamChoice::Remote { base_url, keys } => {
            tracing::info!(upstream = %base_url, keys = ?keys, "8x8 upstream");
            let upstream = UpstreamConfig {
                base_url,
                keys,
                timeout: args.upstream_timeout,
            };
            (upstream, None, args.subaccount.clone())
        }
    };
    // In the background: health says SERVING without waiting for it, and a
    // start arriving sooner waits for the load instead of repeating it.
    tokio::task::spawn_blocking(Number::load_data);
    let listener = TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "verif8-grpc serving gRPC");
    let http = match args.http_listen {
        Some(addr) => {
            let http = TcpListener::bind(addr).await?;
            tracing::info!(listen = %http.local_addr()?, "HTTP listener (/metrics, callback hints)");
            Some(http)
        }
        None => None,
    };
    let idempotency: Arc<dyn IdempotencyStore> = match &cluster {
        // An unanswered claim outlives any start, so a duplicate never goes
        // ahead while the first may still be sending.
        Some((cluster, _)) => Arc::new(RedisStore::new(
            cluster.clone(),
            args.idempotency_ttl,
            (args.upstream_timeout * 3).max(std::time::Duration::from_secs(30)),
        )),
        None => Arc::new(MemoryStore::new(
            args.idempotency_ttl,
            args.idempotency_capacity,
        )),
    };
    let options = ServerOptions {
        upstream,
        default_subaccount,
        watch: args.watch_config()?,
        public_url: args.public_url.clone(),
        sandbox,
        max_in_flight: args.max_in_flight,
        max_watch_streams_per_caller: args.max_watch_streams_per_caller,
        shutdown_grace: args.shutdown_grace,
        idempotency,
        callers,
        cluster,
        protection,
        tls,
    };
    server::serve(listener, http, options, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown signal received");
}
