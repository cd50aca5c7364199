//! The 8x8 Verification API v2 client: request building, wire JSON, tolerant
//! response parsing and error decoding. It knows nothing about gRPC.

mod client;
mod config;
mod error;
#[cfg(test)]
mod parse_props;
mod session;
mod wire;

pub use client::{CallPolicy, UpstreamClient, with_last_status};
pub use config::{ApiKeys, Region, UpstreamConfig};
pub use error::{ApiError, UpstreamError};
pub use session::{SessionInfo, SessionStatus};
pub use wire::{
    CallOptions, Channel, ChannelOptions, CodeType, SmaCoverageRequest, SmsEncoding, SmsOptions,
    StartRequest, WhatsAppOptions,
};
