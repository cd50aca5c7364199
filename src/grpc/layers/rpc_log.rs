//! One log line and the RPC metrics per call of ours: method,
//! gRPC code, latency, the caller's address and name and the status of the
//! last 8x8 answer. A call dropped before it answers (the caller cancelled, or its
//! `grpc-timeout` ran out) is logged as CANCELLED when its future goes.

use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::Code;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use super::{BoxFuture, CallerName, method_of};
use crate::telemetry::metrics;
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
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(method) = method_of(request.uri().path()).map(|method| method.name) else {
            return Box::pin(self.inner.call(request));
        };
        let mut finished = Finished {
            method,
            peer: peer_of(request.extensions()),
            started: Instant::now(),
            caller: None,
            logged: false,
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let (answer, upstream_status) = with_last_status(call).await;
            let code = match &answer {
                Ok(response) => {
                    finished.caller = response
                        .extensions()
                        .get::<CallerName>()
                        .map(|caller| caller.0.clone());
                    code_of(response.headers())
                }
                Err(_) => Code::Unknown,
            };
            finished.log(code, upstream_status);
            answer
        })
    }
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

/// An error's code is in the response head (trailers-only); a response
/// without one carries a message and ends OK.
fn code_of(headers: &http::HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .map_or(Code::Ok, |value| Code::from_bytes(value.as_bytes()))
}

struct Finished {
    method: &'static str,
    peer: Option<SocketAddr>,
    started: Instant,
    /// Set when `--callers-file` identified the caller.
    caller: Option<std::sync::Arc<crate::auth::Caller>>,
    logged: bool,
}

impl Finished {
    fn log(&mut self, code: Code, upstream_status: Option<u16>) {
        self.logged = true;
        let elapsed = self.started.elapsed();
        tracing::info!(
            method = self.method,
            code = metrics::code_name(code),
            latency_us = elapsed.as_micros() as u64,
            peer = self.peer.map(tracing::field::display),
            caller = self.caller.as_ref().map(|caller| caller.name.as_str()),
            upstream_status,
            "rpc finished"
        );
        let caller = self.caller.as_ref().map(|caller| caller.name.as_str());
        metrics::rpc(self.method, code, caller, elapsed);
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        if !self.logged {
            self.log(Code::Cancelled, None);
        }
    }
}
