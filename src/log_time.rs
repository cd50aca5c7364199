//! Log timestamps in tracing-subscriber's own format (RFC 3339, UTC,
//! microseconds: `2026-12-01T19:40:02.123456Z`), with the date and time of
//! day formatted once per second per thread: through `fmt` on every line
//! they were a quarter of the per-RPC log line's cost (BENCHMARKS.md).

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

#[derive(Debug, Clone, Copy, Default)]
pub struct UtcMicros;

thread_local! {
    /// The second last formatted on this thread, as `YYYY-MM-DDTHH:MM:SS`.
    static LAST_SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for UtcMicros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        write_timestamp(now, w)
    }
}

fn write_timestamp(since_epoch: Duration, out: &mut impl Write) -> fmt::Result {
    let second = since_epoch.as_secs();
    LAST_SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *cached = second;
            *text = date_and_time(second);
        }
        out.write_str(text)
    })?;
    let mut fraction = *b".000000Z";
    let mut micros = since_epoch.subsec_micros();
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
}

fn date_and_time(second: u64) -> String {
    i64::try_from(second)
        .ok()
        .and_then(|second| chrono::DateTime::from_timestamp(second, 0))
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(since_epoch: Duration) -> String {
        let mut text = String::new();
        write_timestamp(since_epoch, &mut text).unwrap();
        text
    }

    #[test]
    fn formats_like_tracing_subscriber() {
        assert_eq!(
            at(Duration::new(1_764_618_002, 123_456_789)),
            "2025-12-01T19:40:02.123456Z"
        );
        // Same second, other fraction: the cached part is reused.
        assert_eq!(
            at(Duration::new(1_764_618_002, 7_000)),
            "2025-12-01T19:40:02.000007Z"
        );
        assert_eq!(
            at(Duration::new(1_764_618_003, 0)),
            "2025-12-01T19:40:03.000000Z"
        );
        assert_eq!(at(Duration::ZERO), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn the_line_matches_the_default_timer_to_the_second() {
        let mut ours = String::new();
        UtcMicros.format_time(&mut Writer::new(&mut ours)).unwrap();
        let mut default = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut default))
            .unwrap();
        assert_eq!(ours.len(), default.len(), "{ours} vs {default}");
        // Both end in `.ffffffZ`; the seconds agree unless a second ticked over.
        let seconds = |text: &str| text[..19].to_owned();
        assert!(
            seconds(&ours) == seconds(&default) || ours < default,
            "{ours} vs {default}"
        );
    }
}
