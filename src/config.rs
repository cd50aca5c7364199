//! Command line and environment: every flag has an env var, `--help` explains it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use url::Url;

use std::collections::HashSet;
use std::sync::Arc;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth::Callers;
use crate::protection::{
    CountryRules, DEFAULT_DESTINATION_LIMIT, LimitKey, Number, ProtectionConfig, Rate, SendLimit,
};
use crate::upstream::{ApiKeys, Region};
use crate::watch::{PollSchedule, WatchConfig};

#[derive(Debug, Parser)]
#[command(
    name = "verif8-grpc",
    version,
    about = "gRPC facade for the 8x8 Verification API v2 (Verif8). Without an API key it serves against an embedded sandbox that simulates 8x8."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Log format.
    #[arg(long, env = "VERIF8_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,
    /// Threads serving gRPC connections (for `sandbox`: tokio worker
    /// threads). Default: one per CPU available to the process. Where the
    /// service shares a small host with busy neighbours, set the CPUs it can
    /// count on.
    #[arg(long, env = "VERIF8_WORKER_THREADS", global = true)]
    pub worker_threads: Option<std::num::NonZeroUsize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run only the simulated 8x8 REST API (for tests, benchmarks and demos).
    Sandbox(SandboxArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the gRPC server listens on.
    #[arg(long, env = "VERIF8_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// 8x8 base URL; overrides --region (e.g. a standalone sandbox).
    #[arg(long, env = "VERIF8_UPSTREAM_URL")]
    pub upstream_url: Option<Url>,

    /// 8x8 region of the account: apac (https://verify.8x8.com, when none is
    /// given), us, eu or id. Needs an API key.
    #[arg(long, env = "VERIF8_REGION", value_enum)]
    pub region: Option<Region>,

    /// Serve against the embedded sandbox; refused together with an upstream
    /// setting (key, region or URL), which would make it ambiguous.
    #[arg(long, env = "VERIF8_SANDBOX")]
    pub sandbox: bool,

    /// Subaccount used when a request leaves subaccount_id empty.
    #[arg(long, env = "VERIF8_SUBACCOUNT")]
    pub subaccount: Option<String>,

    /// 8x8 API key (Bearer token). Without any key the embedded sandbox is used.
    /// Prefer the environment variable or --api-key-file: a flag shows in `ps`.
    #[arg(long, env = "VERIF8_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// File of API keys: a bare `key` line for the default and `subaccount=key`
    /// lines for per-subaccount keys; `#` starts a comment.
    #[arg(long, env = "VERIF8_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Longest wait for one 8x8 call, e.g. 10s or 500ms.
    #[arg(long, env = "VERIF8_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,

    /// Address of the HTTP listener (/metrics, callback hints). Unset: no HTTP listener.
    #[arg(long, env = "VERIF8_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// Public base URL of the HTTP listener as 8x8 reaches it, e.g.
    /// https://verif8.example.com. Set, StartVerification calls without their
    /// own callback_url get a per-session callback URL here, and 8x8's
    /// callbacks make watchers see changes before the next poll.
    #[arg(long, env = "VERIF8_PUBLIC_URL", requires = "http_listen")]
    pub public_url: Option<Url>,

    /// Upstream polls per second per subaccount for WatchSession, never exceeded;
    /// with many watched sessions each one's interval stretches.
    #[arg(long, env = "VERIF8_POLL_BUDGET", default_value_t = 20.0)]
    pub poll_budget: f64,

    /// Poll interval of a freshly watched session.
    #[arg(long, env = "VERIF8_POLL_MIN_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll_min_interval: Duration,

    /// Poll interval an older session slows down to.
    #[arg(long, env = "VERIF8_POLL_MAX_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll_max_interval: Duration,

    /// How long 8x8 may stay unreachable before watch streams end UNAVAILABLE.
    #[arg(long, env = "VERIF8_WATCH_UNREACHABLE_WINDOW", default_value = "30s", value_parser = humantime::parse_duration)]
    pub watch_unreachable_window: Duration,

    /// Most WatchSession streams open at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "VERIF8_MAX_WATCH_STREAMS", default_value_t = 100_000)]
    pub max_watch_streams: usize,

    /// WatchSession streams one --callers-file caller may hold open; more
    /// get RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "VERIF8_MAX_WATCH_STREAMS_PER_CALLER",
        default_value_t = 10_000
    )]
    pub max_watch_streams_per_caller: usize,

    /// Unary RPCs handled at once; beyond it calls are shed with RESOURCE_EXHAUSTED
    /// (reason OVERLOADED) instead of queueing.
    #[arg(long, env = "VERIF8_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// After SIGTERM/SIGINT: how long in-flight calls may take to finish.
    #[arg(long, env = "VERIF8_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How long a StartVerification answer is kept for retries with its request_id.
    #[arg(long, env = "VERIF8_IDEMPOTENCY_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub idempotency_ttl: Duration,

    /// Most request_ids remembered at once; the oldest answers go first.
    #[arg(long, env = "VERIF8_IDEMPOTENCY_CAPACITY", default_value_t = 100_000)]
    pub idempotency_capacity: usize,

    /// TOML file of the callers allowed in: one `[[caller]]` table each with
    /// `name`, `token_sha256` (hex SHA-256 of its bearer token),
    /// `subaccounts` and `scopes` (`start`, `check`, `read`).
    #[arg(long, env = "VERIF8_CALLERS_FILE")]
    pub callers_file: Option<PathBuf>,

    /// Serve a real 8x8 account on a non-loopback address without a callers
    /// file: anyone who reaches the port can send SMS billed to it.
    #[arg(long, env = "VERIF8_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// A send limit, KEY=COUNT/WINDOW with KEY destination, client_ip (when
    /// the request carries one) or caller; repeatable. Unless a destination
    /// limit is given, destination=5/10m applies.
    #[arg(long = "send-limit", env = "VERIF8_SEND_LIMITS", value_delimiter = ' ')]
    pub send_limits: Vec<SendLimit>,

    /// Comma-separated E.164 numbers no limit applies to (test phones, monitoring).
    #[arg(long, env = "VERIF8_SAFE_DESTINATIONS", value_delimiter = ',')]
    pub safe_destinations: Vec<String>,

    /// Count and log what the limits and country rules would refuse, refuse nothing.
    #[arg(long, env = "VERIF8_LIMITS_SHADOW")]
    pub limits_shadow: bool,

    /// Wrong codes per destination (across re-sends) before CheckCode and
    /// StartVerification for it are refused, COUNT/WINDOW.
    #[arg(long, env = "VERIF8_FAILED_CHECK_LIMIT", default_value = "10/1h")]
    pub failed_check_limit: Rate,

    /// Countries a channel may send to, CHANNEL=CC,CC (channel sms, call,
    /// whatsapp, viber, sma or *; ISO 3166 alpha-2 codes); repeatable. A
    /// channel no rule names goes anywhere.
    #[arg(
        long = "allow-countries",
        env = "VERIF8_ALLOW_COUNTRIES",
        value_delimiter = ' '
    )]
    pub allow_countries: Vec<String>,

    /// PEM certificate chain: serve gRPC over TLS (plaintext by default,
    /// for a sidecar that terminates TLS).
    #[arg(long, env = "VERIF8_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "VERIF8_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates: callers must present a client certificate they
    /// signed (mTLS).
    #[arg(long, env = "VERIF8_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Redis shared by several replicas, e.g. redis://127.0.0.1:6379/0
    /// (rediss:// for TLS): idempotency, one poller per watched session,
    /// callback hints and the poll budget across all of them. Unset, each
    /// replica keeps everything in memory.
    #[arg(long, env = "VERIF8_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Longest wait for one Redis command; past it the command counts as failed.
    #[arg(long, env = "VERIF8_REDIS_TIMEOUT", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,

    /// Where the embedded sandbox listens (sandbox mode only); port 0 picks one.
    #[arg(long, env = "VERIF8_SANDBOX_LISTEN", default_value = "127.0.0.1:0")]
    pub sandbox_listen: SocketAddr,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address the sandbox's HTTP API listens on.
    #[arg(long, env = "VERIF8_SANDBOX_LISTEN", default_value = "127.0.0.1:8088")]
    pub listen: SocketAddr,

    /// Bearer token the sandbox accepts.
    #[arg(
        long,
        env = "VERIF8_SANDBOX_API_KEY",
        default_value = "sandbox-key",
        hide_env_values = true
    )]
    pub api_key: String,

    /// Delay added before every /api/ answer, e.g. 50ms for a real region's distance.
    #[arg(long, env = "VERIF8_SANDBOX_LATENCY", value_parser = humantime::parse_duration, default_value = "0s")]
    pub latency: std::time::Duration,
}

