//! The four calls to 8x8: their URLs, bodies, retries and answers.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::time::Instant;
use tracing::field::Empty;
use tracing::{Instrument, Span};
use url::Url;

use super::config::{ApiKeys, UpstreamConfig};
use super::error::{ApiError, UpstreamError, root_cause};
use super::session::SessionInfo;
use super::wire::{CoverageBody, SmaCoverageRequest, StartRequest};
use crate::telemetry::{metrics, traces};

/// 8x8's answers are a few hundred bytes; anything far larger is refused
/// rather than buffered.
const MAX_BODY_BYTES: usize = 256 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections to 8x8 are dropped after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("verif8-grpc/", env!("CARGO_PKG_VERSION"));
/// The longest Retry-After honoured: a larger value (or one that would
/// overflow a clock) is read as this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What a path segment must escape: the `url` crate's path-segment set
/// (so `/` inside an id can't add a segment).
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

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
    /// One client for every call: its pool, TLS and proxies are shared.
    http: reqwest::Client,
    /// `{base URL}/api/v2/subaccounts/`: every call's URL continues it.
    subaccounts_root: Arc<str>,
    authorization: Arc<Authorization>,
    timeout: Duration,
}

/// `Authorization: Bearer …` values, built once per key. As header values
/// they are checked to hold nothing that could break a request's head, and
/// marked sensitive so their `Debug` output doesn't show them.
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
    /// Egress proxies come from the environment as reqwest reads them
    /// (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`…).
    pub fn new(config: UpstreamConfig) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::with_builder(config, reqwest::Client::builder())
    }

    fn with_builder(
        config: UpstreamConfig,
        builder: reqwest::ClientBuilder,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        // rustls with the webpki roots; HTTP/2 when 8x8 offers it by ALPN.
        let http = builder
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .build()?;
        Ok(UpstreamClient {
            http,
            subaccounts_root: subaccounts_root(&config.base_url).into(),
            authorization: Arc::new(Authorization::new(&config.keys)?),
            timeout: config.timeout,
        })
    }

    /// POST …/sessions: sends a code (or starts SMA). Never retried: a
    /// repeated POST would send the user a second message.
    pub async fn start(
        &self,
        subaccount: &str,
        request: &StartRequest,
        deadline: Option<Duration>,
    ) -> Result<SessionInfo, UpstreamError> {
        let target = self.path(subaccount, &["sessions"]);
        let policy = CallPolicy::once(deadline);
        let body = self
            .send(
                "start",
                subaccount,
                Method::POST,
                target,
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
        let target = self.session_path(subaccount, session_id);
        let body = self
            .send::<()>("get_session", subaccount, Method::GET, target, None, policy)
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
        let mut target = self.session_path(subaccount, session_id);
        target.push_str("?code=");
        target.extend(form_urlencoded::byte_serialize(code.as_bytes()));
        let policy = CallPolicy::once(deadline);
        let body = self
            .send::<()>("check_code", subaccount, Method::GET, target, None, policy)
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
        let target = self.path(subaccount, &["sma", "coverage"]);
        let body = self
            .send(
                "sma_coverage",
                subaccount,
                Method::POST,
                target,
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

    fn session_path(&self, subaccount: &str, session_id: &str) -> String {
        self.path(subaccount, &["sessions", session_id])
    }

    /// `…/subaccounts/{subaccount}/{segments…}`, each segment percent-encoded.
    fn path(&self, subaccount: &str, segments: &[&str]) -> String {
        let mut path = String::with_capacity(self.subaccounts_root.len() + 64);
        path.push_str(&self.subaccounts_root);
        path.extend(utf8_percent_encode(subaccount, PATH_SEGMENT));
        for segment in segments {
            path.push('/');
            path.extend(utf8_percent_encode(segment, PATH_SEGMENT));
        }
        path
    }

    /// Sends, retrying per `policy` inside its time budget.
    async fn send<B: Serialize>(
        &self,
        endpoint: &'static str,
        subaccount: &str,
        method: Method,
        url: String,
        body: Option<&B>,
        policy: CallPolicy,
    ) -> Result<Bytes, UpstreamError> {
        let authorization = self
            .authorization
            .for_subaccount(subaccount)
            .ok_or_else(|| UpstreamError::NoApiKey(subaccount.to_owned()))?;
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, authorization.clone())
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            // Serialising validated input can't fail; if it did, nothing was
            // sent, which is what Connect tells callers.
            let json = serde_json::to_vec(body)
                .map_err(|e| UpstreamError::Connect(format!("request JSON: {e}")))?;
            request = request.header(CONTENT_TYPE, "application/json").body(json);
        }
        let request = request
            .build()
            .map_err(|e| UpstreamError::Connect(root_cause(&e)))?;
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
            // A body of bytes always clones.
            let mut attempt = request
                .try_clone()
                .ok_or_else(|| UpstreamError::Connect("request body not repeatable".into()))?;
            // Each try is a client span of its own, and carries its context.
            let span = attempt_span(endpoint, &attempt, tries - 1);
            traces::inject(&span, attempt.headers_mut());
            // One time limit for the connection, the answer's head and its body.
            let result = tokio::time::timeout(left, self.exchange(endpoint, attempt, &span))
                .instrument(span.clone())
                .await
                .unwrap_or(Err(UpstreamError::Timeout));
            record_attempt(&span, &result);
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

    async fn exchange(
        &self,
        endpoint: &'static str,
        request: reqwest::Request,
        span: &Span,
    ) -> Result<Bytes, UpstreamError> {
        let sent = std::time::Instant::now();
        let answer = self.round_trip(request).await;
        metrics::upstream_call(
            endpoint,
            answer.as_ref().ok().map(|a| a.status),
            sent.elapsed(),
        );
        let answer = answer?;
        span.record("http.response.status_code", answer.status);
        if answer.status >= 400 {
            fail(span, answer.status.to_string().as_str());
        }
        LAST_STATUS
            .try_with(|last| last.set(Some(answer.status)))
            .ok();
        if (200..300).contains(&answer.status) {
            Ok(answer.body)
        } else {
            Err(UpstreamError::Api(ApiError::from_response(
                answer.status,
                &answer.body,
                answer.retry_after,
            )))
        }
    }

    /// One request and its whole answer.
    async fn round_trip(&self, request: reqwest::Request) -> Result<Answer, UpstreamError> {
        let mut response = self.http.execute(request).await.map_err(request_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let too_large = || UpstreamError::Malformed(format!("answer over {MAX_BODY_BYTES} bytes"));
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            body: body.into(),
            retry_after,
        })
    }
}

