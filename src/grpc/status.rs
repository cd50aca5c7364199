//! Errors → `tonic::Status` with the google.rpc richer error model: always an
//! ErrorInfo (stable reason, our domain, upstream facts as metadata), a
//! BadRequest for invalid input and a RetryInfo where a retry can succeed.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, QuotaViolation, StatusExt};

use crate::protection::Refusal;

use crate::upstream::{ApiError, UpstreamError};

/// ErrorInfo domain of every error this service returns.
pub const DOMAIN: &str = "verif8-grpc";

/// Used when 8x8 asks for a retry but says neither when nor for how long.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

pub fn error(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: HashMap<String, String>,
    retry_delay: Option<Duration>,
) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, DOMAIN, metadata);
    if let Some(delay) = retry_delay {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(code, message, details)
}

/// INVALID_ARGUMENT for input refused locally: nothing went upstream.
pub fn invalid_request(violations: Vec<FieldViolation>) -> Status {
    bad_request("INVALID_REQUEST", violations)
}

fn bad_request(reason: &str, violations: Vec<FieldViolation>) -> Status {
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    let message = format!("invalid request: {}", fields.join(", "));
    let mut details = ErrorDetails::with_bad_request(violations);
    details.set_error_info(reason, DOMAIN, HashMap::new());
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// Maps an upstream failure. `resend_hint` is how long until a re-send to
/// the destination is allowed, when the caller knows it.
pub fn from_upstream(error: &UpstreamError, resend_hint: Option<Duration>) -> Status {
    match error {
        UpstreamError::Api(api) => from_api_error(api, resend_hint),
        UpstreamError::Connect(_) => error_without_metadata(
            Code::Unavailable,
            "UPSTREAM_UNREACHABLE",
            "8x8 could not be reached",
            Some(DEFAULT_RETRY_DELAY),
        ),
        UpstreamError::Transport(_) => error_without_metadata(
            Code::Unavailable,
            "UPSTREAM_CONNECTION_LOST",
            "the connection to 8x8 broke before an answer arrived",
            Some(DEFAULT_RETRY_DELAY),
        ),
        UpstreamError::Timeout => error_without_metadata(
            Code::DeadlineExceeded,
            "UPSTREAM_TIMEOUT",
            "8x8 did not answer in time",
            None,
        ),
        UpstreamError::Malformed(_) => error_without_metadata(
            Code::Internal,
            "UPSTREAM_BAD_RESPONSE",
            "8x8 answered something this service cannot read",
            None,
        ),
        UpstreamError::NoApiKey(_) => error_without_metadata(
            Code::FailedPrecondition,
            "NO_API_KEY",
            "no 8x8 API key is configured for this subaccount",
            None,
        ),
    }
}

/// A request_id sent again with a different payload: a caller bug.
pub fn request_id_reused() -> Status {
    bad_request(
        "REQUEST_ID_REUSED",
        vec![FieldViolation::new(
            "request_id",
            "already used with a different request; use a new UUID for a new request",
        )],
    )
}

/// Redis is down: a start with a request_id could not be deduplicated, so
/// it is refused rather than risking a second SMS.
pub fn idempotency_store_unavailable() -> Status {
    error(
        Code::Unavailable,
        "IDEMPOTENCY_STORE_UNAVAILABLE",
        "the idempotency store (Redis) is unreachable; retry with the same request_id",
        Default::default(),
        Some(Duration::from_secs(1)),
    )
}

/// The caller's deadline came while its request_id was still being
/// claimed: an earlier call with it is unanswered, or Redis is slow.
pub fn request_id_pending() -> Status {
    error_without_metadata(
        Code::DeadlineExceeded,
        "REQUEST_ID_IN_FLIGHT",
        "an earlier call with this request_id was still unanswered at the deadline; retry with the same request_id",
        Some(Duration::from_millis(500)),
    )
}

/// No bearer token, or one no caller in `--callers-file` has.
pub fn unauthenticated() -> Status {
    crate::telemetry::metrics::refused("CALLER_UNAUTHENTICATED");
    error_without_metadata(
        Code::Unauthenticated,
        "CALLER_UNAUTHENTICATED",
        "send `authorization: Bearer <token>` with a token the operator gave you",
        None,
    )
}

/// The caller is known but lacks the method's scope.
pub fn scope_not_granted(caller: &str, scope: &str) -> Status {
    crate::telemetry::metrics::refused("SCOPE_NOT_GRANTED");
    let metadata = HashMap::from([("scope".to_owned(), scope.to_owned())]);
    error(
        Code::PermissionDenied,
        "SCOPE_NOT_GRANTED",
        format!("caller {caller} does not hold the {scope:?} scope this method needs"),
        metadata,
        None,
    )
}

/// A subaccount the operator didn't configure: refused before it gets any
/// state here, so made-up names can't grow the replica.
pub fn subaccount_not_configured(subaccount: &str) -> Status {
    crate::telemetry::metrics::refused("SUBACCOUNT_NOT_CONFIGURED");
    let metadata = HashMap::from([("subaccount_id".to_owned(), subaccount.to_owned())]);
    error(
        Code::PermissionDenied,
        "SUBACCOUNT_NOT_CONFIGURED",
        format!(
            "subaccount {subaccount} is not configured here (--subaccount, --api-key-file or --callers-file)"
        ),
        metadata,
        None,
    )
}

/// The caller is known but not allowed this subaccount.
pub fn subaccount_not_allowed(caller: &str, subaccount: &str) -> Status {
    crate::telemetry::metrics::refused("SUBACCOUNT_NOT_ALLOWED");
    let metadata = HashMap::from([("subaccount_id".to_owned(), subaccount.to_owned())]);
    error(
        Code::PermissionDenied,
        "SUBACCOUNT_NOT_ALLOWED",
        format!("caller {caller} may not use subaccount {subaccount}"),
        metadata,
        None,
    )
}

/// A refusal to protect the account; nothing was sent to 8x8.
pub fn refused(refusal: &Refusal) -> Status {
    let reason = refusal.reason();
    crate::telemetry::metrics::refused(reason);
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, DOMAIN, HashMap::new());
    let (code, message) = match refusal {
        Refusal::SendLimit {
            key,
            rate,
            retry_after,
        } => {
            let bucket = key.as_str();
            let limit = format!(
                "at most {} sends per {} per {}",
                rate.count,
                bucket,
                humantime::format_duration(rate.window)
            );
            details.set_quota_failure(vec![QuotaViolation::new(bucket, limit.clone())]);
            details.set_retry_info(Some(round_up(*retry_after)));
            (
                Code::ResourceExhausted,
                format!("send limit reached: {limit}"),
            )
        }
        Refusal::FailedChecks { retry_after } => {
            details.set_retry_info(Some(round_up(*retry_after)));
            (
                Code::ResourceExhausted,
                "too many wrong codes for this destination lately; wait before checking or sending again".to_owned(),
            )
        }
        Refusal::Country { channel, country } => (
            Code::PermissionDenied,
            format!(
                "{} to {} is not allowed by this service's configuration",
                channel.as_str(),
                country.as_deref().unwrap_or("a number of unknown country")
            ),
        ),
    };
    Status::with_error_details(code, message, details)
}

