//! Kept-alive connections to 8x8, reused most-recent first. A connection is
//! taken out for one exchange at a time and put back only when its answer
//! was complete and the server agreed to keep it; one dropped mid-exchange
//! (timeout, cancelled call) is simply closed.
//!
//! Idle connections are kept per thread and reused only on the thread that
//! opened them: a socket stays registered with the runtime it was opened on,
//! and used from another serving thread its every answer would be passed
//! between the two threads' event loops.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::Poll;
use std::thread::ThreadId;
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
    /// Each thread's idle connections, oldest first; taken from the back.
    idle: Mutex<Vec<(ThreadId, Vec<Idle>)>>,
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
        let mut all = self.all_idle();
        let idle = this_thread(&mut all);
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
        let mut all = self.all_idle();
        let idle = this_thread(&mut all);
        let newest = idle.pop()?;
        if newest.since.elapsed() >= IDLE_TIMEOUT {
            // Every other one is older still.
            idle.clear();
            return None;
        }
        Some(newest.connection)
    }

    fn all_idle(&self) -> MutexGuard<'_, Vec<(ThreadId, Vec<Idle>)>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The calling thread's idle connections (a serving thread or two, and the
/// main runtime's workers: a short list).
fn this_thread(all: &mut Vec<(ThreadId, Vec<Idle>)>) -> &mut Vec<Idle> {
    let thread = std::thread::current().id();
    let index = match all.iter().position(|(owner, _)| *owner == thread) {
        Some(index) => index,
        None => {
            all.push((thread, Vec::new()));
            all.len() - 1
        }
    };
    &mut all[index].1
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
        this_thread(&mut pool.all_idle()).push(Idle {
            connection: stale,
            since: Instant::now() - IDLE_TIMEOUT,
        });
        // Putting another back drops the expired one, closing it.
        pool.checkin(fresh);
        assert_eq!(this_thread(&mut pool.all_idle()).len(), 1);
        let mut byte = [0];
        assert_eq!(stale_server.read(&mut byte).await.unwrap(), 0);

        this_thread(&mut pool.all_idle())[0].since = Instant::now() - IDLE_TIMEOUT;
        assert!(pool.take_idle().is_none());
        assert!(this_thread(&mut pool.all_idle()).is_empty());
    }

    #[tokio::test]
    async fn a_connection_is_reused_only_on_the_thread_that_opened_it() {
        let (pool, listener) = pool_and_listener().await;
        let pool = std::sync::Arc::new(pool);
        let elsewhere = pool.clone();
        let opened_elsewhere = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let connection = elsewhere.checkout().await.unwrap();
                let port = local_port(&connection);
                elsewhere.checkin(connection);
                // Reused on its own thread.
                let again = elsewhere.checkout().await.unwrap();
                assert_eq!(local_port(&again), port);
                elsewhere.checkin(again);
                port
            })
        });
        let (_elsewhere_server, _) = listener.accept().await.unwrap();
        let elsewhere_port = opened_elsewhere.join().unwrap();

        let here = pool.checkout().await.unwrap();
        assert_ne!(local_port(&here), elsewhere_port);
        let opened = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(
            opened.is_ok(),
            "a new connection was opened for this thread"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_error() {
        let (pool, listener) = pool_and_listener().await;
        drop(listener);
        let error = pool.checkout().await.unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
    }
}
