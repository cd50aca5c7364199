//! gRPC connections served on a fixed set of threads, each running its own
//! single-threaded tokio runtime. A connection is handed to one thread, in
//! turn, and everything its calls spawn stays on that thread: the HTTP/2
//! connection task, each call's task and its 8x8 connections. tokio's
//! work-stealing scheduler instead wakes idle workers to look for work and
//! moves a call's tasks between threads: on the benchmark box a GetSession
//! took 3.4 context switches instead of 2, and serving threads cut the
//! facade's CPU per call by 20–30 % at concurrency 64 (BENCHMARKS.md).
//! Threads still run in parallel across connections.

use std::future::Future;
use std::net::TcpStream as StdTcpStream;
use std::num::NonZeroUsize;
use std::pin::Pin;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::server::BoxError;

/// The connections one thread is given, registered with its own runtime.
pub type Connections = BoxStream<'static, std::io::Result<TcpStream>>;

/// What a serving thread runs: serve the connections until they end or the
/// server's shutdown signal drains them.
pub type ServeFn = Box<dyn FnOnce(Connections) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

pub struct ServingThreads {
    handoff: Vec<mpsc::UnboundedSender<StdTcpStream>>,
    next: usize,
    finished: Vec<oneshot::Receiver<()>>,
    /// Ends every thread's serving at once, dropping its connections.
    abort: CancellationToken,
}

impl ServingThreads {
    /// Starts `count` threads; `make_serve(i)` builds thread `i`'s work.
    pub fn start(
        count: NonZeroUsize,
        mut make_serve: impl FnMut(usize) -> Result<ServeFn, BoxError>,
    ) -> Result<Self, BoxError> {
        let abort = CancellationToken::new();
        let mut handoff = Vec::new();
        let mut finished = Vec::new();
        for index in 0..count.get() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let serve = make_serve(index)?;
            let (give, given) = mpsc::unbounded_channel::<StdTcpStream>();
            let (done, finish) = oneshot::channel();
            let abort = abort.clone();
            std::thread::Builder::new()
                .name(format!("grpc-serving-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let connections =
                            tokio_stream::wrappers::UnboundedReceiverStream::new(given)
                                // Registers the socket with this thread's runtime.
                                .map(TcpStream::from_std)
                                .boxed();
                        tokio::select! {
                            () = serve(connections) => {}
                            _ = abort.cancelled() => {}
                        }
                    });
                    // Dropping the runtime here ends whatever it still runs.
                    // A thread that panicked drops `done` without sending.
                    let _ = done.send(());
                })?;
            handoff.push(give);
            finished.push(finish);
        }
        Ok(ServingThreads {
            handoff,
            next: 0,
            finished,
            abort,
        })
    }

    /// Gives an accepted connection to the next thread in turn.
    pub fn hand_over(&mut self, connection: TcpStream) -> std::io::Result<()> {
        // Leaves this runtime's reactor; non-blocking mode stays set.
        let connection = connection.into_std()?;
        let thread = self.next % self.handoff.len();
        self.next = self.next.wrapping_add(1);
        // A thread that has stopped has dropped its receiver: the connection closes.
        let _ = self.handoff[thread].send(connection);
        Ok(())
    }

    /// Waits for every thread to finish serving; an error if one panicked.
    pub async fn finished(&mut self) -> Result<(), BoxError> {
        let mut outcome = Ok(());
        for finish in &mut self.finished {
            if finish.await.is_err() {
                outcome = Err("a gRPC serving thread panicked".into());
            }
        }
        outcome
    }

    /// Stops every thread now, closing the connections it still holds.
    pub fn abort(&self) {
        self.abort.cancel();
    }
}

impl Drop for ServingThreads {
    fn drop(&mut self) {
        self.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each thread reports, per connection it is given, its index and the
    /// name of the thread its work runs on.
    fn reporting(
        seen: mpsc::UnboundedSender<(usize, String)>,
    ) -> impl FnMut(usize) -> Result<ServeFn, BoxError> {
        move |index| {
            let seen = seen.clone();
            let serve: ServeFn = Box::new(move |mut connections: Connections| {
                Box::pin(async move {
                    while let Some(connection) = connections.next().await {
                        connection.expect("registered with this thread's runtime");
                        let thread = std::thread::current().name().unwrap_or("").to_owned();
                        let _ = seen.send((index, thread));
                    }
                })
            });
            Ok(serve)
        }
    }

    #[tokio::test]
    async fn connections_go_to_the_threads_in_turn_and_are_served_there() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let mut threads =
            ServingThreads::start(NonZeroUsize::new(2).unwrap(), reporting(seen_tx)).unwrap();
        let mut clients = Vec::new();
        let mut order = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(address).await.unwrap());
            let (accepted, _) = listener.accept().await.unwrap();
            threads.hand_over(accepted).unwrap();
            order.push(seen.recv().await.unwrap());
        }
        let expected: Vec<(usize, String)> = [0, 1, 0, 1]
            .into_iter()
            .map(|index| (index, format!("grpc-serving-{index}")))
            .collect();
        assert_eq!(order, expected);

        threads.abort();
        tokio::time::timeout(std::time::Duration::from_secs(5), threads.finished())
            .await
            .expect("the threads stop when aborted")
            .unwrap();
    }
}