impl ServeArgs {
    pub fn watch_config(&self) -> Result<WatchConfig, String> {
        if !(self.poll_budget > 0.0 && self.poll_budget.is_finite()) {
            return Err("--poll-budget must be a positive number of polls per second".into());
        }
        if self.poll_min_interval.is_zero() || self.poll_max_interval < self.poll_min_interval {
            return Err("poll intervals must be positive with min <= max".into());
        }
        Ok(WatchConfig {
            schedule: PollSchedule {
                min_interval: self.poll_min_interval,
                max_interval: self.poll_max_interval,
                jitter: 0.2,
            },
            poll_budget_per_second: self.poll_budget,
            unreachable_window: self.watch_unreachable_window,
            max_streams: self.max_watch_streams,
        })
    }
}

/// Which 8x8 the facade talks to.
pub enum UpstreamChoice {
    /// No key configured: an in-process sandbox.
    EmbeddedSandbox,
    Remote {
        base_url: Url,
        keys: ApiKeys,
    },
}

impl ServeArgs {
    pub fn protection(&self) -> Result<ProtectionConfig, String> {
        let mut send_limits = self.send_limits.clone();
        if !send_limits
            .iter()
            .any(|limit| limit.key == LimitKey::Destination)
        {
            send_limits.insert(0, DEFAULT_DESTINATION_LIMIT);
        }
        let mut safe_destinations = HashSet::new();
        for given in self
            .safe_destinations
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
        {
            let number = Number::parse(given, None);
            if number.country.is_none() {
                return Err(format!(
                    "--safe-destinations: {given:?} is not an international number like +6591234567"
                ));
            }
            safe_destinations.insert(number.e164);
        }
        Ok(ProtectionConfig {
            send_limits,
            failed_check_limit: self.failed_check_limit,
            safe_destinations,
            shadow: self.limits_shadow,
            countries: Arc::new(CountryRules::parse(&self.allow_countries)?),
        })
    }

