//! Where log lines go. A line is appended to an in-memory buffer under a
//! short lock; one thread writes the buffer to stdout every 50 ms. At tens
//! of thousands of RPCs a second this costs one `write(2)` per batch
//! instead of one per line plus a thread wake-up per line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Past this many buffered bytes the logging call writes them itself, so a
/// flood of lines slows its authors down instead of growing memory.
const MAX_PENDING_BYTES: usize = 1 << 20;

/// The `MakeWriter` for tracing-subscriber. Cheap to clone.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes out what is left and stops the flushing thread when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

struct Shared {
    pending: Mutex<Vec<u8>>,
    max_pending: usize,
    out: Mutex<Box<dyn Write + Send>>,
    stopping: AtomicBool,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Vec<u8>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves the buffered lines into `spare` and writes them out, keeping
    /// both buffers' capacity so a steady stream of lines allocates nothing.
    /// The output lock is taken first and held throughout, so two flushes
    /// can't write their batches out of order; the pending lock is never
    /// held while waiting for the output.
    fn flush_into(&self, spare: &mut Vec<u8>) {
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::swap(&mut *self.pending(), spare);
        if !spare.is_empty() {
            // Nowhere left to report a failed log write; the lines are dropped.
            let _ = out.write_all(spare).and_then(|()| out.flush());
            spare.clear();
        }
    }
}

impl BatchedWriter {
    /// Batches lines for stdout.
    pub fn stdout() -> (Self, FlushGuard) {
        Self::to(Box::new(std::io::stdout()), FLUSH_EVERY, MAX_PENDING_BYTES)
    }

    pub fn to(
        out: Box<dyn Write + Send>,
        flush_every: Duration,
        max_pending: usize,
    ) -> (Self, FlushGuard) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            max_pending,
            out: Mutex::new(out),
            stopping: AtomicBool::new(false),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("log-flusher".into())
                .spawn(move || {
                    let mut spare = Vec::with_capacity(64 * 1024);
                    while !shared.stopping.load(Ordering::Acquire) {
                        std::thread::park_timeout(flush_every);
                        shared.flush_into(&mut spare);
                    }
                })
                .expect("spawning the log flushing thread")
        };
        let guard = FlushGuard {
            shared: shared.clone(),
            flusher: Some(flusher),
        };
        (BatchedWriter { shared }, guard)
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(flusher) = self.flusher.take() {
            flusher.thread().unpark();
            let _ = flusher.join();
        }
        // Lines logged after the thread's last pass.
        self.shared.flush_into(&mut Vec::new());
    }
}

/// One formatted event, handed over in a single `write_all`.
pub struct LineWriter<'a>(&'a Shared);

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut pending = self.0.pending();
            pending.extend_from_slice(line);
            pending.len() >= self.0.max_pending
        };
        if full {
            self.0.flush_into(&mut Vec::new());
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose contents the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(writer: &BatchedWriter, line: &str) {
        writer.make_writer().write_all(line.as_bytes()).unwrap();
    }

    const NEVER: Duration = Duration::from_secs(3600);

    #[test]
    fn lines_wait_for_the_flush_and_arrive_in_order() {
        let captured = Captured::default();
        let (writer, guard) =
            BatchedWriter::to(Box::new(captured.clone()), NEVER, MAX_PENDING_BYTES);
        log(&writer, "one\n");
        log(&writer, "two\n");
        assert!(
            captured.0.lock().unwrap().is_empty(),
            "batched, not written at once"
        );
        drop(guard);
        assert_eq!(&*captured.0.lock().unwrap(), b"one\ntwo\n");
    }

    #[test]
    fn the_flushing_thread_writes_periodically() {
        let captured = Captured::default();
        let (writer, _guard) = BatchedWriter::to(
            Box::new(captured.clone()),
            Duration::from_millis(5),
            1 << 20,
        );
        log(&writer, "soon\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while captured.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&*captured.0.lock().unwrap(), b"soon\n");
    }

    #[test]
    fn concurrent_floods_lose_nothing_and_keep_each_writers_order() {
        let captured = Captured::default();
        // A small limit: writers flush inline often, alongside the thread.
        let (writer, guard) =
            BatchedWriter::to(Box::new(captured.clone()), Duration::from_millis(1), 512);
        const LINES: usize = 20_000;
        std::thread::scope(|scope| {
            for author in 0..4 {
                let writer = writer.clone();
                scope.spawn(move || {
                    for n in 0..LINES {
                        log(
                            &writer,
                            &format!("{author} {n:08} padding-padding-padding\n"),
                        );
                    }
                });
            }
        });
        drop(guard);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let mut fields = line.split(' ');
            let author: usize = fields.next().unwrap().parse().unwrap();
            let n: usize = fields.next().unwrap().parse().unwrap();
            assert_eq!(n, next[author], "writer {author} out of order");
            next[author] += 1;
        }
        assert_eq!(next, [LINES; 4]);
    }

    #[test]
    fn a_full_buffer_is_written_by_the_logging_call() {
        let captured = Captured::default();
        let (writer, _guard) =
            BatchedWriter::to(Box::new(captured.clone()), NEVER, MAX_PENDING_BYTES);
        let line = "x".repeat(MAX_PENDING_BYTES);
        log(&writer, &line);
        assert_eq!(captured.0.lock().unwrap().len(), MAX_PENDING_BYTES);
    }
}
