//! What the service tells its operator: logs, Prometheus metrics and
//! OpenTelemetry traces.

pub mod logs;
pub mod metrics;
pub mod traces;
