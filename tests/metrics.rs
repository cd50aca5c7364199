//! /metrics on the HTTP listener after a known sequence of calls. One test
//! in its own binary: the registry is process-wide.

mod common;

use common::pb;
use tokio_stream::StreamExt;

#[tokio::test]
async fn metrics_count_rpcs_upstream_calls_watches_and_conversions() {
    let mut h = common::start().await;
    let sms = h.start_sms("+6598765432").await.session_id;
    h.client
        .start_verification(pb::StartVerificationRequest {
            destination: "+6598765433".into(),
            channel: pb::Channel::Call as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut watch = h
        .client
        .watch_session(pb::WatchSessionRequest {
            session_id: sms.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    watch.next().await.unwrap().unwrap();
    let code = h.code_of(&sms).await;

    let url = format!("http://{}/metrics", h.http_addr);
    let text = h.http.get(&url).send().await.unwrap().text().await.unwrap();
    for line in [
        "verif8_rpcs_total{method=\"StartVerification\",code=\"Ok\",caller=\"\"} 2",
        "verif8_upstream_calls_total{endpoint=\"start\",status=\"200\"} 2",
        "verif8_verifications_started_total{channel=\"sms\"} 1",
        "verif8_verifications_started_total{channel=\"call\"} 1",
        "verif8_watch_streams 1",
        "verif8_polls_total 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        !text.contains("verif8_rpcs_total{method=\"WatchSession\""),
        "an open stream isn't counted yet: {text}"
    );
    assert!(
        !text.contains("verif8_verifications_verified_total{"),
        "{text}"
    );

    h.check(&sms, &code).await.unwrap();
    // Seen VERIFIED again: still one conversion.
    h.get(&sms).await.unwrap();
    assert!(watch.next().await.unwrap().is_ok());
    assert!(watch.next().await.is_none());
    drop(watch);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let text = h.http.get(&url).send().await.unwrap().text().await.unwrap();
    for line in [
        "verif8_verifications_verified_total{channel=\"sms\"} 1",
        "verif8_upstream_calls_total{endpoint=\"check_code\",status=\"200\"} 1",
        "verif8_rpcs_total{method=\"CheckCode\",code=\"Ok\",caller=\"\"} 1",
        // A stream counts when it ends, with the code it ended with.
        "verif8_rpcs_total{method=\"WatchSession\",code=\"Ok\",caller=\"\"} 1",
        "verif8_watch_streams 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("verif8_rpc_seconds_bucket{le="), "{text}");
    assert!(
        text.contains("verif8_upstream_seconds_count{endpoint=\"start\"} 2"),
        "{text}"
    );
}