/// RetryInfo in whole seconds, never 0 (a client would retry at once).
fn round_up(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        .max(Duration::from_secs(1))
}

/// A fault of this service itself; details stay in the logs.
pub fn internal(message: &str) -> Status {
    tracing::error!(message, "internal error");
    error_without_metadata(Code::Internal, "INTERNAL", message, None)
}

/// Every WatchSession slot of this replica is taken.
pub fn too_many_watch_streams() -> Status {
    error_without_metadata(
        Code::ResourceExhausted,
        "TOO_MANY_WATCH_STREAMS",
        "this replica has no room for another WatchSession stream",
        Some(Duration::from_secs(1)),
    )
}

/// The caller holds `--max-watch-streams-per-caller` streams already.
pub fn caller_watch_quota_reached() -> Status {
    crate::telemetry::metrics::refused("CALLER_WATCH_STREAMS_EXHAUSTED");
    error_without_metadata(
        Code::ResourceExhausted,
        "CALLER_WATCH_STREAMS_EXHAUSTED",
        "this caller holds as many WatchSession streams as it may; close one first",
        Some(Duration::from_secs(1)),
    )
}

/// Shed load: too many RPCs in flight on this replica.
pub fn overloaded() -> Status {
    error_without_metadata(
        Code::ResourceExhausted,
        "OVERLOADED",
        "this replica is at its limit of calls in flight; retry shortly or elsewhere",
        Some(Duration::from_millis(100)),
    )
}

