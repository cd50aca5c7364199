//! What can go wrong on the way to 8x8 and back.

use std::time::Duration;

use super::wire::ErrorBody;

/// An error answer from 8x8 (HTTP status 400 or above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub http_status: u16,
    /// 8x8's platform error code (e.g. 1002), when the body carried one.
    pub code: Option<i64>,
    pub message: String,
    /// 8x8's errorId, what its support asks for.
    pub error_id: Option<String>,
    /// From a `Retry-After` header.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Decodes 8x8's error body; a body that isn't one still gives an error
    /// carrying the HTTP status.
    pub(crate) fn from_response(
        http_status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let (code, message, error_id) = match parsed {
            Some(body) => (
                body.code.and_then(|code| code.trim().parse().ok()),
                body.message.unwrap_or_default(),
                body.error_id,
            ),
            None => (None, String::new(), None),
        };
        ApiError {
            http_status,
            code,
            message,
            error_id,
            retry_after,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("8x8 answered HTTP {} (code {:?}): {}", .0.http_status, .0.code, .0.message)]
    Api(ApiError),
    /// No connection could be made (refused, DNS, TLS handshake): nothing was sent.
    #[error("8x8 unreachable: {0}")]
    Connect(String),
    /// The request may have reached 8x8 but no complete answer came back.
    #[error("no answer from 8x8: {0}")]
    Transport(String),
    #[error("8x8 did not answer in time")]
    Timeout,
    /// A success status with a body we can't understand.
    #[error("unreadable answer from 8x8: {0}")]
    Malformed(String),
    /// No API key is configured for the subaccount.
    #[error("no API key configured for subaccount {0}")]
    NoApiKey(String),
}

impl UpstreamError {
    /// The request may have reached 8x8 and been acted on, but no answer
    /// says so: a start may or may not have sent a message.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, UpstreamError::Transport(_) | UpstreamError::Timeout)
    }
}

/// The innermost error message, without URLs (they can hold phone numbers in
/// nothing we send, but stay terse anyway).
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut source = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_8x8_error_body() {
        let body = br#"{"code":1002,"message":"Invalid MSISDN format (not E.164 international number)","errorId":"b4478860-b76c-e811-814e-022a35cc1c71","timestamp":"2025-12-18T09:25:40.9235752+00:00"}"#;
        let error = ApiError::from_response(400, body, None);
        assert_eq!(error.code, Some(1002));
        assert_eq!(
            error.error_id.as_deref(),
            Some("b4478860-b76c-e811-814e-022a35cc1c71")
        );
    }

    #[test]
    fn keeps_the_status_of_a_body_that_is_not_json() {
        let error = ApiError::from_response(502, b"<html>bad gateway</html>", None);
        assert_eq!((error.http_status, error.code), (502, None));
    }
}
