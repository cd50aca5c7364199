//! Log output: tracing-subscriber's fmt layer, plain or JSON, filtered by
//! `RUST_LOG` (default `info`), beside the traces layer when traces are on.

use std::io::IsTerminal;

use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use super::traces;
use crate::config::LogFormat;

/// Logs go to stdout through tracing-appender's writer thread, so a request
/// never waits on a `write(2)`. Keep the guard alive: dropping it flushes
/// what is left.
pub fn init(
    format: LogFormat,
    traces: Option<traces::BoxedLayer>,
) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    // Spans and events meant for traces never reach the log output, whatever
    // RUST_LOG says: log lines keep their shape with traces on or off.
    let not_traces = filter_fn(|metadata| metadata.target() != traces::TARGET);
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .and(not_traces);
    // Colours only for a terminal: a log file or collector gets plain text.
    let output = fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::stdout().is_terminal());
    let output = match format {
        LogFormat::Plain => output.with_filter(filter).boxed(),
        LogFormat::Json => output.json().with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(traces)
        .with(output)
        .init();
    guard
}
