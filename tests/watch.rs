//! WatchSession over real sockets: exact event sequences, single-flight
//! polling and the poll budget measured at the upstream's request log.
//!
//! These run on the real clock: the facade, its reqwest client and the
//! sandbox share sockets, and tokio's paused clock would fire the HTTP
//! client's timeouts while a socket waits. Intervals are short or long
//! enough that the asserted order cannot depend on scheduling noise; the
//! pure schedule and budget logic is tested under the paused clock in
//! src/watch.

mod common;

use std::time::{Duration, Instant};

use common::{fixed_polling, pb, reason};
use tokio_stream::StreamExt;
use tonic::{Code, Streaming};

/// Poll interval long enough that only write-through or hints can explain an event.
const NEVER: Duration = Duration::from_secs(600);

async fn watch(h: &mut common::Harness, session_id: &str) -> Streaming<pb::WatchSessionResponse> {
    h.client
        .watch_session(pb::WatchSessionRequest {
            session_id: session_id.into(),
            ..Default::default()
        })
        .await
        .expect("watch starts")
        .into_inner()
}

async fn next(stream: &mut Streaming<pb::WatchSessionResponse>) -> pb::WatchSessionResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event in time")
        .expect("the stream is open")
        .expect("not an error")
}

async fn assert_ends_ok(stream: &mut Streaming<pb::WatchSessionResponse>) {
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ends in time");
    assert!(end.is_none(), "stream ended with {end:?}");
}

/// (kind, status, previous status, source, attempt) of an event.
fn summary(
    event: &pb::WatchSessionResponse,
) -> (
    pb::WatchEventKind,
    pb::SessionStatus,
    pb::SessionStatus,
    pb::ObservationSource,
    u32,
) {
    let session = event.session.as_ref().unwrap();
    (
        event.kind(),
        session.status(),
        event.previous_status(),
        event.source(),
        session.attempt,
    )
}

use pb::ObservationSource as From;
use pb::SessionStatus as S;
use pb::WatchEventKind as K;

#[tokio::test]
async fn snapshot_then_verified_through_check_code() {
    let mut h = common::start_with(|o, _| o.watch = fixed_polling(NEVER)).await;
    let id = h.start_sms("+6598765432").await.session_id;
    let mut stream = watch(&mut h, &id).await;
    assert_eq!(
        summary(&next(&mut stream).await),
        (K::Snapshot, S::Waiting, S::Unspecified, From::Poll, 0)
    );
    let code = h.code_of(&id).await;
    h.check(&id, &code).await.unwrap();
    assert_eq!(
        summary(&next(&mut stream).await),
        (K::Changed, S::Verified, S::Waiting, From::CheckCode, 0)
    );
    assert_ends_ok(&mut stream).await;
}

#[tokio::test]
async fn a_change_made_only_upstream_is_seen_by_polling() {
    let mut h =
        common::start_with(|o, _| o.watch = fixed_polling(Duration::from_millis(100))).await;
    let id = h.start_sms("+6598765432").await.session_id;
    let mut stream = watch(&mut h, &id).await;
    assert_eq!(next(&mut stream).await.kind(), K::Snapshot);
    let code = h.code_of(&id).await;
    h.check_code_upstream(&id, &code).await;
    assert_eq!(
        summary(&next(&mut stream).await),
        (K::Changed, S::Verified, S::Waiting, From::Poll, 0)
    );
    assert_ends_ok(&mut stream).await;
}

#[tokio::test]
async fn five_wrong_codes_push_each_attempt_then_failed() {
    let mut h = common::start_with(|o, _| o.watch = fixed_polling(NEVER)).await;
    let id = h.start_sms("+6598765432").await.session_id;
    let right = h.code_of(&id).await;
    let wrong = if right == "0000" { "1111" } else { "0000" };
    let mut stream = watch(&mut h, &id).await;
    let mut events = vec![summary(&next(&mut stream).await)];
    for _ in 0..5 {
        h.check(&id, wrong).await.unwrap();
        events.push(summary(&next(&mut stream).await));
    }
    assert_eq!(
        events,
        vec![
            (K::Snapshot, S::Waiting, S::Unspecified, From::Poll, 0),
            (K::Changed, S::Waiting, S::Waiting, From::CheckCode, 1),
            (K::Changed, S::Waiting, S::Waiting, From::CheckCode, 2),
            (K::Changed, S::Waiting, S::Waiting, From::CheckCode, 3),
            (K::Changed, S::Waiting, S::Waiting, From::CheckCode, 4),
            (K::Changed, S::Failed, S::Waiting, From::CheckCode, 5),
        ]
    );
    assert_ends_ok(&mut stream).await;
}

