//! Kept-alive connections to 8x8, reused most-recent first. A connection is
//! taken out for one exchange at a time and put back only when its answer
//! was complete and the server agreed to keep it; one dropped mid-exchange
//! (timeout, cancelled call) is simply closed.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

use super::connector::Connector;
use super::error::{UpstreamError, root_cause};

/// A TCP or TLS connection to 8x8, as tokio I/O.
pub(crate) type Connection = TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>;

/// Idle connections older than this are closed rather than reused: servers
/// and load balancers drop idle connections after a minute or so.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept beyond this many are closed.
const MAX_IDLE: usize = 256;

pub(crate) struct Pool {
    connector: HttpsConnector<Connector>,
    /// Scheme and authority of 8x8's base URL: what the connector dials.
    destination: Uri,
    /// Oldest first; taken from the back.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    connection: Connection,
    since: Instant,
}

impl Pool {
    pub(crate) fn new(connector: HttpsConnector<Connector>, destination: Uri) -> Self {
        Pool {
            connector,
            destination,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection that is still open, or else a new one.
    pub(crate) async fn checkout(&self) -> Result<Connection, UpstreamError> {
        while let Some(mut connection) = self.take_idle() {
            if still_open(&mut connection).await {
                return Ok(connection);
            }
        }
        self.connector
            .clone()
            .oneshot(self.destination.clone())
            .await
            .map(TokioIo::new)
            .map_err(|error| UpstreamError::Connect(root_cause(&*error)))
    }

    /// Keeps a connection whose last exchange ended cleanly.
    pub(crate) fn checkin(&self, connection: Connection) {
        let now = Instant::now();
        let mut idle = self.idle();
        // The oldest are the first to expire; dropping them closes them.
        let expired = idle
            .iter()
            .take_while(|entry| now.duration_since(entry.since) >= IDLE_TIMEOUT)
            .count();
        idle.drain(..expired);
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            connection,
            since: now,
        });
    }

    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle();
        let newest = idle.pop()?;
        if newest.since.elapsed() >= IDLE_TIMEOUT {
            // Every other one is older still.
            idle.clear();
            return None;
        }
        Some(newest.connection)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether an idle connection can carry a request: nothing to read yet.
/// A server that closed it (or sent something unasked) makes it readable.
async fn still_open(connection: &mut Connection) -> bool {
    poll_fn(|cx| {
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        Poll::Ready(
            Pin::new(&mut *connection)
                .poll_read(cx, &mut probe)
                .is_pending(),
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::upstream::client::https_connector;

    fn local_port(connection: &Connection) -> u16 {
        match connection.inner() {
            MaybeHttpsStream::Http(tcp) => tcp.inner().local_addr().unwrap().port(),
            MaybeHttpsStream::Https(_) => unreachable!("plain http destination"),
        }
    }

    async fn pool_and_listener() -> (Pool, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let destination: Uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let connector = https_connector(Connector::new(
            hyper_util::client::proxy::matcher::Matcher::builder().build(),
            Duration::from_secs(1),
        ))
        .unwrap();
        (Pool::new(connector, destination), listener)
    }

    #[tokio::test]
    async fn reuses_an_open_connection_and_replaces_a_closed_one() {
        let (pool, listener) = pool_and_listener().await;
        let first = pool.checkout().await.unwrap();
        let (mut first_server, _) = listener.accept().await.unwrap();
        let first_port = local_port(&first);
        pool.checkin(first);

        let again = pool.checkout().await.unwrap();
        assert_eq!(local_port(&again), first_port);
        pool.checkin(again);

        // The server closes the idle connection: the next checkout dials anew.
        first_server.shutdown().await.unwrap();
        drop(first_server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let fresh = pool.checkout().await.unwrap();
        let (_fresh_server, _) = listener.accept().await.unwrap();
        assert_ne!(local_port(&fresh), first_port);
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_closed_not_reused() {
        let (pool, listener) = pool_and_listener().await;
        let stale = pool.checkout().await.unwrap();
        let (mut stale_server, _) = listener.accept().await.unwrap();
        let fresh = pool.checkout().await.unwrap();
        let _fresh_server = listener.accept().await.unwrap();
        pool.idle().push(Idle {
            connection: stale,
            since: Instant::now() - IDLE_TIMEOUT,
        });
        // Putting another back drops the expired one, closing it.
        pool.checkin(fresh);
        assert_eq!(pool.idle().len(), 1);
        let mut byte = [0];
        assert_eq!(stale_server.read(&mut byte).await.unwrap(), 0);

        pool.idle()[0].since = Instant::now() - IDLE_TIMEOUT;
        assert!(pool.take_idle().is_none());
        assert!(pool.idle().is_empty());
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_error() {
        let (pool, listener) = pool_and_listener().await;
        drop(listener);
        let error = pool.checkout().await.unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
    }
}