/// The client span of one try, per the HTTP client conventions. The URL's
/// query values (a code, for CheckCode) are never recorded.
fn attempt_span(endpoint: &'static str, request: &reqwest::Request, resends: u32) -> Span {
    let url = request.url();
    let template = url_template(endpoint);
    let span = tracing::info_span!(
        target: traces::TARGET,
        "upstream",
        otel.name = %format_args!("{} {template}", request.method()),
        otel.kind = "client",
        otel.status_code = Empty,
        "http.request.method" = %request.method(),
        "server.address" = url.host_str(),
        "server.port" = url.port_or_known_default(),
        "url.template" = template,
        "url.full" = Empty,
        "http.request.resend_count" = (resends > 0).then_some(resends),
        "http.response.status_code" = Empty,
        "error.type" = Empty,
        "verif8.upstream.endpoint" = endpoint,
    );
    if !span.is_disabled() {
        let mut shown = url.clone();
        // Nor credentials a configured URL might hold.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        if url.query().is_some() {
            let names: Vec<String> = url
                .query_pairs()
                .map(|(name, _)| name.into_owned())
                .collect();
            shown
                .query_pairs_mut()
                .clear()
                .extend_pairs(names.iter().map(|name| (name, "REDACTED")));
        }
        span.record("url.full", shown.as_str());
    }
    span
}

/// The path of each call with its variable parts named, as 8x8's spec does.
fn url_template(endpoint: &'static str) -> &'static str {
    match endpoint {
        "start" => "/api/v2/subaccounts/{subAccountId}/sessions",
        "sma_coverage" => "/api/v2/subaccounts/{subAccountId}/sma/coverage",
        _ => "/api/v2/subaccounts/{subAccountId}/sessions/{sessionId}",
    }
}

/// Why no answer came, as the span's `error.type` (an answer's status is
/// recorded where it arrives).
fn record_attempt(span: &Span, result: &Result<Bytes, UpstreamError>) {
    let failure = match result {
        Ok(_) | Err(UpstreamError::Api(_)) => return,
        Err(UpstreamError::Connect(_)) => "connect",
        Err(UpstreamError::Transport(_)) => "transport",
        Err(UpstreamError::Timeout) => "timeout",
        Err(UpstreamError::Malformed(_)) => "malformed_response",
        Err(UpstreamError::NoApiKey(_)) => "no_api_key",
    };
    fail(span, failure);
}

fn fail(span: &Span, error_type: impl tracing::Value) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
}