#[tokio::test]
async fn a_resend_pushes_the_extended_expiry() {
    let mut h = common::start_with(|o, _| o.watch = fixed_polling(NEVER)).await;
    let first = h.start_sms("+6598765432").await;
    let mut stream = watch(&mut h, &first.session_id).await;
    assert_eq!(next(&mut stream).await.kind(), K::Snapshot);
    h.advance_clock(11).await;
    h.start_sms("+6598765432").await;
    let event = next(&mut stream).await;
    assert_eq!(
        summary(&event),
        (K::Changed, S::Waiting, S::Waiting, From::Start, 0)
    );
    let extended = event.session.unwrap().expires_at.unwrap();
    assert!(extended.seconds > first.expires_at.unwrap().seconds);
}

#[tokio::test]
async fn unknown_session_is_not_found_before_any_message() {
    let mut h = common::start().await;
    let status = h
        .client
        .watch_session(pb::WatchSessionRequest {
            session_id: "0123456789abcdef0123456789abcdef".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused before streaming");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason(&status), "SESSION_NOT_FOUND");
}

#[tokio::test]
async fn heartbeats_arrive_at_the_requested_cadence() {
    let mut h = common::start_with(|o, _| o.watch = fixed_polling(NEVER)).await;
    let id = h.start_sms("+6598765432").await.session_id;
    let mut stream = h
        .client
        .watch_session(pb::WatchSessionRequest {
            session_id: id,
            heartbeat_interval: common::duration(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut stream).await.kind(), K::Snapshot);
    let started = Instant::now();
    for beat in 1..=2u32 {
        let event = next(&mut stream).await;
        assert_eq!(
            summary(&event),
            (K::Heartbeat, S::Waiting, S::Waiting, From::Poll, 0)
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(950) * beat
                && elapsed < Duration::from_millis(1500) * beat,
            "heartbeat {beat} after {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn one_poller_serves_any_number_of_watchers() {
    let interval = Duration::from_millis(200);
    let mut h = common::start_with(|o, _| o.watch = fixed_polling(interval)).await;
    let mut reads = Vec::new();
    for (n, destination) in [
        (1, "+6591000001"),
        (10, "+6591000010"),
        (100, "+6591000100"),
    ] {
        let id = h.start_sms(destination).await.session_id;
        let mut streams = Vec::new();
        for _ in 0..n {
            let mut stream = watch(&mut h, &id).await;
            assert_eq!(next(&mut stream).await.kind(), K::Snapshot);
            streams.push(stream);
        }
        let before = h.status_reads(&id).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        reads.push(h.status_reads(&id).await - before);
        drop(streams);
    }
    // 1.1 s at one poll per 200 ms: 5 or 6 polls (4 if the machine stalls a
    // tick), whatever the watcher count; a poller per watcher would make ~550
    // for 100 watchers.
    let spread = reads.iter().max().unwrap() - reads.iter().min().unwrap();
    assert!(
        reads.iter().all(|count| (4..=6).contains(count)) && spread <= 1,
        "status reads per window: {reads:?}"
    );
    let requests = h.upstream_requests().await;
    assert!(
        requests.iter().all(|r| r["query"].is_null()),
        "no poll carries a code"
    );
}

#[tokio::test]
async fn polling_stops_when_the_last_watcher_leaves() {
    let mut h = common::start_with(|o, _| o.watch = fixed_polling(Duration::from_millis(50))).await;
    let id = h.start_sms("+6598765432").await.session_id;
    let mut first = watch(&mut h, &id).await;
    let mut second = watch(&mut h, &id).await;
    next(&mut first).await;
    next(&mut second).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let while_one_watches = h.status_reads(&id).await;
    assert!(
        while_one_watches >= 4,
        "still polling for the second watcher"
    );
    drop(second);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_leaving = h.status_reads(&id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.status_reads(&id).await,
        after_leaving,
        "no polls without watchers"
    );
}

#[tokio::test]
async fn the_poll_budget_holds_with_many_sessions() {
    const BUDGET: f64 = 10.0;
    let mut h = common::start_with(|o, _| {
        o.watch = fixed_polling(Duration::from_millis(100));
        o.watch.poll_budget_per_second = BUDGET;
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(h.start_sms(&format!("+659200{i:04}")).await.session_id);
    }
    let started = Instant::now();
    let mut streams = Vec::new();
    for id in &ids {
        // Subscribing concurrently: snapshots wait for their budget slots.
        let mut client = h.client.clone();
        let id = id.clone();
        streams.push(tokio::spawn(async move {
            client
                .watch_session(pb::WatchSessionRequest {
                    session_id: id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut open = Vec::new();
    for stream in streams {
        open.push(stream.await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let polls: usize = {
        let requests = h.upstream_requests().await;
        requests
            .iter()
            .filter(|r| r["method"] == "GET" && r["query"].is_null())
            .count()
    };
    // Unbudgeted, 40 sessions at 100 ms would make ~800 polls here.
    let ceiling = (BUDGET * elapsed).ceil() as usize + 1;
    assert!(
        polls <= ceiling,
        "{polls} polls in {elapsed:.2}s, budget {ceiling}"
    );
    assert!(
        polls >= ceiling * 3 / 4,
        "the budget is used: {polls} of {ceiling}"
    );
}

#[tokio::test]
async fn a_callback_hint_shows_the_change_before_the_next_poll() {
    let mut h = common::start_with(|o, http| {
        o.watch = fixed_polling(NEVER);
        o.public_url = Some(format!("{http}/").parse().unwrap());
    })
    .await;
    let id = h.start_sms("+6598765432").await.session_id;
    let sent = &h.upstream_requests().await[0]["body"];
    let callback_url = sent["callbackUrl"].as_str().unwrap().to_owned();
    let prefix = format!("http://{}/callbacks/", h.http_addr);
    assert!(callback_url.starts_with(&prefix), "{callback_url}");
    assert_eq!(
        callback_url.len(),
        prefix.len() + 32,
        "an unguessable token"
    );

    let mut stream = watch(&mut h, &id).await;
    assert_eq!(next(&mut stream).await.kind(), K::Snapshot);
    let code = h.code_of(&id).await;
    h.check_code_upstream(&id, &code).await;
    // 8x8 calls back; the payload is ignored.
    let posted = h
        .http
        .post(&callback_url)
        .body("{\"status\":\"FAILED\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 204);
    assert_eq!(
        summary(&next(&mut stream).await),
        (K::Changed, S::Verified, S::Waiting, From::Callback, 0)
    );
    // Unknown tokens answer the same, and trigger nothing.
    let probe = h
        .http
        .post(format!("{prefix}0123456789abcdef0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 204);
}

#[tokio::test]
async fn a_callers_own_callback_url_passes_through() {
    let mut h = common::start_with(|o, http| {
        o.public_url = Some(http.parse().unwrap());
    })
    .await;
    h.client
        .start_verification(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            callback_url: "https://hooks.example.com/mine".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let sent = &h.upstream_requests().await[0]["body"];
    assert_eq!(sent["callbackUrl"], "https://hooks.example.com/mine");
}

#[tokio::test]
async fn an_sma_session_is_watched_to_verified() {
    let mut h =
        common::start_with(|o, _| o.watch = fixed_polling(Duration::from_millis(100))).await;
    let session = h
        .start(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            channel: pb::Channel::Sma as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stream = watch(&mut h, &session.session_id).await;
    assert_eq!(next(&mut stream).await.kind(), K::Snapshot);
    h.http.get(&session.verification_url).send().await.unwrap();
    assert_eq!(
        summary(&next(&mut stream).await),
        (K::Changed, S::Verified, S::Waiting, From::Poll, 0)
    );
    assert_ends_ok(&mut stream).await;
}