/// A StartVerification whose fate is unknown: it may have sent a message.
/// Retrying could send a second one (and trip the resending interval), so
/// the caller learns exactly that, with the code the failure would have had.
pub fn start_outcome_unknown(error: &UpstreamError) -> Status {
    let code = match error {
        UpstreamError::Timeout => Code::DeadlineExceeded,
        _ => Code::Unavailable,
    };
    error_without_metadata(
        code,
        "START_OUTCOME_UNKNOWN",
        "the request reached 8x8 but no answer came back: a code may have been sent; check the outbox or wait for the user before starting again",
        None,
    )
}

fn error_without_metadata(
    code: Code,
    reason: &str,
    message: &str,
    retry: Option<Duration>,
) -> Status {
    error(code, reason, message, HashMap::new(), retry)
}

/// The error-mapping table (README: "Errors").
fn from_api_error(api: &ApiError, resend_hint: Option<Duration>) -> Status {
    let retry_later = api.retry_after.unwrap_or(DEFAULT_RETRY_DELAY);
    let (code, reason, retry) = match (api.http_status, api.code) {
        (_, Some(1001)) => (Code::PermissionDenied, "SUBACCOUNT_NOT_OWNED", None),
        (_, Some(1201)) => (Code::PermissionDenied, "UPSTREAM_FORBIDDEN", None),
        (401, _) | (_, Some(1200)) => (Code::Unauthenticated, "UPSTREAM_UNAUTHENTICATED", None),
        (_, Some(1400)) => (
            Code::ResourceExhausted,
            "RESEND_TOO_SOON",
            Some(
                resend_hint
                    .or(api.retry_after)
                    .unwrap_or(DEFAULT_RETRY_DELAY),
            ),
        ),
        (404, _) | (_, Some(1404 | 1300)) => (Code::NotFound, "SESSION_NOT_FOUND", None),
        (426, _) | (_, Some(1014)) => (Code::FailedPrecondition, "TLS_UPGRADE_REQUIRED", None),
        (429, _) => (
            Code::ResourceExhausted,
            "UPSTREAM_RATE_LIMITED",
            Some(retry_later),
        ),
        (500.., _) | (_, Some(2000)) => {
            (Code::Unavailable, "UPSTREAM_UNAVAILABLE", Some(retry_later))
        }
        (_, Some(1002)) => (Code::InvalidArgument, "INVALID_DESTINATION", None),
        (400 | 422, _) => (Code::InvalidArgument, "UPSTREAM_REJECTED_REQUEST", None),
        (410, _) | (_, Some(2002)) => (Code::FailedPrecondition, "UPSTREAM_API_VERSION_GONE", None),
        _ => (Code::Unknown, "UPSTREAM_ERROR", None),
    };
    let mut metadata = HashMap::from([("http_status".to_owned(), api.http_status.to_string())]);
    if let Some(upstream_code) = api.code {
        metadata.insert("upstream_code".to_owned(), upstream_code.to_string());
    }
    if let Some(error_id) = &api.error_id {
        metadata.insert("error_id".to_owned(), error_id.clone());
    }
    let message = if api.message.is_empty() {
        format!("8x8 answered HTTP {}", api.http_status)
    } else {
        format!("8x8: {}", api.message)
    };
    error(code, reason, message, metadata, retry)
}
