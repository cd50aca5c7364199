//! Sandbox-only endpoints under `/_sandbox/` (no auth): read the outbox and the request
//! journal, move the clock, inject faults. They exist for the facade's SandboxService and for
//! tests; the real 8x8 API has nothing like them.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};

use super::clock::{MAX_OFFSET_DAYS, format_8x8};
use super::errors::ApiError;
use super::faults::FaultRequest;
use super::outbox::OutboxMessage;
use super::requests::RecordedRequest;
use super::state::Shared;
use super::validate::parse_body;

/// Largest single clock jump (one year), so the offset arithmetic can never overflow.
const MAX_ADVANCE_SECS: f64 = 366.0 * 24.0 * 3600.0;

#[derive(Serialize)]
pub struct MessagesResponse {
    messages: Vec<OutboxMessage>,
}

/// `GET /_sandbox/messages?sessionId=..&destination=..`
pub async fn messages(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Json<MessagesResponse> {
    let (mut session_id, mut destination) = (None, None);
    for (key, value) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "sessionId" => session_id = Some(value.into_owned()),
            "destination" => destination = Some(value.into_owned()),
            _ => {}
        }
    }
    let messages = shared.with(|s| s.outbox.list(session_id.as_deref(), destination.as_deref()));
    Json(MessagesResponse { messages })
}

#[derive(Serialize)]
pub struct RequestsResponse {
    requests: Vec<RecordedRequest>,
}

/// `GET /_sandbox/requests`
pub async fn requests(State(shared): State<Arc<Shared>>) -> Json<RequestsResponse> {
    Json(RequestsResponse {
        requests: shared.with(|s| s.requests.all()),
    })
}

#[derive(Deserialize)]
struct AdvanceRequest {
    seconds: f64,
}

#[derive(Serialize)]
pub struct NowResponse {
    now: String,
}

/// `POST /_sandbox/clock/advance` with `{"seconds": N}`
pub async fn advance_clock(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<NowResponse>, ApiError> {
    let req: AdvanceRequest = parse_body(&body)?;
    if !req.seconds.is_finite() || !(0.0..=MAX_ADVANCE_SECS).contains(&req.seconds) {
        return Err(ApiError::out_of_range(
            "seconds must be between 0 and one year (the clock only moves forward)",
        ));
    }
    let now = shared.with(|s| {
        s.clock
            .advance_millis((req.seconds * 1000.0).round() as i64)
            .then(|| s.clock.now())
    });
    let now = now.ok_or_else(|| {
        ApiError::out_of_range(format!(
            "the clock cannot move more than {MAX_OFFSET_DAYS} days ahead in total"
        ))
    })?;
    Ok(Json(NowResponse {
        now: format_8x8(now),
    }))
}

#[derive(Serialize)]
pub struct FaultsResponse {
    pending: u64,
}

/// `POST /_sandbox/faults`
pub async fn add_fault(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<FaultsResponse>, ApiError> {
    let req: FaultRequest = parse_body(&body)?;
    let pending = shared
        .with(|s| s.faults.add(req))
        .map_err(ApiError::invalid_parameter)?;
    Ok(Json(FaultsResponse { pending }))
}

/// `DELETE /_sandbox/faults`
pub async fn clear_faults(State(shared): State<Arc<Shared>>) -> Json<FaultsResponse> {
    shared.with(|s| s.faults.clear());
    Json(FaultsResponse { pending: 0 })
}