    /// TLS for the gRPC listener, from the PEM files.
    pub fn tls(&self) -> Result<Option<ServerTlsConfig>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &self.tls_client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(Some(tls))
    }

    /// The callers file, read and checked; `real_account` says whether a
    /// real 8x8 key is configured (the sandbox costs nothing).
    pub fn callers(&self, real_account: bool) -> Result<Option<Callers>, String> {
        let Some(path) = &self.callers_file else {
            if real_account && !self.listen.ip().is_loopback() && !self.allow_unauthenticated {
                return Err(format!(
                    "--listen {} is reachable from other hosts and no --callers-file is set: \
                     anyone reaching it could send SMS billed to the 8x8 account. Give a \
                     callers file (VERIF8_CALLERS_FILE), listen on loopback behind a sidecar, \
                     or pass --allow-unauthenticated if the network already decides who calls",
                    self.listen
                ));
            }
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Callers::parse(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn upstream(&self) -> Result<UpstreamChoice, String> {
        let mut keys = match &self.api_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                ApiKeys::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => ApiKeys::default(),
        };
        if let Some(key) = self.api_key.as_deref() {
            if key.trim().is_empty() {
                return Err(
                    "VERIF8_API_KEY (--api-key) is set but empty: give the key, or unset \
                            it to run against the embedded sandbox"
                        .into(),
                );
            }
            keys.default = Some(SecretString::from(key.trim()));
        }
        let upstream_named = self.upstream_url.is_some() || self.region.is_some();
        if self.sandbox {
            if upstream_named || !keys.is_empty() {
                return Err(
                    "--sandbox (VERIF8_SANDBOX) is set together with an 8x8 API key, \
                            region or upstream URL: keep one or the other"
                        .into(),
                );
            }
            return Ok(UpstreamChoice::EmbeddedSandbox);
        }
        match (upstream_named, keys.is_empty()) {
            (false, true) => Ok(UpstreamChoice::EmbeddedSandbox),
            (true, true) => Err(
                "--upstream-url or --region is set but no API key is: give one \
                                 (VERIF8_API_KEY or --api-key-file), or unset them to run \
                                 against the embedded sandbox"
                    .into(),
            ),
            (_, false) => Ok(UpstreamChoice::Remote {
                base_url: self
                    .upstream_url
                    .clone()
                    .unwrap_or_else(|| self.region.unwrap_or(Region::Apac).base_url()),
                keys,
            }),
        }
    }
}
