//! What the service tells its operator: logs and Prometheus metrics.

pub mod logs;
pub mod metrics;
