//! One shared HTTP client for every call to 8x8.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{Method, header};
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::time::Instant;
use url::Url;

use super::config::{ApiKeys, UpstreamConfig};
use super::error::{ApiError, UpstreamError};
use super::session::SessionInfo;
use super::wire::{CoverageBody, SmaCoverageRequest, StartRequest};
use crate::metrics;

/// 8x8's answers are a few hundred bytes; anything far larger is refused
/// rather than buffered.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Tries of a call that is safe to repeat (a status read, a coverage check).
const MAX_TRIES: u32 = 3;
/// First retry delay; doubles per try, with full jitter.
const RETRY_BASE_DELAY: Duration = Duration::from_millis(100);

/// How one call may spend its time.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallPolicy {
    /// The caller's remaining deadline; the configured timeout applies when
    /// it is longer or absent.
    pub deadline: Option<Duration>,
    /// Retry connect errors, 5xx and 429 with backoff inside the deadline.
    /// Only for calls that change nothing upstream.
    pub retry: bool,
}

impl CallPolicy {
    /// One try only: for calls that act upstream (a start, a code check).
    pub fn once(deadline: Option<Duration>) -> Self {
        CallPolicy {
            deadline,
            retry: false,
        }
    }

    /// Retried inside the deadline: for reads, which are safe to repeat.
    pub fn retried(deadline: Option<Duration>) -> Self {
        CallPolicy {
            deadline,
            retry: true,
        }
    }
}

#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    base_url: Url,
    authorization: Arc<Authorization>,
    timeout: Duration,
}

/// `Authorization: Bearer …` values, built once per key and marked
/// sensitive so no HTTP-level debug output shows them.
struct Authorization {
    default: Option<HeaderValue>,
    per_subaccount: HashMap<String, HeaderValue>,
}

impl Authorization {
    fn new(keys: &ApiKeys) -> Result<Self, InvalidApiKey> {
        let header = |key: &secrecy::SecretString| {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .map_err(|_| InvalidApiKey)?;
            value.set_sensitive(true);
            Ok(value)
        };
        Ok(Authorization {
            default: keys.default.as_ref().map(header).transpose()?,
            per_subaccount: keys
                .per_subaccount
                .iter()
                .map(|(subaccount, key)| Ok((subaccount.clone(), header(key)?)))
                .collect::<Result<_, InvalidApiKey>>()?,
        })
    }

    fn for_subaccount(&self, subaccount: &str) -> Option<&HeaderValue> {
        self.per_subaccount
            .get(subaccount)
            .or(self.default.as_ref())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("an API key holds characters an HTTP header cannot carry")]
pub struct InvalidApiKey;

impl UpstreamClient {
    pub fn new(config: UpstreamConfig) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("verif8-grpc/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            // 8x8's API doesn't redirect; following one would resend the key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(UpstreamClient {
            http,
            base_url: config.base_url,
            authorization: Arc::new(Authorization::new(&config.keys)?),
            timeout: config.timeout,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// POST …/sessions: sends a code (or starts SMA). Never retried: a
    /// repeated POST would send the user a second message.
    pub async fn start(
        &self,
        subaccount: &str,
        request: &StartRequest,
        deadline: Option<Duration>,
    ) -> Result<SessionInfo, UpstreamError> {
        let url = self.url(&["api", "v2", "subaccounts", subaccount, "sessions"]);
        let policy = CallPolicy::once(deadline);
        let body = self
            .send(
                "start",
                subaccount,
                Method::POST,
                url,
                Some(request),
                policy,
            )
            .await?;
        SessionInfo::from_json(&body, None).map_err(UpstreamError::Malformed)
    }

    /// GET …/sessions/{id} without `code`: reads the status, never an attempt.
    pub async fn get_session(
        &self,
        subaccount: &str,
        session_id: &str,
        policy: CallPolicy,
    ) -> Result<SessionInfo, UpstreamError> {
        let url = self.session_url(subaccount, session_id);
        let body = self
            .send::<()>("get_session", subaccount, Method::GET, url, None, policy)
            .await?;
        SessionInfo::from_json(&body, Some(session_id)).map_err(UpstreamError::Malformed)
    }

    /// GET …/sessions/{id}?code=…: one attempt at the code. Never retried:
    /// each try could burn one of the session's five attempts.
    pub async fn check_code(
        &self,
        subaccount: &str,
        session_id: &str,
        code: &str,
        deadline: Option<Duration>,
    ) -> Result<SessionInfo, UpstreamError> {
        let mut url = self.session_url(subaccount, session_id);
        url.query_pairs_mut().append_pair("code", code);
        let policy = CallPolicy::once(deadline);
        let body = self
            .send::<()>("check_code", subaccount, Method::GET, url, None, policy)
            .await?;
        SessionInfo::from_json(&body, Some(session_id)).map_err(UpstreamError::Malformed)
    }

    /// POST …/sma/coverage.
    pub async fn sma_coverage(
        &self,
        subaccount: &str,
        request: &SmaCoverageRequest,
        policy: CallPolicy,
    ) -> Result<bool, UpstreamError> {
        let url = self.url(&["api", "v2", "subaccounts", subaccount, "sma", "coverage"]);
        let body = self
            .send(
                "sma_coverage",
                subaccount,
                Method::POST,
                url,
                Some(request),
                policy,
            )
            .await?;
        let coverage: CoverageBody = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Malformed(format!("coverage JSON: {e}")))?;
        coverage
            .is_available
            .ok_or_else(|| UpstreamError::Malformed("coverage JSON without isAvailable".into()))
    }

