//! One log line per RPC: method, gRPC code, latency and the upstream HTTP
//! status. No span per RPC: creating, entering and closing one on every
//! poll cost more than the line itself.

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Status};

use crate::upstream::with_last_status;

pub async fn rpc<T>(
    method: &'static str,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let started = Instant::now();
    let (result, upstream_status) = with_last_status(call).await;
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    let elapsed = started.elapsed();
    tracing::info!(
        method,
        code = crate::metrics::code_name(code),
        latency_us = elapsed.as_micros() as u64,
        upstream_status,
        "rpc finished"
    );
    crate::metrics::rpc(method, code, elapsed);
    result
}
