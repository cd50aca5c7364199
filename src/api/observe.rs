//! One log line per RPC: method, gRPC code, latency and the upstream HTTP
//! status (recorded into the span by the upstream client).

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Status};
use tracing::Instrument;

pub async fn rpc<T>(
    method: &'static str,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let span = tracing::info_span!("rpc", method, upstream_status = tracing::field::Empty);
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    let latency_us = started.elapsed().as_micros() as u64;
    span.in_scope(|| tracing::info!(code = ?code, latency_us, "rpc finished"));
    crate::metrics::rpc(method, code, started.elapsed());
    result
}
