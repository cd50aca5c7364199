//! The accept step both listeners share.

use std::io;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Pause after a failed accept (out of file descriptors, say) so the loop
/// doesn't spin on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// The next accepted connection; None once `stopping` is cancelled or the
/// listener has ended. Failed accepts are logged and skipped.
pub async fn next_connection(
    incoming: &mut (impl Stream<Item = io::Result<TcpStream>> + Unpin),
    stopping: &CancellationToken,
) -> Option<TcpStream> {
    loop {
        tokio::select! {
            _ = stopping.cancelled() => return None,
            next = incoming.next() => match next {
                Some(Ok(stream)) => return Some(stream),
                Some(Err(error)) => {
                    tracing::debug!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
                None => return None,
            },
        }
    }
}
