//! OpenTelemetry traces, exported over OTLP only when an endpoint is set
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
//! the other standard OTEL_* variables tune the exporter, the sampler, the
//! batching and the resource.
//!
//! Spans are `tracing` spans with the target [`TARGET`]: the OpenTelemetry
//! layer sees only those, and the log output never does. With traces off
//! nothing listens to that target, so each span costs a disabled check.

use std::env;

use bytes::Bytes;
use opentelemetry::global;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::{Layer, Registry};

/// The `tracing` target of every span and span event meant for traces.
pub const TARGET: &str = "verif8::otel";

const SERVICE_NAME: &str = "verif8-grpc";

/// How spans leave the process (`OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Traces were asked for with a value this build can't honour.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value}: {expected}")]
pub struct TracesConfigError {
    variable: &'static str,
    value: String,
    expected: &'static str,
}

/// Reads what the OTEL_* variables ask for: None when traces are off (no
/// endpoint, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`).
pub fn protocol_from_env() -> Result<Option<Protocol>, TracesConfigError> {
    let var = |name: &str| env::var(name).ok().filter(|value| !value.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(TracesConfigError {
                variable: "OTEL_TRACES_EXPORTER",
                value: other.to_owned(),
                expected: "this build exports traces with otlp only (or none)",
            });
        }
    }
    if let Some(propagators) = var("OTEL_PROPAGATORS") {
        let known = ["tracecontext", "baggage", "none"];
        if propagators.split(',').any(|p| !known.contains(&p.trim())) {
            return Err(TracesConfigError {
                variable: "OTEL_PROPAGATORS",
                value: propagators,
                expected: "this build propagates tracecontext and baggage only",
            });
        }
    }
    if var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        && var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    let (variable, value) = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
        Some(value) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value),
        None => (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            var("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_default(),
        ),
    };
    // The specification's default is http/protobuf.
    match value.trim() {
        "" | "http/protobuf" => Ok(Some(Protocol::HttpProtobuf)),
        "grpc" => Ok(Some(Protocol::Grpc)),
        other => Err(TracesConfigError {
            variable,
            value: other.to_owned(),
            expected: "expected grpc or http/protobuf",
        }),
    }
}

/// The exporting pipeline; [`Traces::shutdown`] sends what is still queued.
pub struct Traces {
    provider: SdkTracerProvider,
}

pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Builds the exporter (inside the tokio runtime: both transports run their
/// requests on it) and the layer that turns our spans into OpenTelemetry's.
pub fn start(
    protocol: Protocol,
) -> Result<(Traces, BoxedLayer), Box<dyn std::error::Error + Send + Sync>> {
    let exporter = match protocol {
        Protocol::Grpc => SpanExporter::builder().with_tonic().build()?,
        Protocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(ExportClient::new()?)
            .build()?,
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    global::set_text_map_propagator(propagator());
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SERVICE_NAME))
        // Attributes are the semantic conventions' and ours, nothing more.
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target(TARGET, LevelFilter::TRACE));
    Ok((Traces { provider }, Box::new(layer)))
}

impl Traces {
    /// Exports what is queued; blocks, so call it off the runtime's workers.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "flushing traces at shutdown failed");
        }
    }
}

/// `service.name` is ours unless OTEL_SERVICE_NAME or
/// OTEL_RESOURCE_ATTRIBUTES name another.
fn resource() -> Resource {
    let mut resource = Resource::builder_empty()
        .with_service_name(SERVICE_NAME)
        .with_detectors(&[
            Box::new(TelemetryResourceDetector),
            Box::new(EnvResourceDetector::new()),
        ]);
    if let Ok(name) = env::var("OTEL_SERVICE_NAME")
        && !name.trim().is_empty()
    {
        resource = resource.with_service_name(name);
    }
    resource.build()
}

fn propagator() -> TextMapCompositePropagator {
    let wanted = env::var("OTEL_PROPAGATORS").unwrap_or_else(|_| "tracecontext,baggage".into());
    let mut propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    for name in wanted.split(',').map(str::trim) {
        match name {
            "tracecontext" => propagators.push(Box::new(TraceContextPropagator::new())),
            "baggage" => propagators.push(Box::new(BaggagePropagator::new())),
            _ => {}
        }
    }
    TextMapCompositePropagator::new(propagators)
}

/// Makes `span` the child of the trace the caller's headers carry
/// (`traceparent`); without one it stays a root.
pub fn continue_from(span: &tracing::Span, headers: &http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Writes `span`'s context into outgoing headers, so the next hop joins the trace.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    global::get_text_map_propagator(|p| p.inject_context(&context, &mut HeaderInjector(headers)));
}

/// The span context of the current span (invalid with traces off), for
/// linking later work to what started it.
pub fn current_span_context() -> SpanContext {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return SpanContext::NONE;
    }
    span.context().span().span_context().clone()
}

/// Links `span` to `to`, when `to` is a real span.
pub fn link(span: &tracing::Span, to: &SpanContext) {
    if to.is_valid() && !span.is_disabled() {
        span.add_link(to.clone());
    }
}

/// A gRPC status code as the RPC conventions spell it (`DEADLINE_EXCEEDED`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Whether a server span ending with `code` failed, per the gRPC
/// conventions: the caller's own mistakes (NOT_FOUND, INVALID_ARGUMENT…)
/// are not the server's errors.
pub fn is_server_error(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

/// OTLP over HTTP on reqwest 0.12, the version the rest of the service
/// uses (opentelemetry-http's own client feature would add reqwest 0.13
/// and a second TLS stack). The batch exporter calls from its own thread,
/// so each request runs on our runtime.
#[derive(Debug)]
struct ExportClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// OTLP's default export timeout.
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl ExportClient {
    fn new() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ExportClient {
            http: reqwest::Client::builder()
                .use_rustls_tls()
                .timeout(EXPORT_TIMEOUT)
                .build()?,
            runtime: tokio::runtime::Handle::try_current()?,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.http.clone();
        let exchange = async move {
            let response = client.execute(request).await?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(response.headers().clone());
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        };
        self.runtime.spawn(exchange).await?
    }
}
