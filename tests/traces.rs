//! OpenTelemetry traces from the real binary to a real OTLP receiver on
//! loopback (a TraceService server here, or an HTTP endpoint): the caller's
//! traceparent is the parent of our server span, each 8x8 try is a child
//! client span, polls are their own traces linked to the watch, and nothing
//! exported carries a phone number, a code or the API key.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;

use common::cluster::{self, Replica};
use common::{API_KEY, pb};

const DESTINATION: &str = "+6598765432";

/// What the receiver was sent: every span, the resources' service names,
/// and the raw bytes of every export (to search for what must not be there).
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    services: Arc<Mutex<Vec<String>>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Collector {
    fn take(&self, export: ExportTraceServiceRequest) {
        self.raw.lock().unwrap().extend(export.encode_to_vec());
        for resource_spans in export.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            if let Some(name) = string_attr(&resource.attributes, "service.name") {
                self.services.lock().unwrap().push(name);
            }
            for scope in resource_spans.scope_spans {
                self.spans.lock().unwrap().extend(scope.spans);
            }
        }
    }

    /// Waits until `done` holds for the spans received so far.
    async fn until(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let started = Instant::now();
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if done(&spans) {
                return spans;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "never received {what}; got {:#?}",
                summary(&spans)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A gRPC OTLP receiver on an ephemeral port; its endpoint URL.
async fn grpc_receiver(collector: Collector) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    endpoint
}

/// An OTLP/HTTP receiver (protobuf at `/v1/traces`); its endpoint URL.
async fn http_receiver(collector: Collector) -> String {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: bytes::Bytes| async move {
            let export = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
            collector.take(export);
            (
                [("content-type", "application/x-protobuf")],
                ExportTraceServiceResponse {
                    partial_success: None,
                }
                .encode_to_vec(),
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    endpoint
}

async fn replica_exporting(
    sandbox: &verif8_grpc::sandbox::RunningSandbox,
    envs: &[(&str, &str)],
) -> Replica {
    let mut envs = envs.to_vec();
    // Export each batch within 50 ms instead of OTLP's 5 s.
    envs.push(("OTEL_BSP_SCHEDULE_DELAY", "50"));
    Replica::spawn_with(sandbox, &["--poll-min-interval", "1s"], &envs).await
}

fn traced<T>(message: T, trace_id: &str, parent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let header = format!("00-{trace_id}-{parent}-01");
    request
        .metadata_mut()
        .insert("traceparent", MetadataValue::try_from(header).unwrap());
    request
}

fn string_attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        AnyValue::StringValue(text) => Some(text.clone()),
        AnyValue::IntValue(number) => Some(number.to_string()),
        AnyValue::BoolValue(flag) => Some(flag.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    string_attr(&span.attributes, key)
}

fn in_trace<'a>(spans: &'a [Span], trace_id: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|span| hex::encode(&span.trace_id) == trace_id)
        .collect()
}

fn named<'a>(spans: &[&'a Span], name: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .copied()
        .filter(|span| span.name == name)
        .collect()
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|span| span.trace_id == parent.trace_id && span.parent_span_id == parent.span_id)
        .collect()
}

fn summary(spans: &[Span]) -> Vec<String> {
    spans
        .iter()
        .map(|span| {
            format!(
                "{} {} {}",
                hex::encode(&span.trace_id),
                span.name,
                span.kind
            )
        })
        .collect()
}

const TRACE_START: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_WATCH: &str = "5cf92f3577b34da6a3ce929d0e0e4737";
const TRACE_CHECK: &str = "6df92f3577b34da6a3ce929d0e0e4738";
const TRACE_MISSING: &str = "7ef92f3577b34da6a3ce929d0e0e4739";
const TRACE_RETRY: &str = "8ff92f3577b34da6a3ce929d0e0e473a";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

const START: &str = "verif8.v1.VerificationService/StartVerification";
const SESSIONS_POST: &str = "POST /api/v2/subaccounts/{subAccountId}/sessions";
const SESSION_GET: &str = "GET /api/v2/subaccounts/{subAccountId}/sessions/{sessionId}";

/// The server span of `method` in `trace_id`, a child of the caller's span.
fn server_span<'a>(spans: &'a [Span], trace_id: &str, method: &str) -> &'a Span {
    let trace = in_trace(spans, trace_id);
    let found = named(&trace, method);
    assert_eq!(
        found.len(),
        1,
        "one {method} span in {trace_id}: {:#?}",
        summary(spans)
    );
    let span = found[0];
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(hex::encode(&span.parent_span_id), CALLER_SPAN);
    assert_eq!(attr(span, "rpc.system.name").as_deref(), Some("grpc"));
    assert_eq!(attr(span, "rpc.method").as_deref(), Some(method));
    span
}

fn has_span(spans: &[Span], trace_id: &str, name: &str) -> bool {
    !named(&in_trace(spans, trace_id), name).is_empty()
}

