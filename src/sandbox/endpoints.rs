//! The simulated 8x8 Verification API v2 endpoints.
//!
//! SMA coverage rule (deterministic, documented for the README): a check is available iff the
//! normalised destination's country code is 65 (SG), 62 (ID), 60 (MY) or 66 (TH), or no
//! destination is given and `clientIp` is an IPv4 address (taken as a mobile data session).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;

use super::clock::format_8x8;
use super::errors::{ApiError, code};
use super::outbox::OutboxMessage;
use super::sessions::{Session, StartError};
use super::state::Shared;
use super::validate;
use super::wire::{
    Channel, CoverageRequest, CoverageResponse, SessionResponse, SmaResponse, SmaVisitResponse,
    VerifyRequest,
};

/// Country codes where the sandbox offers SMA.
const SMA_COUNTRY_CODES: [&str; 4] = ["65", "62", "60", "66"];

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `POST /api/v2/subaccounts/{subAccountId}/sessions`
pub async fn create_session(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<SessionResponse> {
    let sub = subaccount_from(path.map(|Path(p)| p))?;
    let request: VerifyRequest = validate::parse_body(&body)?;
    let start = validate::verify_request(&sub, request)?;
    let session = shared.with(|s| -> Result<Session, StartError> {
        let now = s.clock.now();
        let (session, delivery) = s.sessions.start(start, now)?;
        if let Some(delivery) = delivery {
            s.outbox.push(OutboxMessage {
                session_id: session.id.clone(),
                destination: format!("+{}", session.destination),
                channel: delivery.channel.as_str().to_owned(),
                text: delivery.text,
                code: delivery.code,
                sent_at: now,
            });
        }
        Ok(session)
    });
    match session {
        Ok(session) => Ok(Json(response(&session, &shared.public_base))),
        Err(StartError::ResendTooSoon { retry_after }) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            code::RESEND_INTERVAL,
            format!(
                "Resending interval violation: a code was sent to this destination recently; retry after {}",
                format_8x8(retry_after)
            ),
        )),
    }
}

/// `GET /api/v2/subaccounts/{subAccountId}/sessions/{sessionId}[?code=...]`
pub async fn get_session(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> ApiResult<SessionResponse> {
    let (sub, id) = path
        .map(|Path(p)| p)
        .map_err(|_| ApiError::invalid_parameter("Invalid path parameters"))?;
    validate::subaccount(&sub)?;
    let code = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
    });
    if let Some(code) = &code
        && !(3..=10).contains(&code.chars().count())
    {
        return Err(ApiError::out_of_range("code must be 3 to 10 characters"));
    }
    let session = shared.with(|s| {
        let now = s.clock.now();
        match &code {
            Some(code) => s.sessions.attempt(&sub, &id, code, now),
            None => s.sessions.get(&sub, &id, now),
        }
    });
    let session = session.ok_or_else(ApiError::session_not_found)?;
    Ok(Json(response(&session, &shared.public_base)))
}

/// `POST /api/v2/subaccounts/{subAccountId}/sma/coverage`
pub async fn sma_coverage(
    State(_shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<CoverageResponse> {
    subaccount_from(path.map(|Path(p)| p))?;
    let request: CoverageRequest = validate::parse_body(&body)?;
    let (ip, destination) = validate::coverage_request(request)?;
    Ok(Json(CoverageResponse {
        is_available: sma_available(ip, destination.as_deref()),
    }))
}

/// See the module documentation for the rule.
fn sma_available(client_ip: IpAddr, destination: Option<&str>) -> bool {
    match destination {
        Some(digits) => SMA_COUNTRY_CODES.iter().any(|cc| digits.starts_with(cc)),
        None => client_ip.is_ipv4(),
    }
}

/// `GET /sma/{sessionId}`: what the device opens over mobile data. Unauthenticated, like the
/// real verification URL.
pub async fn sma_visit(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SmaVisitResponse>, ApiError> {
    let Ok(Path(id)) = path else {
        return Err(ApiError::session_not_found());
    };
    let verified = shared.with(|s| {
        let now = s.clock.now();
        s.sessions.sma_visit(&id, now)
    });
    verified
        .map(|verified| Json(SmaVisitResponse { verified }))
        .ok_or_else(ApiError::session_not_found)
}

fn subaccount_from(path: Result<String, PathRejection>) -> Result<String, ApiError> {
    let sub = path.map_err(|_| ApiError::invalid_parameter("Invalid subAccountId"))?;
    validate::subaccount(&sub)?;
    Ok(sub)
}

fn response(session: &Session, public_base: &str) -> SessionResponse {
    SessionResponse {
        session_id: session.id.clone(),
        verify_uri: format!(
            "/api/v2/subaccounts/{}/sessions/{}",
            session.subaccount, session.id
        ),
        destination: format!("+{}", session.destination),
        status: session.status.as_str(),
        attempt: session.attempt,
        expires_at: format_8x8(session.expires_at),
        retry_after: format_8x8(session.retry_after),
        sma: (session.channel == Channel::Sma).then(|| SmaResponse {
            verification_url: format!("{public_base}/sma/{}", session.id),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_rule() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for dest in ["6598765432", "628123456789", "60123456789", "66812345678"] {
            assert!(sma_available(v6, Some(dest)), "{dest}");
        }
        assert!(!sma_available(v4, Some("19876543210")));
        assert!(!sma_available(v4, Some("6387654321")));
        assert!(sma_available(v4, None));
        assert!(!sma_available(v6, None));
    }
}
