//! Middleware in front of every route, plus the fallbacks.
//!
//! For `/api/` requests, in this order: record the request, wait the configured latency, serve
//! an injected fault if one is pending, check the Bearer token. Bodies are buffered here with a size limit so handlers can
//! parse them leniently and answer 8x8 error bodies instead of axum's default rejections.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::errors::{ApiError, code};
use super::requests::RecordedRequest;
use super::state::Shared;

/// Largest accepted request body; 8x8 request bodies are a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

pub async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let is_api = path == "/api" || path.starts_with("/api/");
    let (parts, body) = request.into_parts();
    let (bytes, too_large) = match to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => (bytes, false),
        Err(_) => (Default::default(), true),
    };

    let response = if is_api {
        let mut entry = RecordedRequest::new(
            method.to_string(),
            path.clone(),
            parts.uri.query().map(str::to_owned),
            header_text(&parts.headers, header::AUTHORIZATION),
            header_text(&parts.headers, header::CONTENT_TYPE),
            &bytes,
        );
        entry.traceparent = header_text(
            &parts.headers,
            header::HeaderName::from_static("traceparent"),
        );
        let fault = shared.with(|s| {
            s.requests.push(entry);
            s.faults.take()
        });
        if !shared.latency.is_zero() {
            tokio::time::sleep(shared.latency).await;
        }
        if let Some(fault) = fault {
            if !fault.delay.is_zero() {
                tokio::time::sleep(fault.delay).await;
            }
            fault.error.into_response()
        } else if !authorised(&parts.headers, &shared.api_key) {
            ApiError::unauthorized().into_response()
        } else if too_large {
            body_too_large()
        } else {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    } else if too_large {
        body_too_large()
    } else {
        next.run(Request::from_parts(parts, Body::from(bytes)))
            .await
    };
    // Path and status only: queries carry codes and bodies carry phone numbers.
    tracing::debug!(%method, %path, status = response.status().as_u16(), "sandbox request");
    response
}

fn body_too_large() -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        code::INVALID_PARAMETER,
        format!("Request body exceeds {BODY_LIMIT} bytes"),
    )
    .into_response()
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `Authorization: Bearer <api_key>`; the scheme is case-insensitive, the token exact.
fn authorised(headers: &HeaderMap, api_key: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, token)) => {
            scheme.eq_ignore_ascii_case("bearer") && !api_key.is_empty() && token.trim() == api_key
        }
        None => false,
    }
}

pub async fn not_found() -> ApiError {
    ApiError::route_not_found()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        code::NOT_IMPLEMENTED,
        "Method not allowed on this resource",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_rules() {
        assert!(authorised(&with_auth("Bearer key"), "key"));
        assert!(authorised(&with_auth("bearer key"), "key"));
        assert!(!authorised(&with_auth("Bearer other"), "key"));
        assert!(!authorised(&with_auth("Basic key"), "key"));
        assert!(!authorised(&with_auth("key"), "key"));
        assert!(!authorised(&with_auth("Bearer "), ""));
        assert!(!authorised(&HeaderMap::new(), "key"));
    }
}
