//! Prometheus metrics, served at `/metrics` on the HTTP listener. One
//! process-wide registry: every part of the service records into it.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
    /// The `--callers-file` name (operator-chosen, so bounded); empty without one.
    caller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    endpoint: &'static str,
    /// HTTP status, or "error" when no answer came.
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabel {
    change: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 100 µs to ~13 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

struct Metrics {
    registry: Registry,
    rpcs: Family<RpcLabels, Counter>,
    rpc_seconds: Histograms<MethodLabel>,
    upstream_calls: Family<UpstreamLabels, Counter>,
    upstream_seconds: Histograms<EndpointLabel>,
    upstream_retries: Family<EndpointLabel, Counter>,
    shed: Counter,
    watch_streams: Gauge,
    polls: Counter,
    started: Family<ChannelLabel, Counter>,
    verified: Family<ChannelLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    redis_up: Gauge,
    redis_calls: Family<OutcomeLabel, Counter>,
    redis_seconds: Histogram,
    cluster_messages: Family<DirectionLabel, Counter>,
    lease_changes: Family<ChangeLabel, Counter>,
    /// Channel of each session started here and not yet seen VERIFIED.
    pending_channels: Mutex<HashMap<String, &'static str>>,
}

/// Sessions remembered for the conversion count; when it is reached all are
/// forgotten at once (a bound on memory; those sessions' VERIFIED goes uncounted).
const PENDING_CAPACITY: usize = 100_000;

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("verif8");
    let r = &mut registry;
    Metrics {
        rpcs: registered(
            r,
            "rpcs",
            "RPCs answered, by method and gRPC code",
            Family::default(),
        ),
        rpc_seconds: registered(
            r,
            "rpc_seconds",
            "RPC latency",
            Family::new_with_constructor(latency_histogram),
        ),
        upstream_calls: registered(
            r,
            "upstream_calls",
            "Calls to 8x8, by endpoint and HTTP status",
            Family::default(),
        ),
        upstream_seconds: registered(
            r,
            "upstream_seconds",
            "8x8 call latency",
            Family::new_with_constructor(latency_histogram),
        ),
        upstream_retries: registered(
            r,
            "upstream_retries",
            "Retried 8x8 calls",
            Family::default(),
        ),
        shed: registered(
            r,
            "shed",
            "RPCs shed past the in-flight limit",
            Counter::default(),
        ),
        watch_streams: registered(
            r,
            "watch_streams",
            "Open WatchSession streams",
            Gauge::default(),
        ),
        polls: registered(
            r,
            "polls",
            "Status polls of watched sessions",
            Counter::default(),
        ),
        started: registered(
            r,
            "verifications_started",
            "Verifications started, by channel",
            Family::default(),
        ),
        verified: registered(
            r,
            "verifications_verified",
            "Verifications started here and seen VERIFIED, by channel",
            Family::default(),
        ),
        refused: registered(
            r,
            "refused",
            "Calls refused to protect the account (nothing sent to 8x8), by reason",
            Family::default(),
        ),
        redis_up: registered(
            r,
            "redis_up",
            "1 while Redis (--redis-url) answers pings, else 0",
            Gauge::default(),
        ),
        redis_calls: registered(
            r,
            "redis_calls",
            "Redis commands, by outcome (ok, error)",
            Family::default(),
        ),
        redis_seconds: registered(
            r,
            "redis_seconds",
            "Redis command latency",
            latency_histogram(),
        ),
        cluster_messages: registered(
            r,
            "cluster_messages",
            "Messages between replicas through Redis, by direction (sent, received)",
            Family::default(),
        ),
        lease_changes: registered(
            r,
            "lease_changes",
            "Poller leases of watched sessions, by change (taken, lost, released)",
            Family::default(),
        ),
        pending_channels: Mutex::new(HashMap::new()),
        registry,
    }
});

/// Registers `metric` and hands it back for recording.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// The gRPC code's name as tonic's `Debug` spells it ("Ok", "NotFound"),
/// without formatting a string per RPC.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "Ok",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

pub fn rpc(method: &'static str, code: tonic::Code, caller: Option<&str>, latency: Duration) {
    METRICS
        .rpcs
        .get_or_create(&RpcLabels {
            method,
            code: code_name(code),
            caller: caller.unwrap_or_default().to_owned(),
        })
        .inc();
    METRICS
        .rpc_seconds
        .get_or_create(&MethodLabel { method })
        .observe(latency.as_secs_f64());
}

pub fn upstream_call(endpoint: &'static str, status: Option<u16>, latency: Duration) {
    let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
    METRICS
        .upstream_calls
        .get_or_create(&UpstreamLabels { endpoint, status })
        .inc();
    METRICS
        .upstream_seconds
        .get_or_create(&EndpointLabel { endpoint })
        .observe(latency.as_secs_f64());
}

pub fn upstream_retry(endpoint: &'static str) {
    METRICS
        .upstream_retries
        .get_or_create(&EndpointLabel { endpoint })
        .inc();
}

pub fn shed() {
    METRICS.shed.inc();
}

pub fn poll() {
    METRICS.polls.inc();
}

/// A call refused before anything went to 8x8 (auth, limits, countries).
pub fn refused(reason: &'static str) {
    METRICS.refused.get_or_create(&ReasonLabel { reason }).inc();
}

pub fn redis_up(up: bool) {
    METRICS.redis_up.set(i64::from(up));
}

pub fn redis_call(ok: bool, latency: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    METRICS
        .redis_calls
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
    METRICS.redis_seconds.observe(latency.as_secs_f64());
}

pub fn cluster_message(direction: &'static str) {
    METRICS
        .cluster_messages
        .get_or_create(&DirectionLabel { direction })
        .inc();
}

pub fn lease_change(change: &'static str) {
    METRICS
        .lease_changes
        .get_or_create(&ChangeLabel { change })
        .inc();
}

/// Counts an open watch stream for as long as the guard lives.
pub struct WatchStreamGuard(());

impl WatchStreamGuard {
    pub fn open() -> Self {
        METRICS.watch_streams.inc();
        WatchStreamGuard(())
    }
}

impl Drop for WatchStreamGuard {
    fn drop(&mut self) {
        METRICS.watch_streams.dec();
    }
}

/// A verification started here through `channel`.
pub fn started(session_id: &str, channel: &'static str) {
    METRICS
        .started
        .get_or_create(&ChannelLabel { channel })
        .inc();
    let mut pending = METRICS
        .pending_channels
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if pending.len() >= PENDING_CAPACITY {
        pending.clear();
    }
    pending.insert(session_id.to_owned(), channel);
}

/// A session seen VERIFIED: counted once, under the channel it started with.
pub fn verified(session_id: &str) {
    let channel = METRICS
        .pending_channels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(session_id);
    if let Some(channel) = channel {
        METRICS
            .verified
            .get_or_create(&ChannelLabel { channel })
            .inc();
    }
}

/// The registry in Prometheus' text format.
pub fn render() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry);
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn code_names_match_tonics_debug_spelling() {
        for value in 0..=16 {
            let code = tonic::Code::from_i32(value);
            assert_eq!(super::code_name(code), format!("{code:?}"));
        }
    }
}
