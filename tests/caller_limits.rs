//! Limits per caller: sends (`--send-limit caller=…`), a quota of open watch
//! streams, and a flood of watches by one caller doesn't hold up another
//! caller's snapshot.

mod common;

use std::sync::Arc;

use common::callers::{FULL, READER, callers, start, with_token};
use common::{pb, reason};
use tonic::Code;

async fn started_by_billing(h: &mut common::Harness) -> pb::Session {
    let answer = h
        .client
        .start_verification(with_token(start("+6591234567"), FULL))
        .await
        .expect("billing starts a verification");
    answer.into_inner().session.expect("a session")
}

#[tokio::test]
async fn a_caller_holds_no_more_streams_than_its_quota() {
    let mut h = common::start_with(|options, _| {
        options.callers = Some(Arc::new(callers()));
        options.max_watch_streams_per_caller = 2;
    })
    .await;
    let session = started_by_billing(&mut h).await;
    let watch = || pb::WatchSessionRequest {
        session_id: session.session_id.clone(),
        ..Default::default()
    };
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(
            h.client
                .watch_session(with_token(watch(), READER))
                .await
                .unwrap(),
        );
    }
    let refused = h
        .client
        .watch_session(with_token(watch(), READER))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "CALLER_WATCH_STREAMS_EXHAUSTED");
    // Another caller has its own quota, and a closed stream frees a place.
    h.client
        .watch_session(with_token(watch(), FULL))
        .await
        .expect("billing watches");
    drop(open.pop());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    h.client
        .watch_session(with_token(watch(), READER))
        .await
        .expect("a place came back");
}

#[tokio::test]
async fn two_thousand_watches_on_made_up_sessions_dont_hold_up_a_real_watcher() {
    let mut h = common::start_with(|options, _| options.callers = Some(Arc::new(callers()))).await;
    let session = started_by_billing(&mut h).await;
    // The dashboard floods: 2,000 sessions that don't exist, each needing a
    // read under the 20/s poll budget (100 s of reads).
    let mut flood = Vec::new();
    for i in 0..2000 {
        let mut client = h.client.clone();
        flood.push(tokio::spawn(async move {
            let request = pb::WatchSessionRequest {
                session_id: format!("madeup{i:05}"),
                ..Default::default()
            };
            let _ = client.watch_session(with_token(request, READER)).await;
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let asked = std::time::Instant::now();
    let mut stream = h
        .client
        .watch_session(with_token(
            pb::WatchSessionRequest {
                session_id: session.session_id.clone(),
                ..Default::default()
            },
            FULL,
        ))
        .await
        .expect("billing's watch opens")
        .into_inner();
    let snapshot = stream.message().await.unwrap().unwrap();
    let waited = asked.elapsed();
    assert_eq!(snapshot.kind(), pb::WatchEventKind::Snapshot);
    assert!(
        waited < std::time::Duration::from_secs(2),
        "snapshot after {waited:?}"
    );
    for task in flood {
        task.abort();
    }
}

#[tokio::test]
async fn a_caller_send_limit_counts_its_sends_to_any_destination() {
    let mut h = common::start_with(|options, _| {
        options.callers = Some(Arc::new(callers()));
        options.protection.send_limits = vec!["caller=2/1h".parse().unwrap()];
    })
    .await;
    for destination in ["+6591234561", "+6591234562"] {
        h.client
            .start_verification(with_token(start(destination), FULL))
            .await
            .expect("within the caller's limit");
    }
    let refused = h
        .client
        .start_verification(with_token(start("+6591234563"), FULL))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "SEND_LIMIT_REACHED");
    let details = tonic_types::StatusExt::get_error_details(&refused);
    assert_eq!(
        details.quota_failure().unwrap().violations[0].subject,
        "caller"
    );
    let posts = h
        .upstream_requests()
        .await
        .iter()
        .filter(|r| r["method"] == "POST")
        .count();
    assert_eq!(posts, 2);
}