    fn session_url(&self, subaccount: &str, session_id: &str) -> Url {
        self.url(&[
            "api",
            "v2",
            "subaccounts",
            subaccount,
            "sessions",
            session_id,
        ])
    }

    /// Appends percent-encoded path segments to the base URL.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .expect("an http(s) base URL has path segments")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Sends, retrying per `policy` inside its time budget.
    async fn send<B: Serialize>(
        &self,
        endpoint: &'static str,
        subaccount: &str,
        method: Method,
        url: Url,
        body: Option<&B>,
        policy: CallPolicy,
    ) -> Result<Vec<u8>, UpstreamError> {
        let budget = policy
            .deadline
            .map_or(self.timeout, |d| d.min(self.timeout));
        let give_up_at = Instant::now() + budget;
        let mut tries = 0;
        loop {
            tries += 1;
            let left = give_up_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UpstreamError::Timeout);
            }
            let result = self
                .send_once(
                    endpoint,
                    subaccount,
                    method.clone(),
                    url.clone(),
                    body,
                    left,
                )
                .await;
            let error = match result {
                Ok(body) => return Ok(body),
                Err(error) if !policy.retry || tries >= MAX_TRIES => return Err(error),
                Err(error) => error,
            };
            let Some(delay) = retry_delay(&error, tries) else {
                return Err(error);
            };
            if Instant::now() + delay >= give_up_at {
                return Err(error);
            }
            tracing::debug!(endpoint, tries, ?delay, %error, "retrying 8x8 call");
            metrics::upstream_retry(endpoint);
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once<B: Serialize>(
        &self,
        endpoint: &'static str,
        subaccount: &str,
        method: Method,
        url: Url,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Vec<u8>, UpstreamError> {
        let authorization = self
            .authorization
            .for_subaccount(subaccount)
            .ok_or_else(|| UpstreamError::NoApiKey(subaccount.to_owned()))?;
        let mut request = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header(header::AUTHORIZATION, authorization.clone())
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let sent = std::time::Instant::now();
        let answer = request.send().await;
        metrics::upstream_call(
            endpoint,
            answer.as_ref().ok().map(|r| r.status().as_u16()),
            sent.elapsed(),
        );
        let mut response = answer.map_err(UpstreamError::from_reqwest)?;
        let status = response.status();
        LAST_STATUS
            .try_with(|last| last.set(Some(status.as_u16())))
            .ok();
        let retry_after = retry_after(response.headers());
        let body = read_capped(&mut response).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(UpstreamError::Api(ApiError::from_response(
                status.as_u16(),
                &body,
                retry_after,
            )))
        }
    }
}

tokio::task_local! {
    static LAST_STATUS: Cell<Option<u16>>;
}

/// Runs `call` and also returns the HTTP status of the last 8x8 answer it
/// received, if any (for the per-RPC log line). Calls made by other tasks
/// the future spawns are not seen.
pub async fn with_last_status<T>(call: impl Future<Output = T>) -> (T, Option<u16>) {
    LAST_STATUS
        .scope(Cell::new(None), async {
            let output = call.await;
            (output, LAST_STATUS.with(Cell::get))
        })
        .await
}

/// How long to wait before try `tries + 1`, or None when retrying can't help.
/// 8x8's Retry-After wins; otherwise full jitter over a doubling ceiling.
fn retry_delay(error: &UpstreamError, tries: u32) -> Option<Duration> {
    let retryable = match error {
        UpstreamError::Api(api) => api.http_status == 429 || api.http_status >= 500,
        UpstreamError::Connect(_) | UpstreamError::Transport(_) => true,
        UpstreamError::Timeout | UpstreamError::Malformed(_) | UpstreamError::NoApiKey(_) => false,
    };
    if !retryable {
        return None;
    }
    if let UpstreamError::Api(ApiError {
        retry_after: Some(after),
        ..
    }) = error
    {
        return Some(*after);
    }
    let ceiling = RETRY_BASE_DELAY * 2u32.pow(tries.saturating_sub(1).min(10));
    Some(ceiling.mul_f64(rand::random::<f64>()))
}

async fn read_capped(response: &mut reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(UpstreamError::from_reqwest)?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(UpstreamError::Malformed(format!(
                "answer larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.to_utc() - chrono::Utc::now()).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut headers = header::HeaderMap::new();
        headers.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(header::RETRY_AFTER, later.parse().unwrap());
        let delay = retry_after(&headers).unwrap();
        assert!(delay > Duration::from_secs(100) && delay <= Duration::from_secs(120));
        headers.insert(header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn path_segments_are_encoded() {
        let client = UpstreamClient::new(UpstreamConfig {
            base_url: Url::parse("http://127.0.0.1:9/prefix/").unwrap(),
            keys: ApiKeys::default(),
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!(
            client.session_url("acme&co", "a/b").as_str(),
            "http://127.0.0.1:9/prefix/api/v2/subaccounts/acme&co/sessions/a%2Fb"
        );
    }
}
