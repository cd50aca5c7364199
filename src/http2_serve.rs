//! One serving thread's gRPC connections, served by hyper's HTTP/2 server
//! directly. tonic's `Server` wraps every call in layers this service has no
//! use for (connection info, a timeout layer our own deadlines make
//! redundant, error recovery for services that can't fail, each a boxed
//! future) and its responses carry a `date` header no gRPC client reads.

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::grpc_router::GrpcRouter;
use crate::serving_threads::Connections;

/// The HTTP/2 settings of every connection.
#[derive(Clone, Copy, Debug)]
pub struct Http2Settings {
    pub max_concurrent_streams: u32,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// After this long a connection is asked to close (GOAWAY), so clients
    /// reconnect now and then and new replicas get their share.
    pub max_connection_age: Duration,
    /// How long calls on an aged connection may take to finish.
    pub max_connection_age_grace: Duration,
}

/// Serves `connections` until they end or `stopping` is cancelled, then
/// closes each connection gracefully and returns once all are closed.
pub async fn serve(
    mut connections: Connections,
    router: GrpcRouter,
    settings: Http2Settings,
    stopping: CancellationToken,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_concurrent_streams)
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .auto_date_header(false);
    let open = TaskTracker::new();
    loop {
        let next = tokio::select! {
            next = connections.next() => next,
            _ = stopping.cancelled() => break,
        };
        match next {
            Some(Ok(connection)) => {
                open.spawn(serve_connection(
                    builder.clone(),
                    connection,
                    router.clone(),
                    settings,
                    stopping.clone(),
                ));
            }
            Some(Err(error)) => tracing::warn!(%error, "registering a gRPC connection failed"),
            None => break,
        }
    }
    // Connections handed over but not yet served close now, not after the drain.
    drop(connections);
    open.close();
    open.wait().await;
}

async fn serve_connection(
    builder: hyper::server::conn::http2::Builder<TokioExecutor>,
    connection: TcpStream,
    router: GrpcRouter,
    settings: Http2Settings,
    stopping: CancellationToken,
) {
    let service = TowerToHyperService::new(
        router.map_request(|request: Request<Incoming>| request.map(tonic::body::Body::new)),
    );
    let mut served = pin!(builder.serve_connection(TokioIo::new(connection), service));
    let grace = tokio::select! {
        outcome = served.as_mut() => return log_end(outcome),
        // The server's own shutdown grace bounds the wait from here.
        _ = stopping.cancelled() => None,
        _ = tokio::time::sleep(settings.max_connection_age) => Some(settings.max_connection_age_grace),
    };
    served.as_mut().graceful_shutdown();
    match grace {
        None => log_end(served.await),
        Some(grace) => match tokio::time::timeout(grace, served).await {
            Ok(outcome) => log_end(outcome),
            Err(_) => tracing::debug!("closed an aged connection with calls still open"),
        },
    }
}

fn log_end(outcome: Result<(), hyper::Error>) {
    if let Err(error) = outcome {
        tracing::debug!(%error, "gRPC connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Instant;

    use http::Response;
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::body::Body;
    use tonic::server::NamedService;

    /// A service whose calls never answer.
    #[derive(Clone)]
    struct Silent;

    impl NamedService for Silent {
        const NAME: &'static str = "test.Silent";
    }

    impl tower::Service<Request<Body>> for Silent {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            Box::pin(std::future::pending())
        }
    }

    const AGE: Duration = Duration::from_millis(300);
    const GRACE: Duration = Duration::from_millis(300);

    async fn start(
        stopping: CancellationToken,
        max_connection_age: Duration,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = TcpListenerStream::new(listener).boxed();
        let settings = Http2Settings {
            max_concurrent_streams: 16,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_connection_age,
            max_connection_age_grace: GRACE,
        };
        let router = GrpcRouter::default().add_service(Silent);
        let served = tokio::spawn(serve(connections, router, settings, stopping));
        (address, served)
    }

    /// An HTTP/2 client connection; the handle ends when the server closes it.
    async fn connect(
        address: SocketAddr,
    ) -> (
        hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
        tokio::task::JoinHandle<()>,
    ) {
        let tcp = TcpStream::connect(address).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        let closed = tokio::spawn(async move {
            let _ = connection.await;
        });
        (sender, closed)
    }

    fn call(path: &str) -> Request<Empty<Bytes>> {
        Request::post(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .body(Empty::new())
            .unwrap()
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_once_it_reaches_its_age() {
        let (address, _served) = start(CancellationToken::new(), AGE).await;
        let opened = Instant::now();
        let (_sender, closed) = connect(address).await;
        tokio::time::timeout(AGE * 10, closed)
            .await
            .expect("the server closes an aged connection")
            .unwrap();
        assert!(
            opened.elapsed() >= AGE,
            "closed after {:?}",
            opened.elapsed()
        );
    }

    #[tokio::test]
    async fn an_aged_connection_gets_the_grace_then_is_closed_under_open_calls() {
        let (address, _served) = start(CancellationToken::new(), AGE).await;
        let opened = Instant::now();
        let (mut sender, closed) = connect(address).await;
        let open_call = sender.send_request(call("/test.Silent/Wait"));
        let (answer, _) = tokio::join!(open_call, async {
            tokio::time::timeout(AGE * 10, closed)
                .await
                .expect("the grace period ends the connection")
                .unwrap()
        });
        assert!(answer.is_err(), "the open call ends with the connection");
        assert!(
            opened.elapsed() >= AGE + GRACE,
            "closed after {:?}",
            opened.elapsed()
        );
    }

    #[tokio::test]
    async fn stopping_ends_serving_once_connections_close() {
        let stopping = CancellationToken::new();
        // Aged connections would close too, but only after an hour.
        let (address, served) = start(stopping.clone(), Duration::from_secs(3600)).await;
        let (mut sender, closed) = connect(address).await;
        // An unknown service answers at once, so the connection is known to be served.
        let answer = sender
            .send_request(call("/test.Unknown/Call"))
            .await
            .unwrap();
        assert_eq!(answer.headers()["grpc-status"], "12");
        assert!(answer.headers().get("date").is_none());
        stopping.cancel();
        tokio::time::timeout(Duration::from_secs(5), async {
            closed.await.unwrap();
            served.await.unwrap();
        })
        .await
        .expect("serving ends after a graceful close");
    }
}
