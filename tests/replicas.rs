//! Several replicas of the real binary sharing a private Redis, all calling
//! one sandbox: what one replica learns or does holds for the others, with
//! exact upstream request counts from the sandbox's log.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{RedisServer, Replica, check_at_sandbox, code_of, count_requests, sandbox};
use common::{pb, reason};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::codec::Streaming;

const SESSIONS: &str = "/sessions";

fn start_request(destination: &str, request_id: &str) -> pb::StartVerificationRequest {
    pb::StartVerificationRequest {
        destination: destination.into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

/// A session started through `replica` (no request_id).
async fn start_session(replica: &Replica, destination: &str) -> pb::Session {
    replica
        .client()
        .await
        .start_verification(start_request(destination, ""))
        .await
        .expect("the start succeeds")
        .into_inner()
        .session
        .expect("a session")
}

async fn watch(replica: &Replica, session_id: &str) -> Streaming<pb::WatchSessionResponse> {
    let mut stream = replica
        .client()
        .await
        .watch_session(pb::WatchSessionRequest {
            session_id: session_id.into(),
            ..Default::default()
        })
        .await
        .expect("watch opens")
        .into_inner();
    let snapshot = next(&mut stream).await;
    assert_eq!(snapshot.kind(), pb::WatchEventKind::Snapshot);
    stream
}

async fn next(stream: &mut Streaming<pb::WatchSessionResponse>) -> pb::WatchSessionResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a message within 10 s")
        .expect("the stream is open")
        .expect("a message, not an error")
}

/// Reads until the session's status is final; returns that message.
async fn final_message(
    stream: &mut Streaming<pb::WatchSessionResponse>,
) -> pb::WatchSessionResponse {
    loop {
        let message = next(stream).await;
        if message.session.as_ref().unwrap().status() != pb::SessionStatus::Waiting {
            return message;
        }
    }
}

#[tokio::test]
async fn a_request_id_sends_one_sms_whichever_replicas_it_reaches() {
    let redis = RedisServer::start().await;
    // Slow enough that the duplicates arrive while the first is in flight.
    let sandbox = sandbox(Duration::from_millis(300)).await;
    let replicas = Replica::three(&sandbox, &redis.url(), &[]).await;
    let request = start_request("+6591234567", "3f2a1c9e-0b7d-4e8a-9c61-2d5f7a8b9c0d");
    let mut calls = Vec::new();
    for replica in &replicas {
        let mut client = replica.client().await;
        let request = request.clone();
        calls.push(tokio::spawn(async move {
            client.start_verification(request).await
        }));
    }
    let mut ids = Vec::new();
    for call in calls {
        let answer = call
            .await
            .unwrap()
            .expect("every replica answers the start");
        ids.push(answer.into_inner().session.unwrap().session_id);
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");

    // A later retry on another replica is answered from Redis too.
    let again = replicas[1]
        .client()
        .await
        .start_verification(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.session.unwrap().session_id, ids[0]);
    assert_eq!(count_requests(&sandbox, "POST", SESSIONS).await, 1);

    // The same ID with another payload, on a third replica.
    let mut other = request.clone();
    other.destination = "+6591234568".into();
    let refused = replicas[2]
        .client()
        .await
        .start_verification(other)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(reason(&refused), "REQUEST_ID_REUSED");
    assert_eq!(count_requests(&sandbox, "POST", SESSIONS).await, 1);
}

#[tokio::test]
async fn a_session_watched_on_three_replicas_is_polled_by_one() {
    let redis = RedisServer::start().await;
    let sandbox = sandbox(Duration::ZERO).await;
    let fast = [
        "--poll-min-interval",
        "200ms",
        "--poll-max-interval",
        "200ms",
    ];
    let replicas = Replica::three(&sandbox, &redis.url(), &fast).await;
    let session = start_session(&replicas[0], "+6591234567").await;
    let mut streams = Vec::new();
    for replica in &replicas {
        streams.push(watch(replica, &session.session_id).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Only the lease holder polled, and the sandbox saw exactly its polls.
    // A poll is counted just before its GET leaves: read both again when
    // one fell between the two reads.
    let (mut polls, mut gets) = (Vec::new(), 0);
    for _ in 0..5 {
        polls.clear();
        for replica in &replicas {
            polls.push(replica.metric("verif8_polls_total").await as usize);
        }
        gets = count_requests(&sandbox, "GET", &session.session_id).await;
        if gets == polls.iter().sum::<usize>() {
            break;
        }
    }
    assert_eq!(polls.iter().filter(|p| **p > 0).count(), 1, "{polls:?}");
    assert_eq!(gets, polls.iter().sum::<usize>(), "{polls:?}");
    // One poller's worth: 3 s at 200 ms ± 20 % jitter, not three pollers'.
    assert!((10..=20).contains(&gets), "{gets} polls");

    // The final status reaches the watchers on all three.
    let code = code_of(&sandbox, &session.session_id).await;
    check_at_sandbox(&sandbox, &session.session_id, &code).await;
    for stream in &mut streams {
        let last = final_message(stream).await;
        assert_eq!(last.session.unwrap().status(), pb::SessionStatus::Verified);
        assert!(stream.next().await.is_none(), "the stream ends OK after it");
    }
}

#[tokio::test]
async fn what_one_replica_learns_reaches_watchers_on_another_at_once() {
    let redis = RedisServer::start().await;
    let sandbox = sandbox(Duration::ZERO).await;
    // Polls far apart: only a write-through can be this quick.
    let slow = ["--poll-min-interval", "60s", "--poll-max-interval", "60s"];
    let watcher_side = Replica::spawn(&sandbox, &redis.url(), &slow).await;
    let caller_side = Replica::spawn(&sandbox, &redis.url(), &slow).await;
    let mut caller = caller_side.client().await;
    let session = caller
        .start_verification(start_request("+6591234567", ""))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let mut stream = watch(&watcher_side, &session.session_id).await;

    let code = code_of(&sandbox, &session.session_id).await;
    let checked_at = Instant::now();
    caller
        .check_code(pb::CheckCodeRequest {
            session_id: session.session_id.clone(),
            code,
            ..Default::default()
        })
        .await
        .unwrap();
    let message = next(&mut stream).await;
    let took = checked_at.elapsed();
    assert_eq!(
        message.session.as_ref().unwrap().status(),
        pb::SessionStatus::Verified
    );
    assert_eq!(message.source(), pb::ObservationSource::CheckCode);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // The snapshot was the only read: the rest came from the other replica.
    assert_eq!(
        count_requests(&sandbox, "GET", &session.session_id).await,
        2
    );
}

#[tokio::test]
async fn a_callback_hint_on_any_replica_makes_the_poller_read_at_once() {
    let redis = RedisServer::start().await;
    let sandbox = sandbox(Duration::ZERO).await;
    let slow = ["--poll-min-interval", "60s", "--poll-max-interval", "60s"];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let public = format!("http://127.0.0.1:{}", common::cluster::free_port());
        let mut args = slow.to_vec();
        args.extend(["--public-url", &public]);
        replicas.push(Replica::spawn(&sandbox, &redis.url(), &args).await);
    }
    let session = start_session(&replicas[0], "+6591234567").await;
    let mut stream = watch(&replicas[1], &session.session_id).await;
    // The token replica 0 gave 8x8, as 8x8 would call it back.
    let start = common::cluster::upstream_requests(&sandbox).await;
    let callback_url = start[0]["body"]["callbackUrl"].as_str().unwrap().to_owned();
    let token = callback_url.rsplit('/').next().unwrap();

    let code = code_of(&sandbox, &session.session_id).await;
    check_at_sandbox(&sandbox, &session.session_id, &code).await;
    let hinted = reqwest::Client::new()
        .post(format!("http://{}/callbacks/{token}", replicas[2].http))
        .send()
        .await
        .unwrap();
    assert_eq!(hinted.status(), 204);
    let message = next(&mut stream).await;
    assert_eq!(
        message.session.as_ref().unwrap().status(),
        pb::SessionStatus::Verified
    );
    assert_eq!(message.source(), pb::ObservationSource::Callback);
}

#[tokio::test]
async fn the_poll_budget_holds_for_all_replicas_together() {
    let redis = RedisServer::start().await;
    let sandbox = sandbox(Duration::ZERO).await;
    let args = [
        "--poll-min-interval",
        "100ms",
        "--poll-max-interval",
        "100ms",
        "--poll-budget",
        "5",
    ];
    let replicas = Replica::three(&sandbox, &redis.url(), &args).await;
    // Nine sessions, three watched on each replica: 90 polls/s wanted.
    let mut client = replicas[0].client().await;
    let mut streams = Vec::new();
    for i in 0..9 {
        let session = client
            .start_verification(start_request(&format!("+659123450{i}"), ""))
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        streams.push(watch(&replicas[i % 3], &session.session_id).await);
    }
    let before = count_requests(&sandbox, "GET", SESSIONS).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let polls = count_requests(&sandbox, "GET", SESSIONS).await - before;
    // 5/s for 4 s, and one grant of slack at the window's edge; three
    // budgets of their own would have made it about 60.
    assert!((15..=21).contains(&polls), "{polls} polls in 4 s");
}

#[tokio::test]
async fn when_the_lease_holder_stops_another_replica_takes_over() {
    let redis = RedisServer::start().await;
    let sandbox = sandbox(Duration::ZERO).await;
    let args = [
        "--poll-min-interval",
        "500ms",
        "--poll-max-interval",
        "500ms",
    ];
    let mut holder = Replica::spawn(&sandbox, &redis.url(), &args).await;
    let follower = Replica::spawn(&sandbox, &redis.url(), &args).await;
    let session = start_session(&holder, "+6591234567").await;
    let mut on_holder = watch(&holder, &session.session_id).await;
    let mut on_follower = watch(&follower, &session.session_id).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(holder.metric("verif8_polls_total").await > 0.0);
    assert_eq!(follower.metric("verif8_polls_total").await, 0.0);

    holder.terminate();
    let ended = on_holder.next().await.unwrap().unwrap_err();
    assert_eq!(reason(&ended), "SHUTTING_DOWN");
    let code = code_of(&sandbox, &session.session_id).await;
    check_at_sandbox(&sandbox, &session.session_id, &code).await;
    let stopped_at = Instant::now();
    let last = final_message(&mut on_follower).await;
    assert_eq!(
        last.session.as_ref().unwrap().status(),
        pb::SessionStatus::Verified
    );
    assert_eq!(last.source(), pb::ObservationSource::Poll);
    assert!(stopped_at.elapsed() < Duration::from_secs(5));
    assert!(follower.metric("verif8_polls_total").await > 0.0);
}

#[tokio::test]
async fn while_redis_is_down_request_ids_are_refused_and_watches_go_on() {
    // Redis isn't running when the replicas start.
    let mut redis = RedisServer::not_started();
    let sandbox = sandbox(Duration::ZERO).await;
    let args = [
        "--poll-min-interval",
        "300ms",
        "--poll-max-interval",
        "300ms",
    ];
    let a = Replica::spawn(&sandbox, &redis.url(), &args).await;
    let b = Replica::spawn(&sandbox, &redis.url(), &args).await;
    a.wait_for_redis(false).await;
    let mut client = a.client().await;

    let refused = client
        .start_verification(start_request(
            "+6591234599",
            "0e8b5f6a-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(reason(&refused), "IDEMPOTENCY_STORE_UNAVAILABLE");
    assert!(
        tonic_types::StatusExt::get_error_details(&refused)
            .retry_info()
            .is_some()
    );
    assert_eq!(count_requests(&sandbox, "POST", SESSIONS).await, 0);
    // Without a request_id nothing can be sent twice: it goes ahead.
    let session = client
        .start_verification(start_request("+6591234567", ""))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let mut on_a = watch(&a, &session.session_id).await;
    let mut on_b = watch(&b, &session.session_id).await;

    // Redis comes up: both notice without a restart, and the open streams stay.
    redis.restart().await;
    a.wait_for_redis(true).await;
    b.wait_for_redis(true).await;
    let retried = client
        .start_verification(start_request(
            "+6591234599",
            "0e8b5f6a-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
        ))
        .await
        .expect("with Redis back, the request_id is served");
    assert!(retried.into_inner().session.is_some());

    // Redis restarts empty (leases and all): the watches still see the end.
    redis.restart().await;
    let code = code_of(&sandbox, &session.session_id).await;
    check_at_sandbox(&sandbox, &session.session_id, &code).await;
    for stream in [&mut on_a, &mut on_b] {
        let last = final_message(stream).await;
        assert_eq!(
            last.session.as_ref().unwrap().status(),
            pb::SessionStatus::Verified
        );
    }
}

#[tokio::test]
async fn a_redis_that_never_answers_does_not_hold_a_call_past_its_deadline() {
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/0", silent.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let sandbox = sandbox(Duration::ZERO).await;
    // Redis's own bound longer than the caller's deadline, so the deadline decides first.
    let replica = Replica::spawn(&sandbox, &url, &["--redis-timeout", "3s"]).await;
    let mut client = replica.client().await;
    let request_id = "5d1c7b2a-9e8f-4a6b-b3c2-1d0e9f8a7b6c";

    let mut with_deadline = tonic::Request::new(start_request("+6591234567", request_id));
    with_deadline.set_timeout(Duration::from_secs(1));
    let asked = Instant::now();
    let refused = client.start_verification(with_deadline).await.unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_millis(1200),
        "{:?}",
        asked.elapsed()
    );
    // Ours comes 50 ms before the deadline, where tonic would answer CANCELLED.
    assert_eq!(refused.code(), Code::DeadlineExceeded);
    assert_eq!(reason(&refused), "REQUEST_ID_IN_FLIGHT");

    // Without a deadline the store's own bound (--redis-timeout) answers.
    let asked = Instant::now();
    let refused = client
        .start_verification(start_request("+6591234567", request_id))
        .await
        .unwrap_err();
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(reason(&refused), "IDEMPOTENCY_STORE_UNAVAILABLE");
    assert_eq!(count_requests(&sandbox, "POST", SESSIONS).await, 0);
}

#[tokio::test]
async fn a_send_limit_holds_for_all_replicas_together() {
    let redis = RedisServer::start().await;
    let sandbox = sandbox(Duration::ZERO).await;
    let args = ["--send-limit", "client_ip=2/10m"];
    let replicas = Replica::three(&sandbox, &redis.url(), &args).await;
    let mut outcomes = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        let request = pb::StartVerificationRequest {
            client_ip: "198.51.100.23".into(),
            ..start_request(&format!("+659123456{i}"), "")
        };
        outcomes.push(replica.client().await.start_verification(request).await);
    }
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
    let refused = outcomes[2].as_ref().unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(refused), "SEND_LIMIT_REACHED");
    assert_eq!(count_requests(&sandbox, "POST", SESSIONS).await, 2);

    // Counted under pseudonyms: no phone number or IP in Redis's keys.
    let mut redis_client = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("verif8:*")
        .query_async(&mut redis_client)
        .await
        .unwrap();
    assert!(
        keys.iter()
            .any(|key| key.starts_with("verif8:limit:client_ip:")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .all(|key| !key.contains("659123456") && !key.contains("198.51.100.23")),
        "{keys:?}"
    );
}