#[tokio::test]
async fn a_callers_trace_continues_through_the_service_to_8x8_over_otlp_grpc() {
    let collector = Collector::default();
    let endpoint = grpc_receiver(collector.clone()).await;
    let sandbox = cluster::sandbox(Duration::ZERO).await;
    let replica = replica_exporting(
        &sandbox,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    )
    .await;
    let mut client = replica.client().await;

    // A start: our server span under the caller's, one client span for the POST.
    let start = pb::StartVerificationRequest {
        destination: DESTINATION.into(),
        ..Default::default()
    };
    let session = client
        .start_verification(traced(start, TRACE_START, CALLER_SPAN))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let id = session.session_id.clone();

    // A watch, to VERIFIED by a CheckCode in a trace of its own.
    let watch = pb::WatchSessionRequest {
        session_id: id.clone(),
        ..Default::default()
    };
    let mut stream = client
        .watch_session(traced(watch, TRACE_WATCH, CALLER_SPAN))
        .await
        .unwrap()
        .into_inner();
    let snapshot = stream.next().await.unwrap().unwrap();
    assert_eq!(snapshot.kind, pb::WatchEventKind::Snapshot as i32);
    let code = cluster::code_of(&sandbox, &id).await;
    let check = pb::CheckCodeRequest {
        session_id: id.clone(),
        code: code.clone(),
        ..Default::default()
    };
    let checked = client
        .check_code(traced(check, TRACE_CHECK, CALLER_SPAN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        checked.session.unwrap().status,
        pb::SessionStatus::Verified as i32
    );
    let change = stream.next().await.unwrap().unwrap();
    assert_eq!(change.kind, pb::WatchEventKind::Changed as i32);
    assert!(stream.next().await.is_none(), "the stream ends OK");
    // The poller stopped at VERIFIED: its status reads are all in.
    let status_reads = cluster::upstream_requests(&sandbox)
        .await
        .iter()
        .filter(|r| r["method"] == "GET" && r["query"].is_null())
        .count();

    // An unknown session: NOT_FOUND is the caller's, not a server error.
    let missing = pb::GetSessionRequest {
        session_id: "no-such-session".into(),
        ..Default::default()
    };
    let status = client
        .get_session(traced(missing, TRACE_MISSING, CALLER_SPAN))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // One 503, then the answer: two tries, two client spans.
    let url = format!("{}/_sandbox/faults", sandbox.base_url);
    let fault = json!({"status": 503, "code": 2000, "count": 1});
    let accepted = reqwest::Client::new()
        .post(url)
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(accepted.status().is_success());
    let read = pb::GetSessionRequest {
        session_id: id.clone(),
        ..Default::default()
    };
    client
        .get_session(traced(read, TRACE_RETRY, CALLER_SPAN))
        .await
        .unwrap();

    let spans = collector
        .until("every call's spans", |spans| {
            has_span(spans, TRACE_START, SESSIONS_POST)
                && has_span(
                    spans,
                    TRACE_WATCH,
                    "verif8.v1.VerificationService/WatchSession",
                )
                && has_span(spans, TRACE_CHECK, SESSION_GET)
                && has_span(spans, TRACE_MISSING, SESSION_GET)
                && named(&in_trace(spans, TRACE_RETRY), SESSION_GET).len() == 2
                && spans.iter().any(|span| span.name == "poll session")
        })
        .await;

    // The start.
    let server = server_span(&spans, TRACE_START, START);
    assert_eq!(
        attr(server, "rpc.response.status_code").as_deref(),
        Some("OK")
    );
    assert_eq!(attr(server, "error.type"), None);
    let posts = children(&spans, server);
    assert_eq!(posts.len(), 1, "{:#?}", summary(&spans));
    let post = posts[0];
    assert_eq!(post.kind, SpanKind::Client as i32);
    assert_eq!(post.name, SESSIONS_POST);
    assert_eq!(attr(post, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(
        attr(post, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(post, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(post, "http.request.resend_count"), None);
    // 8x8 got the trace context of that client span, and one POST.
    let requests = cluster::upstream_requests(&sandbox).await;
    let sent: Vec<_> = requests.iter().filter(|r| r["method"] == "POST").collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["traceparent"],
        format!("00-{TRACE_START}-{}-01", hex::encode(&post.span_id))
    );

    // The watch: one span, an event per message pushed, ended OK.
    let watch = server_span(
        &spans,
        TRACE_WATCH,
        "verif8.v1.VerificationService/WatchSession",
    );
    assert_eq!(
        attr(watch, "rpc.response.status_code").as_deref(),
        Some("OK")
    );
    let pushed: Vec<_> = watch
        .events
        .iter()
        .map(|event| {
            (
                event.name.clone(),
                string_attr(&event.attributes, "verif8.watch.kind").unwrap_or_default(),
                string_attr(&event.attributes, "verif8.session.status").unwrap_or_default(),
            )
        })
        .collect();
    let event = |kind: &str, status: &str| {
        (
            "session change pushed".to_owned(),
            kind.to_owned(),
            status.to_owned(),
        )
    };
    assert_eq!(
        pushed,
        [
            event("WATCH_EVENT_KIND_SNAPSHOT", "SESSION_STATUS_WAITING"),
            event("WATCH_EVENT_KIND_CHANGED", "SESSION_STATUS_VERIFIED"),
        ]
    );

    // Polls: each its own trace, linked to the watch, with the GET inside.
    // The poller stopped at VERIFIED; its last span may still be on its way.
    let spans = collector
        .until("one span per poll", |spans| {
            spans
                .iter()
                .filter(|span| span.name == "poll session")
                .count()
                == status_reads
        })
        .await;
    let polls: Vec<_> = spans
        .iter()
        .filter(|span| span.name == "poll session")
        .collect();
    for poll in &polls {
        assert!(poll.parent_span_id.is_empty(), "a poll is a root");
        assert_ne!(hex::encode(&poll.trace_id), TRACE_WATCH);
        assert_eq!(
            attr(poll, "verif8.session_id").as_deref(),
            Some(id.as_str())
        );
        assert_eq!(poll.links.len(), 1);
        assert_eq!(hex::encode(&poll.links[0].trace_id), TRACE_WATCH);
        assert_eq!(poll.links[0].span_id, watch.span_id);
        let gets = children(&spans, poll);
        assert_eq!(gets.len(), 1);
        assert_eq!(gets[0].name, SESSION_GET);
        assert_eq!(
            attr(gets[0], "http.response.status_code").as_deref(),
            Some("200")
        );
    }

    // The check: the code is not in the recorded URL.
    let check = server_span(
        &spans,
        TRACE_CHECK,
        "verif8.v1.VerificationService/CheckCode",
    );
    let get = children(&spans, check);
    assert_eq!(get.len(), 1);
    let url = attr(get[0], "url.full").unwrap();
    assert!(
        url.ends_with(&format!("/sessions/{id}?code=REDACTED")),
        "{url}"
    );

    // NOT_FOUND: 8x8's 404 is the client span's error, not the server's.
    let missing = server_span(
        &spans,
        TRACE_MISSING,
        "verif8.v1.VerificationService/GetSession",
    );
    assert_eq!(
        attr(missing, "rpc.response.status_code").as_deref(),
        Some("NOT_FOUND")
    );
    assert_eq!(attr(missing, "error.type"), None);
    assert_ne!(
        missing.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    let lookup = children(&spans, missing);
    assert_eq!(lookup.len(), 1);
    assert_eq!(
        attr(lookup[0], "http.response.status_code").as_deref(),
        Some("404")
    );
    assert_eq!(attr(lookup[0], "error.type").as_deref(), Some("404"));
    assert_eq!(
        lookup[0].status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );

    // The retry: two tries, the second counted as a resend.
    let retried = server_span(
        &spans,
        TRACE_RETRY,
        "verif8.v1.VerificationService/GetSession",
    );
    let mut tries = children(&spans, retried);
    tries.sort_by_key(|span| span.start_time_unix_nano);
    let outcome: Vec<_> = tries
        .iter()
        .map(|span| {
            (
                attr(span, "http.response.status_code"),
                attr(span, "http.request.resend_count"),
                attr(span, "error.type"),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        [
            (Some("503".into()), None, Some("503".into())),
            (Some("200".into()), Some("1".into()), None),
        ]
    );

    // Nothing exported carries the number, the code or the key.
    let raw = String::from_utf8_lossy(&collector.raw.lock().unwrap()).into_owned();
    for secret in [&DESTINATION[1..], &code, API_KEY] {
        assert!(!raw.contains(secret), "{secret:?} was exported");
    }
    let services = collector.services.lock().unwrap().clone();
    assert!(!services.is_empty());
    assert!(
        services.iter().all(|name| name == "verif8-grpc"),
        "{services:?}"
    );
}

#[tokio::test]
async fn spans_also_go_out_over_otlp_http_protobuf_by_default() {
    let collector = Collector::default();
    let endpoint = http_receiver(collector.clone()).await;
    let sandbox = cluster::sandbox(Duration::ZERO).await;
    // No protocol variable: the specification's default, http/protobuf.
    let replica = replica_exporting(
        &sandbox,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "verif8-eu"),
        ],
    )
    .await;
    let start = pb::StartVerificationRequest {
        destination: DESTINATION.into(),
        ..Default::default()
    };
    replica
        .client()
        .await
        .start_verification(traced(start, TRACE_START, CALLER_SPAN))
        .await
        .unwrap();
    let spans = collector
        .until("the start's spans", |spans| {
            has_span(spans, TRACE_START, SESSIONS_POST)
        })
        .await;
    let server = server_span(&spans, TRACE_START, START);
    let posts = children(&spans, server);
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].name, SESSIONS_POST);
    assert_eq!(*collector.services.lock().unwrap(), ["verif8-eu"]);
}

#[tokio::test]
async fn a_protocol_this_build_cannot_speak_stops_startup_with_the_variable_named() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_verif8-grpc"))
        .args(["--listen", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/json: expected grpc or http/protobuf"),
        "{stderr}"
    );
}
