//! How connections to 8x8 are opened: TCP directly, or through an HTTP
//! CONNECT tunnel when the environment names an egress proxy
//! (`HTTPS_PROXY` / `ALL_PROXY`, minus `NO_PROXY`, read as curl does).
//! Only https destinations are tunnelled: a plain-http `--upstream-url` is a
//! local sandbox or test double and is always reached directly.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Connector {
    tcp: HttpConnector,
    proxies: Arc<Matcher>,
}

impl Connector {
    pub(crate) fn new(proxies: Matcher, connect_timeout: Duration) -> Self {
        let mut tcp = HttpConnector::new();
        // https is handled by the TLS layer wrapped around this connector.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        Connector {
            tcp,
            proxies: Arc::new(proxies),
        }
    }
}

impl Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let proxy = match destination.scheme_str() {
            Some("https") => self.proxies.intercept(&destination),
            _ => None,
        };
        match proxy {
            None => {
                let connecting = self.tcp.call(destination);
                Box::pin(async move { Ok(connecting.await?) })
            }
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), self.tcp.clone());
                if let Some(credentials) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(credentials.clone());
                }
                Box::pin(async move { Ok(tunnel.call(destination).await?) })
            }
        }
    }
}
