use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const MAX: usize = 1024;

fn get() -> Vec<u8> {
    Request {
        method: "GET",
        target: "/api/v2/subaccounts/acme/sessions/s1",
        host: "127.0.0.1:9",
        authorization: b"Bearer k",
        user_agent: "verif8-grpc/test",
        json_body: b"",
    }
    .encode()
}

/// A peer on a real loopback socket that reads one request head, then
/// writes `pieces` with a short pause between them, and hands back what it read.
async fn exchange_with(pieces: Vec<&'static [u8]>) -> (Result<Answer, ExchangeError>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        while !seen.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            if socket.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            seen.push(byte[0]);
        }
        for piece in pieces {
            socket.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        String::from_utf8(seen).unwrap()
    });
    let mut client = TcpStream::connect(address).await.unwrap();
    let answer = exchange(&mut client, &get(), MAX).await;
    drop(client);
    (answer, peer.await.unwrap())
}

#[test]
fn encodes_a_get_without_body_headers() {
    assert_eq!(
        String::from_utf8(get()).unwrap(),
        "GET /api/v2/subaccounts/acme/sessions/s1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\n\
         authorization: Bearer k\r\naccept: application/json\r\nuser-agent: verif8-grpc/test\r\n\r\n"
    );
}

#[test]
fn encodes_a_post_with_its_json_body() {
    let request = Request {
        method: "POST",
        target: "/p",
        host: "h",
        authorization: b"Bearer k",
        user_agent: "ua",
        json_body: br#"{"a":1}"#,
    }
    .encode();
    assert_eq!(
        String::from_utf8(request).unwrap(),
        "POST /p HTTP/1.1\r\nhost: h\r\nauthorization: Bearer k\r\naccept: application/json\r\n\
         user-agent: ua\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
    );
}

#[tokio::test]
async fn reads_a_content_length_body_split_across_reads() {
    let (answer, seen) = exchange_with(vec![
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"ngth: 11\r\n\r\nhello",
        b" world",
    ])
    .await;
    let answer = answer.unwrap();
    assert_eq!(
        (answer.status, &answer.body[..]),
        (200, &b"hello world"[..])
    );
    assert!(answer.reusable);
    assert!(seen.starts_with("GET /api/v2/subaccounts/acme/sessions/s1 HTTP/1.1\r\n"));
}

#[tokio::test]
async fn decodes_chunked_bodies_with_extensions_and_trailers() {
    let (answer, _) = exchange_with(vec![
        b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\nretry-after: 7\r\n\r\n",
        b"5;ext=1\r\nhello\r\n",
        b"6\r\n world\r\n0\r\n",
        b"x-trailer: 1\r\n\r\n",
    ])
    .await;
    let answer = answer.unwrap();
    assert_eq!(
        (answer.status, &answer.body[..]),
        (404, &b"hello world"[..])
    );
    assert_eq!(answer.retry_after, Some(Duration::from_secs(7)));
    assert!(answer.reusable);
}

#[tokio::test]
async fn skips_informational_answers() {
    let (answer, _) = exchange_with(vec![
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
    ])
    .await;
    assert_eq!(&answer.unwrap().body[..], b"{}");
}

#[tokio::test]
async fn a_body_without_framing_runs_to_the_close_and_ends_the_connection() {
    let (answer, _) = exchange_with(vec![b"HTTP/1.0 200 OK\r\n\r\n{\"a\":", b"1}"]).await;
    let answer = answer.unwrap();
    assert_eq!(&answer.body[..], br#"{"a":1}"#);
    assert!(!answer.reusable);
}

#[tokio::test]
async fn connection_close_and_http_1_0_are_not_reused() {
    for head in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"[..],
        b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
    ] {
        let (answer, _) = exchange_with(vec![head]).await;
        assert!(!answer.unwrap().reusable);
    }
    let (answer, _) = exchange_with(vec![
        b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n",
    ])
    .await;
    assert!(answer.unwrap().reusable);
}

#[tokio::test]
async fn oversized_bodies_are_refused_unread() {
    let (answer, _) = exchange_with(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1025\r\n\r\n"]).await;
    assert!(
        matches!(answer, Err(ExchangeError::TooLarge(MAX))),
        "{answer:?}"
    );
    let (answer, _) = exchange_with(vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"400\r\n",
        &[b'x'; 1024],
        b"\r\n1\r\n",
    ])
    .await;
    assert!(
        matches!(answer, Err(ExchangeError::TooLarge(MAX))),
        "{answer:?}"
    );
}

#[tokio::test]
async fn truncated_and_garbled_answers_are_errors() {
    for (pieces, closed) in [
        (vec![&b""[..]], true),
        (
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"],
            true,
        ),
        (
            vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab"],
            true,
        ),
        (vec![b"SMTP ready\r\n\r\n"], false),
        (
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n"],
            false,
        ),
        (
            vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"],
            false,
        ),
    ] {
        let (answer, _) = exchange_with(pieces).await;
        match answer {
            Err(ExchangeError::Closed) if closed => {}
            Err(ExchangeError::Protocol(_)) if !closed => {}
            other => panic!("expected an error (closed: {closed}), got {other:?}"),
        }
    }
}

#[test]
fn retry_after_takes_seconds_and_dates() {
    assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
    let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
    let delay = parse_retry_after(&later).unwrap();
    assert!(delay > Duration::from_secs(100) && delay <= Duration::from_secs(120));
    assert_eq!(parse_retry_after("soon"), None);
}
