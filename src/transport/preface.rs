//! hyper's HTTP/2 server waits for a client's preface without a deadline, so
//! a TCP connection that sends nothing would hold a socket and a task until
//! the maximum connection age. Each accepted connection is handed to tonic
//! only once its 24-byte preface has arrived; one that doesn't send it within
//! `PREFACE_TIMEOUT` is closed. The check runs in its own task, so slow or
//! silent connections never hold up the accept loop.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use super::accept::next_connection;

pub const PREFACE_TIMEOUT: Duration = Duration::from_secs(30);
const PREFACE_LEN: usize = 24;
/// How often a connection that sent part of its preface is looked at again.
const PEEK_INTERVAL: Duration = Duration::from_millis(20);

/// The connections of `incoming` that sent their preface in time, until
/// `stopping` (which also closes the listening socket).
pub fn gate(
    mut incoming: TcpIncoming,
    stopping: CancellationToken,
) -> ReceiverStream<io::Result<TcpStream>> {
    let (ready, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(stream) = next_connection(&mut incoming, &stopping).await {
            let ready = ready.clone();
            tokio::spawn(async move {
                if sent_preface(&stream).await {
                    let _ = ready.send(Ok(stream)).await;
                } else {
                    tracing::debug!("closed a connection that sent no HTTP/2 preface in time");
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// Waits, without reading, until the first 24 bytes are there.
async fn sent_preface(stream: &TcpStream) -> bool {
    let waiting = async {
        let mut start = [0u8; PREFACE_LEN];
        loop {
            match stream.peek(&mut start).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n >= PREFACE_LEN => return true,
                Ok(_) => tokio::time::sleep(PEEK_INTERVAL).await,
            }
        }
    };
    tokio::time::timeout(PREFACE_TIMEOUT, waiting)
        .await
        .unwrap_or(false)
}