struct Answer {
    status: u16,
    body: Bytes,
    retry_after: Option<Duration>,
}

/// Nothing sent (no connection) is told apart from a request that may have
/// reached 8x8 without an answer coming back.
fn request_error(error: reqwest::Error) -> UpstreamError {
    if error.is_connect() {
        UpstreamError::Connect(root_cause(&error))
    } else if error.is_timeout() {
        UpstreamError::Timeout
    } else {
        UpstreamError::Transport(root_cause(&error))
    }
}

/// `Retry-After` as seconds or as an HTTP date, clamped to `MAX_RETRY_AFTER`
/// so no value can overflow a deadline.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let delay = match value.trim().parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.to_utc() - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

fn subaccounts_root(base_url: &Url) -> String {
    format!(
        "{}/api/v2/subaccounts/",
        base_url.as_str().trim_end_matches('/')
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A proxy that records the first request line it gets and refuses it.
    async fn refusing_proxy() -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let seen = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = vec![0; 1024];
            let read = socket.read(&mut head).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            let head = String::from_utf8_lossy(&head[..read]).into_owned();
            head.lines().next().unwrap_or_default().to_owned()
        });
        (address, seen)
    }

    fn client_for(base_url: &str, proxy: reqwest::Proxy) -> UpstreamClient {
        UpstreamClient::with_builder(
            UpstreamConfig {
                base_url: Url::parse(base_url).unwrap(),
                keys: ApiKeys::single(secrecy::SecretString::from("key")),
                timeout: Duration::from_secs(5),
            },
            reqwest::Client::builder().proxy(proxy),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn https_calls_go_through_the_configured_proxy() {
        let (proxy, seen) = refusing_proxy().await;
        let client = client_for(
            "https://verify.8x8.invalid/",
            reqwest::Proxy::https(proxy).unwrap(),
        );
        let error = client
            .get_session("acme", "s1", CallPolicy::once(None))
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
        let request_line = tokio::time::timeout(Duration::from_secs(5), seen).await;
        assert_eq!(
            request_line.expect("the proxy was not used").unwrap(),
            "CONNECT verify.8x8.invalid:443 HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn no_proxy_and_plain_http_destinations_are_reached_directly() {
        for (base_url, no_proxy) in [
            ("https://verify.8x8.invalid/", "8x8.invalid"),
            ("http://127.0.0.1:9/", ""),
        ] {
            let (proxy, seen) = refusing_proxy().await;
            // An https-only proxy, as HTTPS_PROXY sets one.
            let proxy = reqwest::Proxy::https(proxy)
                .unwrap()
                .no_proxy(reqwest::NoProxy::from_string(no_proxy));
            let error = client_for(base_url, proxy)
                .get_session("acme", "s1", CallPolicy::once(None))
                .await
                .unwrap_err();
            assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
            // Through the proxy, its task would end right after refusing.
            let mut seen = seen;
            let untouched = tokio::time::timeout(Duration::from_millis(300), &mut seen).await;
            assert!(untouched.is_err(), "{base_url} went through the proxy");
            seen.abort();
        }
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
            client.session_path("acme&co", "a/b").as_str(),
            "http://127.0.0.1:9/prefix/api/v2/subaccounts/acme&co/sessions/a%2Fb"
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_dates_and_is_clamped() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let delay = parse_retry_after(&later).unwrap();
        assert!(delay > Duration::from_secs(25) && delay <= Duration::from_secs(30));
        assert_eq!(parse_retry_after("soon"), None);
        for huge in ["18446744073709551615", "Fri, 31 Dec 9999 23:59:59 GMT"] {
            assert_eq!(parse_retry_after(huge), Some(MAX_RETRY_AFTER), "{huge}");
        }
    }
}
