//! The gRPC side: validation, proto conversion, error mapping and the services.

mod convert;
mod deadline;
mod languages;
mod observe;
mod resend_hints;
mod sandbox_service;
mod service;
pub mod status;
mod validate;
#[cfg(test)]
mod validate_props;
mod watch_stream;

pub use sandbox_service::SandboxApi;
pub use service::VerificationApi;
