//! The facade's connections to 8x8, seen from a stand-in upstream that
//! counts the TCP connections it accepts: calls reuse a kept-alive
//! connection, and an answer with `Connection: close` is honoured.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SESSION: &str =
    r#"{"sessionId":"abc","status":"WAITING","attempt":0,"destination":"6598765432"}"#;

/// Answers every request on a connection with `SESSION`, adding `extra`
/// header lines; returns its URL and the count of connections accepted.
async fn counting_upstream(extra: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut chunk = [0; 4096];
                loop {
                    // GETs only: a request ends with its head.
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{SESSION}",
                            SESSION.len()
                        );
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => pending.extend_from_slice(&chunk[..read]),
                    }
                }
            });
        }
    });
    (url, accepted)
}

async fn get_sessions(url: &str, calls: usize) {
    let (addr, _stop) = common::spawn_facade(common::facade_options(url, "k")).await;
    let mut client = common::connect(addr).await;
    for _ in 0..calls {
        let session = client
            .get_session(pb::GetSessionRequest {
                session_id: "abc".into(),
                ..Default::default()
            })
            .await
            .expect("the stand-in answers")
            .into_inner()
            .session
            .unwrap();
        assert_eq!(session.status(), pb::SessionStatus::Waiting);
    }
}

#[tokio::test]
async fn calls_one_after_another_share_one_connection() {
    let (url, accepted) = counting_upstream("").await;
    get_sessions(&url, 5).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_answer_with_connection_close_is_not_followed_on_its_connection() {
    let (url, accepted) = counting_upstream("connection: close\r\n").await;
    get_sessions(&url, 3).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}
