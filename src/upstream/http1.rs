//! One HTTP/1.1 request and its answer on a connection to 8x8: the request
//! written in one piece, the answer's head parsed by httparse (hyper's own
//! parser), its body framed by Content-Length, chunked coding or the end of
//! the connection.
//!
//! Why not hyper's client: this service makes four fixed calls with small
//! bodies, and hyper-util's pooled client spent ~23k instructions on each
//! (its pool, a spawned task per connection, hyper's dispatch and header
//! maps), half of what the sandbox spends serving the whole request
//! (BENCHMARKS.md). What hyper would do here beyond these framings (upgrades,
//! pipelining, HTTP/2) 8x8's calls never need.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// More than any answer head 8x8 sends; a larger one is refused.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header lines parsed per answer head.
const MAX_HEADERS: usize = 64;
/// A chunk-size line or trailer line longer than this is refused.
const MAX_LINE_BYTES: usize = 4 * 1024;
const READ_SIZE: usize = 8 * 1024;

/// A request to encode; header values were checked when they were built.
pub(crate) struct Request<'a> {
    pub method: &'static str,
    /// Path and query, already percent-encoded.
    pub target: &'a str,
    pub host: &'a str,
    pub authorization: &'a [u8],
    pub user_agent: &'a str,
    /// JSON; empty for a request without a body.
    pub json_body: &'a [u8],
}

impl Request<'_> {
    /// The request's bytes, head and body, ready to write.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.target.len() + self.json_body.len());
        for part in [
            self.method.as_bytes(),
            b" ",
            self.target.as_bytes(),
            b" HTTP/1.1\r\nhost: ",
            self.host.as_bytes(),
            b"\r\nauthorization: ",
            self.authorization,
            b"\r\naccept: application/json\r\nuser-agent: ",
            self.user_agent.as_bytes(),
            b"\r\n",
        ] {
            out.extend_from_slice(part);
        }
        if !self.json_body.is_empty() {
            out.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
            out.extend_from_slice(self.json_body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.json_body);
        out
    }
}

/// A complete answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
    /// The connection may carry another request.
    pub reusable: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed before the answer was complete")]
    Closed,
    #[error("not an HTTP/1.1 answer: {0}")]
    Protocol(String),
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
}

/// Writes `request` and reads its answer, whose body may be at most
/// `max_body` bytes. Informational (1xx) answers are skipped.
pub(crate) async fn exchange<S>(
    io: &mut S,
    request: &[u8],
    max_body: usize,
) -> Result<Answer, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(request).await?;
    io.flush().await?;
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    loop {
        let head = read_head(io, &mut buf).await?;
        if (100..200).contains(&head.status) {
            continue;
        }
        let body = match head.framing {
            Framing::Empty => Bytes::new(),
            Framing::Length(length) => read_length(io, &mut buf, length, max_body).await?,
            Framing::Chunked => read_chunked(io, &mut buf, max_body).await?,
            Framing::UntilClose => read_to_close(io, &mut buf, max_body).await?,
        };
        // Bytes past the answer mean the peer is out of step with us.
        let reusable = head.keep_alive && head.framing != Framing::UntilClose && buf.is_empty();
        return Ok(Answer {
            status: head.status,
            retry_after: head.retry_after,
            body,
            reusable,
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
    retry_after: Option<Duration>,
}

/// Reads and parses one answer head, leaving what follows it in `buf`.
async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> Result<Head, ExchangeError> {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(buf) {
                Ok(httparse::Status::Complete(length)) => {
                    let head = interpret(&response)?;
                    buf.advance(length);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {}
                Ok(httparse::Status::Partial) => {
                    return Err(ExchangeError::Protocol("answer head too large".into()));
                }
                Err(error) => return Err(ExchangeError::Protocol(error.to_string())),
            }
        }
        fill(io, buf).await?;
    }
}

fn interpret(response: &httparse::Response<'_, '_>) -> Result<Head, ExchangeError> {
    let status = response.code.unwrap_or_default();
    // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 closes it
    // unless told otherwise.
    let mut keep_alive = response.version == Some(1);
    let (mut length, mut chunked, mut transfer_coded) = (None, false, false);
    let mut retry_after = None;
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed: usize = value
                .parse()
                .map_err(|_| ExchangeError::Protocol(format!("content-length {value:?}")))?;
            if length.is_some_and(|earlier| earlier != parsed) {
                return Err(ExchangeError::Protocol("two content-lengths".into()));
            }
            length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_coded = true;
            // Only a final `chunked` frames the body; anything else runs to the close.
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && response.version == Some(0) {
                    keep_alive = true;
                }
            }
        } else if header.name.eq_ignore_ascii_case("retry-after") {
            retry_after = parse_retry_after(value);
        }
    }
    let framing = match (status, transfer_coded, chunked, length) {
        (100..=199 | 204 | 304, ..) => Framing::Empty,
        (_, true, true, _) => Framing::Chunked,
        (_, true, false, _) => Framing::UntilClose,
        (_, false, _, Some(length)) => Framing::Length(length),
        (_, false, _, None) => Framing::UntilClose,
    };
    Ok(Head {
        status,
        framing,
        keep_alive,
        retry_after,
    })
}

/// `Retry-After` as seconds or as an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.to_utc() - chrono::Utc::now()).to_std().ok()
}

async fn read_length<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    length: usize,
    max_body: usize,
) -> Result<Bytes, ExchangeError> {
    if length > max_body {
        return Err(ExchangeError::TooLarge(max_body));
    }
    while buf.len() < length {
        buf.reserve(length - buf.len());
        fill(io, buf).await?;
    }
    Ok(buf.split_to(length).freeze())
}

async fn read_chunked<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    max_body: usize,
) -> Result<Bytes, ExchangeError> {
    let mut body = BytesMut::new();
    loop {
        let (line, size) = loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete(found)) => break found,
                Ok(httparse::Status::Partial) if buf.len() < MAX_LINE_BYTES => {
                    fill(io, buf).await?
                }
                _ => return Err(ExchangeError::Protocol("bad chunk size".into())),
            }
        };
        buf.advance(line);
        if size == 0 {
            return skip_trailers(io, buf).await.map(|()| body.freeze());
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > max_body - body.len() {
            return Err(ExchangeError::TooLarge(max_body));
        }
        while buf.len() < size + 2 {
            fill(io, buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        if &buf[size..size + 2] != b"\r\n" {
            return Err(ExchangeError::Protocol("chunk not followed by CRLF".into()));
        }
        buf.advance(size + 2);
    }
}

/// Reads the trailer section after the last chunk, up to its empty line.
async fn skip_trailers<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> Result<(), ExchangeError> {
    loop {
        match buf.windows(2).position(|pair| pair == b"\r\n") {
            Some(0) => {
                buf.advance(2);
                return Ok(());
            }
            Some(end) => buf.advance(end + 2),
            None if buf.len() < MAX_LINE_BYTES => fill(io, buf).await?,
            None => return Err(ExchangeError::Protocol("trailer line too long".into())),
        }
    }
}

async fn read_to_close<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    max_body: usize,
) -> Result<Bytes, ExchangeError> {
    loop {
        if buf.len() > max_body {
            return Err(ExchangeError::TooLarge(max_body));
        }
        buf.reserve(READ_SIZE);
        if io.read_buf(buf).await? == 0 {
            return Ok(buf.split().freeze());
        }
    }
}

/// Reads more into `buf`; the peer closing first is an error.
async fn fill<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut) -> Result<(), ExchangeError> {
    buf.reserve(READ_SIZE);
    match io.read_buf(buf).await? {
        0 => Err(ExchangeError::Closed),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
