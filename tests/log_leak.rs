//! The whole flow at TRACE level, every crate's logs captured: no API key, no
//! OTP code and no full phone number may appear. One test in its own binary:
//! the subscriber is process-wide.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::pb;
use tokio_stream::StreamExt;

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

#[tokio::test]
async fn trace_logs_hold_no_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let mut h = common::start().await;
    const PHONE_DIGITS: &str = "6598765432";
    let session = h
        .start(pb::StartVerificationRequest {
            destination: "+65 9876 5432".into(),
            brand: "Acme".into(),
            // Long and alphanumeric, so it can't occur by chance in a log line.
            code_length: 10,
            code_type: pb::CodeType::Alphanumeric as i32,
            callback_url: "https://hooks.example.com/x".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut watch = h
        .client
        .watch_session(pb::WatchSessionRequest {
            session_id: session.session_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    watch.next().await.unwrap().unwrap();
    let code = h.code_of(&session.session_id).await;
    assert_eq!(code.len(), 10);
    let wrong = "WRONGCODE1";
    for attempt in [wrong, code.as_str()] {
        h.check(&session.session_id, attempt).await.unwrap();
    }
    h.get(&session.session_id).await.unwrap();
    // A refused request still echoes nothing of its input into the logs.
    let _ = h
        .client
        .start_verification(pb::StartVerificationRequest {
            destination: "+65 1234 5678 999 999".into(),
            ..Default::default()
        })
        .await;
    let mut received = 1;
    while let Some(message) = watch.next().await {
        message.unwrap();
        received += 1;
    }
    drop(h);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.lines().count() > 50, "TRACE logging was on:\n{logs}");
    // The per-RPC line names the method, the code and the caller's address.
    let check_line = logs
        .lines()
        .find(|line| line.contains("rpc finished") && line.contains("method=\"CheckCode\""))
        .expect("a line per RPC");
    assert!(
        check_line.contains("code=\"Ok\"") && check_line.contains("peer=127.0.0.1:"),
        "{check_line}"
    );
    // The watch ended on VERIFIED after the snapshot and the change.
    let watch_end = logs
        .lines()
        .find(|line| line.contains("watch stream ended"))
        .expect("a line when the watch stream ends");
    assert!(
        watch_end.contains("ended=\"final_status\"")
            && watch_end.contains(&format!("messages_sent={received}")),
        "{watch_end}"
    );
    for (secret, what) in [
        (common::API_KEY, "API key"),
        (code.as_str(), "OTP code"),
        (PHONE_DIGITS, "phone number"),
        ("9876 5432", "phone number as typed"),
        ("12345678999999", "refused phone number"),
        ("WRONGCODE1", "wrong code"),
    ] {
        let line = logs.lines().find(|line| line.contains(secret));
        assert!(line.is_none(), "{what} in the logs: {line:?}");
    }
}
