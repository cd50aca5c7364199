//! Protecting the account: send limits, failed checks across re-sends,
//! countries per channel. Every refusal is counted at the sandbox: nothing
//! reaches 8x8.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, pb, reason};
use tonic::Code;
use tonic_types::StatusExt;
use verif8_grpc::protection::{CountryRules, ProtectionConfig, Rate, SendLimit};

fn limits(flags: &[&str]) -> Vec<SendLimit> {
    flags.iter().map(|flag| flag.parse().unwrap()).collect()
}

async fn harness(protection: ProtectionConfig) -> Harness {
    common::start_with(move |options, _| options.protection = protection).await
}

fn start(destination: &str) -> pb::StartVerificationRequest {
    pb::StartVerificationRequest {
        destination: destination.into(),
        ..Default::default()
    }
}

async fn posts(h: &Harness) -> usize {
    h.upstream_requests()
        .await
        .iter()
        .filter(|r| r["method"] == "POST")
        .count()
}

/// The QuotaFailure subject and the RetryInfo delay of a refusal.
fn quota_and_retry(status: &tonic::Status) -> (String, Duration) {
    let details = status.get_error_details();
    let subject = details.quota_failure().unwrap().violations[0]
        .subject
        .clone();
    (subject, details.retry_info().unwrap().retry_delay.unwrap())
}

#[tokio::test]
async fn a_destination_gets_its_limit_of_sends_then_is_refused() {
    let mut h = harness(ProtectionConfig {
        send_limits: limits(&["destination=2/10m"]),
        ..Default::default()
    })
    .await;
    h.start(start("+6591234567")).await.unwrap();
    h.advance_clock(30).await; // past 8x8's own resending interval
    h.start(start("+6591234567")).await.unwrap();
    h.advance_clock(30).await;
    let refused = h.start(start("+6591234567")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "SEND_LIMIT_REACHED");
    let (subject, retry) = quota_and_retry(&refused);
    assert_eq!(subject, "destination");
    assert!(
        retry > Duration::from_secs(590) && retry <= Duration::from_secs(600),
        "{retry:?}"
    );
    assert_eq!(posts(&h).await, 2);
    // Another number has its own count.
    h.start(start("+6591234568")).await.unwrap();
    assert_eq!(posts(&h).await, 3);
}

#[tokio::test]
async fn a_client_ip_is_limited_across_destinations() {
    let mut h = harness(ProtectionConfig {
        send_limits: limits(&["destination=5/10m", "client_ip=1/1m"]),
        ..Default::default()
    })
    .await;
    let from_ip = |destination: &str| pb::StartVerificationRequest {
        client_ip: "203.0.113.7".into(),
        ..start(destination)
    };
    h.start(from_ip("+6591234567")).await.unwrap();
    let refused = h.start(from_ip("+6591234568")).await.unwrap_err();
    assert_eq!(reason(&refused), "SEND_LIMIT_REACHED");
    assert_eq!(quota_and_retry(&refused).0, "client_ip");
    // Without an IP only the destination limit applies.
    h.start(start("+6591234569")).await.unwrap();
    assert_eq!(posts(&h).await, 2);
}

