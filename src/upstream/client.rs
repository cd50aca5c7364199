//! One shared HTTP client for every call to 8x8.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::time::Instant;
use url::Url;

use super::config::{ApiKeys, UpstreamConfig};
use super::connector::Connector;
use super::error::{ApiError, UpstreamError};
use super::session::SessionInfo;
use super::wire::{CoverageBody, SmaCoverageRequest, StartRequest};
use crate::metrics;

/// 8x8's answers are a few hundred bytes; anything far larger is refused
/// rather than buffered.
const MAX_BODY_BYTES: usize = 256 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const USER_AGENT: &str = concat!("verif8-grpc/", env!("CARGO_PKG_VERSION"));

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

/// hyper-util's pooled client, HTTP/1.1 or HTTP/2 (by ALPN) over rustls.
/// Not reqwest: for these four fixed calls its per-request URL re-parsing
/// (twice, in its redirect layer and response) cost more CPU than the
/// whole HTTP exchange (BENCHMARKS.md).
type HttpClient = Client<hyper_rustls::HttpsConnector<Connector>, Full<Bytes>>;

#[derive(Clone)]
pub struct UpstreamClient {
    http: HttpClient,
    /// `{base URL}/api/v2/subaccounts/`: every call's path continues it.
    subaccounts_root: Arc<str>,
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
    /// Egress proxies come from the environment (`HTTPS_PROXY`, `NO_PROXY`…).
    pub fn new(config: UpstreamConfig) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::with_proxies(config, Matcher::from_env())
    }

    fn with_proxies(
        config: UpstreamConfig,
        proxies: Matcher,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(UpstreamClient {
            http: http_client(Connector::new(proxies, CONNECT_TIMEOUT))?,
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
        let url = self.url(subaccount, &["sessions"]);
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
        url.push_str("?code=");
        url.extend(form_urlencoded::byte_serialize(code.as_bytes()));
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
        let url = self.url(subaccount, &["sma", "coverage"]);
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

    fn session_url(&self, subaccount: &str, session_id: &str) -> String {
        self.url(subaccount, &["sessions", session_id])
    }

    /// `…/subaccounts/{subaccount}/{segments…}`, each segment percent-encoded.
    fn url(&self, subaccount: &str, segments: &[&str]) -> String {
        let mut url = String::with_capacity(self.subaccounts_root.len() + 64);
        url.push_str(&self.subaccounts_root);
        url.extend(utf8_percent_encode(subaccount, PATH_SEGMENT));
        for segment in segments {
            url.push('/');
            url.extend(utf8_percent_encode(segment, PATH_SEGMENT));
        }
        url
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
        // Building the request can't fail for validated input; if it did,
        // nothing was sent, which is what Connect tells callers.
        let uri =
            Uri::try_from(url).map_err(|e| UpstreamError::Connect(format!("request URI: {e}")))?;
        let body = match body {
            Some(body) => Bytes::from(
                serde_json::to_vec(body)
                    .map_err(|e| UpstreamError::Connect(format!("request JSON: {e}")))?,
            ),
            None => Bytes::new(),
        };
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
                    uri.clone(),
                    body.clone(),
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

    async fn send_once(
        &self,
        endpoint: &'static str,
        subaccount: &str,
        method: Method,
        uri: Uri,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, UpstreamError> {
        let authorization = self
            .authorization
            .for_subaccount(subaccount)
            .ok_or_else(|| UpstreamError::NoApiKey(subaccount.to_owned()))?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, authorization.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, USER_AGENT);
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| UpstreamError::Connect(format!("request: {e}")))?;
        // One time limit for the answer's head and body together.
        tokio::time::timeout(timeout, self.exchange(endpoint, request))
            .await
            .unwrap_or(Err(UpstreamError::Timeout))
    }

    async fn exchange(
        &self,
        endpoint: &'static str,
        request: Request<Full<Bytes>>,
    ) -> Result<Bytes, UpstreamError> {
        let sent = std::time::Instant::now();
        let answer = self.http.request(request).await;
        metrics::upstream_call(
            endpoint,
            answer.as_ref().ok().map(|r| r.status().as_u16()),
            sent.elapsed(),
        );
        let response = answer.map_err(UpstreamError::from_http)?;
        let status = response.status();
        LAST_STATUS
            .try_with(|last| last.set(Some(status.as_u16())))
            .ok();
        let retry_after = retry_after(response.headers());
        let body = read_capped(response.into_body()).await?;
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

/// Pooled connections; TLS with the webpki roots, HTTP/2 when 8x8 offers it.
fn http_client(tcp: Connector) -> Result<HttpClient, Box<dyn std::error::Error + Send + Sync>> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(TokioTimer::new())
        .build(connector))
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

async fn read_capped(body: hyper::body::Incoming) -> Result<Bytes, UpstreamError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(UpstreamError::Malformed(format!(
            "answer larger than {MAX_BODY_BYTES} bytes"
        ))),
        Err(error) => Err(UpstreamError::Transport(super::error::root_cause(&*error))),
    }
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

    fn client_for(base_url: &str, proxies: Matcher) -> UpstreamClient {
        UpstreamClient::with_proxies(
            UpstreamConfig {
                base_url: Url::parse(base_url).unwrap(),
                keys: ApiKeys::single(secrecy::SecretString::from("key")),
                timeout: Duration::from_secs(5),
            },
            proxies,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn https_calls_go_through_the_configured_proxy() {
        let (proxy, seen) = refusing_proxy().await;
        let client = client_for(
            "https://verify.8x8.invalid/",
            Matcher::builder().https(proxy).build(),
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
            let proxies = Matcher::builder()
                .all(proxy.clone())
                .https(proxy)
                .no(no_proxy)
                .build();
            let error = client_for(base_url, proxies)
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
            client.session_url("acme&co", "a/b").as_str(),
            "http://127.0.0.1:9/prefix/api/v2/subaccounts/acme&co/sessions/a%2Fb"
        );
    }
}
