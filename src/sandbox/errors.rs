//! 8x8's error body (`{"code","message","errorId","timestamp"}`) and the codes the sandbox uses.
//!
//! Every non-2xx answer of the simulated API carries this shape, so a client's error mapping
//! can be exercised exactly as against the real service.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use super::clock::format_8x8;

/// 8x8 platform error codes the sandbox answers with.
pub mod code {
    pub const INVALID_PARAMETER: u32 = 1000;
    pub const ILLEGAL_SUBACCOUNT: u32 = 1001;
    pub const INVALID_MSISDN: u32 = 1002;
    pub const INVALID_ENCODING: u32 = 1003;
    pub const INVALID_SOURCE: u32 = 1005;
    pub const INVALID_COUNTRY: u32 = 1009;
    pub const OUT_OF_RANGE: u32 = 1010;
    pub const INVALID_IP: u32 = 1012;
    pub const UNAUTHORIZED: u32 = 1200;
    pub const NOT_FOUND: u32 = 1300;
    pub const RESEND_INTERVAL: u32 = 1400;
    pub const SESSION_NOT_FOUND: u32 = 1404;
    pub const INTERNAL: u32 = 2000;
    pub const NOT_IMPLEMENTED: u32 = 2001;
}

/// An error answer: HTTP status plus 8x8 code and message (and optionally `Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    code: u32,
    message: &'a str,
    error_id: String,
    timestamp: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// HTTP 400 with the given 8x8 code.
    pub fn bad_request(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::bad_request(code::INVALID_PARAMETER, message)
    }

    pub fn out_of_range(message: impl Into<String>) -> Self {
        Self::bad_request(code::OUT_OF_RANGE, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            "Request was not authenticated properly",
        )
    }

    pub fn foreign_subaccount() -> Self {
        Self::bad_request(
            code::ILLEGAL_SUBACCOUNT,
            "Provided subAccountId doesn't belong to your account",
        )
    }

    pub fn invalid_msisdn() -> Self {
        Self::bad_request(
            code::INVALID_MSISDN,
            "Invalid MSISDN format (not E.164 international number)",
        )
    }

    pub fn session_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            code::SESSION_NOT_FOUND,
            "Session not found",
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, "Resource not found")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Error timestamps use the wall clock: they describe when the error happened, and no
        // session logic depends on them (unlike expiresAt/retryAfter, which use the sandbox clock).
        let body = ErrorBody {
            code: self.code,
            message: &self.message,
            error_id: Uuid::new_v4().to_string(),
            timestamp: format_8x8(Utc::now()),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
