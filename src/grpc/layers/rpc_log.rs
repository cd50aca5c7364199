//! What each call of ours leaves behind when it ends: one log line and the
//! RPC metrics (method, gRPC code, latency, the caller's address and name,
//! the status of the last 8x8 answer), and the server span of its trace.
//!
//! A call ends when its response body does: for WatchSession that is the
//! stream's last message and its trailers, not the response head. A call
//! dropped before it ends (the caller cancelled, or its `grpc-timeout` ran
//! out) is recorded as CANCELLED.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

use super::{BoxFuture, CallerName, service_and_method};
use crate::telemetry::{metrics, traces};
use crate::upstream::with_last_status;

#[derive(Clone, Default)]
pub struct RpcLogLayer;

impl<S> Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcLog { inner }
    }
}

#[derive(Clone)]
pub struct RpcLog<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for RpcLog<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Recorded<R>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some((service, method)) = service_and_method(request.uri().path()) else {
            // Health and reflection: passed through, unrecorded.
            let call = self.inner.call(request);
            return Box::pin(async move { Ok(call.await?.map(Recorded::untouched)) });
        };
        let peer = peer_of(request.extensions());
        let span = server_span(service, method.name, peer, request.headers());
        let mut finished = Finished {
            method: method.name,
            peer,
            started: Instant::now(),
            caller: None,
            upstream_status: None,
            span: span.clone(),
        };
        let call = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let (answer, upstream_status) = with_last_status(call).await;
                finished.upstream_status = upstream_status;
                let response = match answer {
                    Ok(response) => response,
                    Err(error) => {
                        finished.record(Code::Unknown);
                        return Err(error);
                    }
                };
                finished.caller = response
                    .extensions()
                    .get::<CallerName>()
                    .map(|caller| caller.0.clone());
                // An error's code is in the response head (trailers-only,
                // with an empty body nobody polls); otherwise it comes in the
                // trailers after the messages.
                if let Some(code) = code_of(response.headers()) {
                    finished.record(code);
                    return Ok(response.map(Recorded::untouched));
                }
                Ok(response.map(|body| Recorded {
                    inner: body,
                    finished: Some(finished),
                }))
            }
            .instrument(span),
        )
    }
}

/// The server span, a child of the caller's trace when it sent a
/// `traceparent`. Its attributes are the RPC conventions' and never carry a
/// request's content.
fn server_span(
    service: &'static str,
    method: &'static str,
    peer: Option<SocketAddr>,
    headers: &http::HeaderMap,
) -> tracing::Span {
    let full_method = format_args!("{service}/{method}");
    let span = tracing::info_span!(
        target: traces::TARGET,
        "rpc",
        otel.name = %full_method,
        otel.kind = "server",
        otel.status_code = Empty,
        "rpc.system.name" = "grpc",
        "rpc.method" = %full_method,
        "rpc.response.status_code" = Empty,
        "error.type" = Empty,
        "network.peer.address" = peer.map(|peer| tracing::field::display(peer.ip())),
        "network.peer.port" = peer.map(|peer| peer.port()),
    );
    traces::continue_from(&span, headers);
    span
}

/// The caller's address, over plain TCP or TLS.
fn peer_of(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(TlsConnectInfo::get_ref)
        })
        .and_then(TcpConnectInfo::remote_addr)
}

fn code_of(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

struct Finished {
    method: &'static str,
    peer: Option<SocketAddr>,
    started: Instant,
    /// Set when `--callers-file` identified the caller.
    caller: Option<std::sync::Arc<crate::auth::Caller>>,
    upstream_status: Option<u16>,
    span: tracing::Span,
}

impl Finished {
    fn record(self, code: Code) {
        let elapsed = self.started.elapsed();
        let caller = self.caller.as_ref().map(|caller| caller.name.as_str());
        tracing::info!(
            method = self.method,
            code = metrics::code_name(code),
            latency_us = elapsed.as_micros() as u64,
            peer = self.peer.map(tracing::field::display),
            caller,
            upstream_status = self.upstream_status,
            "rpc finished"
        );
        metrics::rpc(self.method, code, caller, elapsed);
        let name = traces::code_name(code);
        self.span.record("rpc.response.status_code", name);
        if traces::is_server_error(code) {
            self.span.record("error.type", name);
            self.span.record("otel.status_code", "ERROR");
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when it ends: at the trailers,
    /// at its end without them, or CANCELLED when dropped before either.
    pub struct Recorded<B> {
        #[pin]
        inner: B,
        finished: Option<Finished>,
    }

    impl<B> PinnedDrop for Recorded<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(finished) = this.project().finished.take() {
                finished.record(Code::Cancelled);
            }
        }
    }
}

impl<B> Recorded<B> {
    fn untouched(inner: B) -> Self {
        Recorded {
            inner,
            finished: None,
        }
    }
}

impl<B: Body> Body for Recorded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        // The stream's own work (a WatchSession message) belongs to the span.
        let span = this.finished.as_ref().map(|finished| finished.span.clone());
        let _entered = span.as_ref().map(tracing::Span::enter);
        let frame = ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|trailers| code_of(trailers).unwrap_or(Code::Unknown)),
            Some(Err(_)) | None => Some(Code::Unknown),
        };
        if let Some(code) = code
            && let Some(finished) = this.finished.take()
        {
            finished.record(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
