//! A log line's fields as `message name=value name=value`, the layout of
//! tracing-subscriber's default, written without styling. The default passes
//! every field name and `=` through nu_ansi_term even with colours off, which
//! was ~40 % of the per-RPC line's cost (BENCHMARKS.md).
//!
//! As with the default, values are written with `Debug` (text fields come
//! quoted, their control characters escaped) and `%` fields with `Display`.
//! The message is written bare, with control characters other than newline
//! and tab escaped, so a formatted message can't send escape sequences to a
//! terminal. An error value is written with `Display`, without the default's
//! list of its sources.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // `log` records carry their metadata as `log.*` fields, which the
        // formatter has already written as the line's target and level.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if name == "message" {
            self.writer
                .write_str(separator)
                .and_then(|()| write!(EscapeControls(&mut self.writer), "{value:?}"))
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            write!(self.writer, "{separator}{name}={value:?}")
        };
    }
}

/// Passes text through, writing control characters (but newline and tab)
/// as `\u{..}` escapes.
struct EscapeControls<'a, W>(&'a mut W);

impl<W: Write> Write for EscapeControls<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(|c: char| c.is_control() && c != '\n' && c != '\t') {
            self.0.write_str(&rest[..at])?;
            let control = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "\\u{{{:x}}}", control as u32)?;
            rest = &rest[at + control.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The lines `log` writes, formatted by `fields`, without time and level.
    fn lines_with(
        fields: impl for<'w> FormatFields<'w> + Send + Sync + 'static,
        log: impl FnOnce(),
    ) -> String {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .with_target(false)
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    fn rpc_line() {
        let upstream_status: Option<u16> = Some(200);
        tracing::info!(
            method = "GetSession",
            code = "Ok",
            latency_us = 211u64,
            upstream_status,
            "rpc finished"
        );
    }

    #[test]
    fn the_rpc_line_reads_as_the_default_formatter_writes_it() {
        let plain = lines_with(PlainFields, rpc_line);
        assert_eq!(
            plain,
            "rpc finished method=\"GetSession\" code=\"Ok\" latency_us=211 upstream_status=200\n"
        );
        let default = lines_with(
            tracing_subscriber::fmt::format::DefaultFields::new(),
            rpc_line,
        );
        assert_eq!(plain, default);
    }

    #[test]
    fn display_values_errors_and_raw_names_are_written_plainly() {
        let error = std::io::Error::other("refused");
        let line = lines_with(PlainFields, || {
            tracing::warn!(
                r#type = "sms",
                upstream = %"http://127.0.0.1:1/",
                error = &error as &(dyn std::error::Error + 'static),
                "no answer"
            )
        });
        assert_eq!(
            line,
            "no answer type=\"sms\" upstream=http://127.0.0.1:1/ error=refused\n"
        );
    }

    #[test]
    fn control_characters_in_the_message_are_escaped() {
        let hostile = "red\x1b[31m bell\x07 c1\u{9b} line\nnext\ttab";
        let line = lines_with(PlainFields, || tracing::warn!("got {hostile}"));
        assert_eq!(
            line,
            "got red\\u{1b}[31m bell\\u{7} c1\\u{9b} line\nnext\ttab\n"
        );
    }

    #[test]
    fn text_fields_are_quoted_with_their_controls_escaped() {
        let line = lines_with(PlainFields, || tracing::info!(value = "a\x1bb", "seen"));
        assert_eq!(line, "seen value=\"a\\u{1b}b\"\n");
    }
}