#[tokio::test]
async fn safe_destinations_and_shadow_mode_refuse_nothing() {
    let mut safe = harness(ProtectionConfig {
        send_limits: limits(&["destination=1/10m"]),
        safe_destinations: HashSet::from(["+6591234567".to_owned()]),
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        safe.start(start("+6591234567")).await.unwrap();
        safe.advance_clock(30).await;
    }
    assert_eq!(posts(&safe).await, 3);

    let mut shadow = harness(ProtectionConfig {
        send_limits: limits(&["destination=1/10m"]),
        shadow: true,
        countries: Arc::new(CountryRules::parse(&["sms=MY".into()]).unwrap()),
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        shadow.start(start("+6591234567")).await.unwrap();
        shadow.advance_clock(30).await;
    }
    assert_eq!(posts(&shadow).await, 3);
}

#[tokio::test]
async fn wrong_codes_count_per_destination_across_re_sends() {
    let mut h = harness(ProtectionConfig {
        failed_check_limit: Rate {
            count: 2,
            window: Duration::from_secs(3600),
        },
        ..Default::default()
    })
    .await;
    let first = h.start(start("+6591234567")).await.unwrap();
    h.check(&first.session_id, "000000").await.unwrap();
    h.advance_clock(30).await;
    // A re-send (a new session for the same number) doesn't reset the count.
    let second = h.start(start("+6591234567")).await.unwrap();
    h.check(&second.session_id, "000001").await.unwrap();
    let before = h.upstream_requests().await.len();

    let refused = h.check(&second.session_id, "000002").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "TOO_MANY_FAILED_CHECKS");
    assert!(refused.get_error_details().retry_info().is_some());
    h.advance_clock(30).await;
    let refused = h.start(start("+6591234567")).await.unwrap_err();
    assert_eq!(reason(&refused), "TOO_MANY_FAILED_CHECKS");
    assert_eq!(h.upstream_requests().await.len(), before, "nothing sent");
    // Another destination is unaffected.
    h.start(start("+6591234568")).await.unwrap();
}

#[tokio::test]
async fn channels_send_only_where_they_are_allowed() {
    let mut h = harness(ProtectionConfig {
        countries: Arc::new(CountryRules::parse(&["sms=SG".into()]).unwrap()),
        ..Default::default()
    })
    .await;
    let refused = h.start(start("+60123456789")).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "DESTINATION_COUNTRY_NOT_ALLOWED");
    assert!(refused.message().contains("MY"), "{}", refused.message());
    assert_eq!(posts(&h).await, 0);
    h.start(start("+6591234567")).await.unwrap();
    // No rule for voice calls: anywhere.
    h.start(pb::StartVerificationRequest {
        channel: pb::Channel::Call as i32,
        ..start("+60123456789")
    })
    .await
    .unwrap();
    assert_eq!(posts(&h).await, 2);

    let metrics = h.metrics().await;
    assert!(
        metrics.contains(r#"verif8_refused_total{reason="DESTINATION_COUNTRY_NOT_ALLOWED"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn subaccounts_nobody_configured_are_refused_before_any_state() {
    let mut h = harness(ProtectionConfig::default()).await;
    let refused = h
        .client
        .watch_session(pb::WatchSessionRequest {
            subaccount_id: "made_up_123".into(),
            session_id: "f2b1c3d4".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "SUBACCOUNT_NOT_CONFIGURED");
    let refused = h
        .start(pb::StartVerificationRequest {
            subaccount_id: "made_up_123".into(),
            ..start("+6591234567")
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "SUBACCOUNT_NOT_CONFIGURED");
    assert!(h.upstream_requests().await.is_empty());
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn ten_thousand_watches_on_made_up_subaccounts_leave_no_memory_behind() {
    let port = common::cluster::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_verif8-grpc"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--sandbox"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    while std::net::TcpStream::connect(addr).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = common::connect(addr).await;
    let watch = |i: usize| pb::WatchSessionRequest {
        subaccount_id: format!("made_up_{i}"),
        session_id: format!("session{i}"),
        ..Default::default()
    };
    // Warm up the connection and allocator, and wait for what loads in the
    // background at startup (a start needs libphonenumber's data), then measure.
    client
        .start_verification(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..200 {
        let _ = client.watch_session(watch(i)).await;
    }
    let before = rss_kib(child.id());
    for i in 0..10_000 {
        let refused = client.watch_session(watch(i)).await.unwrap_err();
        assert_eq!(reason(&refused), "SUBACCOUNT_NOT_CONFIGURED");
    }
    let after = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(after < before + 1024, "RSS {before} KiB -> {after} KiB");
}

#[tokio::test]
async fn a_number_counts_as_one_however_it_is_written() {
    let mut h = harness(ProtectionConfig {
        send_limits: limits(&["destination=1/10m"]),
        countries: Arc::new(CountryRules::parse(&["sms=SG".into()]).unwrap()),
        ..Default::default()
    })
    .await;
    // National with its country: SG by the rule, and a send to +6591234567.
    h.start(pb::StartVerificationRequest {
        country: "SG".into(),
        ..start("9123 4567")
    })
    .await
    .expect("a national SG number passes the sms=SG rule");
    h.advance_clock(30).await;
    for spelling in ["+6591234567", "+65 9123-4567", "6591234567"] {
        let refused = h.start(start(spelling)).await.unwrap_err();
        assert_eq!(reason(&refused), "SEND_LIMIT_REACHED", "{spelling}");
    }
    assert_eq!(posts(&h).await, 1);
}
