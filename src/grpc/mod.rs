//! The gRPC surface: the services (thin handlers), request validation, answer
//! conversion, error mapping and the tower layers every call passes through.

mod convert;
mod deadline;
mod languages;
pub mod layers;
mod resend_hints;
mod sandbox_service;
mod service;
pub mod status;
mod validate;
#[cfg(test)]
mod validate_props;
mod watch_quota;
mod watch_stream;

pub use sandbox_service::SandboxApi;
pub use service::{Guards, VerificationApi};
