//! StartVerification: the exact JSON each channel sends upstream, and local
//! validation that refuses bad input without sending anything.

mod common;

use common::{duration, pb, reason, violated_fields};
use pb::start_verification_request::ChannelOptions;
use serde_json::json;
use tonic::Code;

fn full_request(channel: pb::Channel) -> pb::StartVerificationRequest {
    pb::StartVerificationRequest {
        subaccount_id: "acme_verif8".into(),
        destination: "9876 5432".into(),
        country: "sg".into(),
        channel: channel as i32,
        brand: "Acme".into(),
        code_length: 6,
        code_validity: duration(600),
        code_type: pb::CodeType::AlphanumericEasy as i32,
        language: "en-US".into(),
        reset_session: Some(false),
        resending_interval: duration(30),
        callback_url: "https://hooks.example.com/verif8".into(),
        client_ip: "203.0.113.7".into(),
        ..Default::default()
    }
}

/// The common part of every channel's expected body.
fn expected_common(channel: &str) -> serde_json::Value {
    json!({
        "destination": "98765432",
        "country": "SG",
        "channel": channel,
        "brand": "Acme",
        "codeLength": 6,
        "codeValidity": 600,
        "codeType": "ALPHANUMERIC_EASY",
        "language": "en-US",
        "resetSession": false,
        "resendingInterval": 30,
        "callbackUrl": "https://hooks.example.com/verif8",
        "clientIp": "203.0.113.7"
    })
}

async fn sent_body(request: pb::StartVerificationRequest) -> serde_json::Value {
    let mut h = common::start().await;
    h.client
        .start_verification(request)
        .await
        .expect("start succeeds");
    let requests = h.upstream_requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["method"], "POST");
    assert_eq!(
        requests[0]["path"],
        "/api/v2/subaccounts/acme_verif8/sessions"
    );
    assert_eq!(requests[0]["contentType"], "application/json");
    requests[0]["body"].clone()
}

#[tokio::test]
async fn sms_with_every_option() {
    let mut request = full_request(pb::Channel::Sms);
    request.template = "{brand}: use {code} to sign in".into();
    request.channel_options = Some(ChannelOptions::Sms(pb::SmsOptions {
        source: "Acme".into(),
        encoding: pb::SmsEncoding::Gsm7 as i32,
    }));
    let mut expected = expected_common("sms");
    expected["template"] = json!("{brand}: use {code} to sign in");
    expected["sms"] = json!({"source": "Acme", "encoding": "GSM7"});
    assert_eq!(sent_body(request).await, expected);
}

#[tokio::test]
async fn call_with_every_option() {
    let mut request = full_request(pb::Channel::Call);
    request.template = "Your {brand} code is {code}".into();
    request.channel_options = Some(ChannelOptions::Call(pb::CallOptions {
        source: "+6512345678".into(),
        speed: 0.8,
        repetition: 3,
        voice_profile: "en-US-Kimberly".into(),
    }));
    let mut expected = expected_common("call");
    expected["template"] = json!("Your {brand} code is {code}");
    expected["call"] = json!({
        "source": "+6512345678", "speed": 0.8, "repetition": 3, "voiceProfile": "en-US-Kimberly"
    });
    assert_eq!(sent_body(request).await, expected);
}

#[tokio::test]
async fn whatsapp_with_every_option() {
    let mut request = full_request(pb::Channel::Whatsapp);
    request.channel_options = Some(ChannelOptions::Whatsapp(pb::WhatsAppOptions {
        template_name: "acme_otp".into(),
    }));
    let mut expected = expected_common("whatsapp");
    expected["whatsapp"] = json!({"templateName": "acme_otp"});
    assert_eq!(sent_body(request).await, expected);
}

#[tokio::test]
async fn viber_and_sma() {
    assert_eq!(
        sent_body(full_request(pb::Channel::Viber)).await,
        expected_common("viber")
    );
    assert_eq!(
        sent_body(full_request(pb::Channel::Sma)).await,
        expected_common("sma")
    );
}

#[tokio::test]
async fn minimal_request_sends_only_the_destination() {
    let body = sent_body(pb::StartVerificationRequest {
        destination: "+1 (987) 654-3210".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(body, json!({"destination": "+19876543210"}));
}

#[tokio::test]
async fn delivered_text_uses_the_default_template_with_brand() {
    let mut h = common::start().await;
    let session = h
        .start(pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            brand: "Acme".into(),
            code_type: pb::CodeType::NumericWithDash as i32,
            code_length: 8,
            ..Default::default()
        })
        .await
        .unwrap();
    let messages = h.messages(&session.session_id).await;
    let code = messages[0]["code"].as_str().unwrap();
    assert_eq!(code.len(), 8);
    assert_eq!(code.find('-'), Some(3), "{code}");
    assert_eq!(
        messages[0]["text"],
        format!("Acme: Your verification code is {code}")
    );
}

/// Each case: a request and the fields it must be refused for.
fn invalid_cases() -> Vec<(pb::StartVerificationRequest, Vec<&'static str>)> {
    let base = || pb::StartVerificationRequest {
        destination: "+6598765432".into(),
        ..Default::default()
    };
    let with = |f: &dyn Fn(&mut pb::StartVerificationRequest)| {
        let mut request = base();
        f(&mut request);
        request
    };
    vec![
        (
            with(&|r| r.destination = String::new()),
            vec!["destination"],
        ),
        (with(&|r| r.destination = "12".into()), vec!["destination"]),
        (
            with(&|r| r.destination = "+65 abc".into()),
            vec!["destination"],
        ),
        (
            with(&|r| r.destination = "098765432".into()),
            vec!["destination"],
        ),
        (
            with(&|r| r.destination = "+1234567890123456".into()),
            vec!["destination"],
        ),
        (
            with(&|r| r.subaccount_id = "ab".into()),
            vec!["subaccount_id"],
        ),
        (
            with(&|r| r.subaccount_id = "acme/../x".into()),
            vec!["subaccount_id"],
        ),
        (with(&|r| r.country = "SGP".into()), vec!["country"]),
        (with(&|r| r.brand = "B".repeat(31)), vec!["brand"]),
        (with(&|r| r.code_length = 2), vec!["code_length"]),
        (with(&|r| r.code_length = 11), vec!["code_length"]),
        (
            with(&|r| r.code_validity = duration(29)),
            vec!["code_validity"],
        ),
        (
            with(&|r| r.code_validity = duration(7201)),
            vec!["code_validity"],
        ),
        (
            with(&|r| {
                r.code_validity = Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 5,
                })
            }),
            vec!["code_validity"],
        ),
        (
            with(&|r| r.resending_interval = duration(9)),
            vec!["resending_interval"],
        ),
        (
            with(&|r| r.resending_interval = duration(7201)),
            vec!["resending_interval"],
        ),
        (
            with(&|r| r.template = "no placeholder".into()),
            vec!["template"],
        ),
        (with(&|r| r.language = "en-us".into()), vec!["language"]),
        (
            with(&|r| r.client_ip = "300.1.1.1".into()),
            vec!["client_ip"],
        ),
        (
            with(&|r| r.callback_url = "/relative".into()),
            vec!["callback_url"],
        ),
        (
            with(&|r| r.callback_url = "ftp://example.com/x".into()),
            vec!["callback_url"],
        ),
        (with(&|r| r.channel = 42), vec!["channel"]),
        (with(&|r| r.code_type = 9), vec!["code_type"]),
        (
            with(&|r| r.channel = pb::Channel::Whatsapp as i32),
            vec!["whatsapp.template_name"],
        ),
        (
            with(&|r| {
                r.channel = pb::Channel::Whatsapp as i32;
                r.channel_options = Some(ChannelOptions::Whatsapp(pb::WhatsAppOptions::default()));
            }),
            vec!["whatsapp.template_name"],
        ),
        (
            with(&|r| {
                r.channel = pb::Channel::Call as i32;
                r.channel_options = Some(ChannelOptions::Sms(pb::SmsOptions::default()));
            }),
            vec!["sms"],
        ),
        (
            with(&|r| r.channel_options = Some(ChannelOptions::Call(pb::CallOptions::default()))),
            vec!["call"],
        ),
        (
            with(&|r| {
                r.channel = pb::Channel::Whatsapp as i32;
                r.template = "{code}".into();
                r.channel_options = Some(ChannelOptions::Whatsapp(pb::WhatsAppOptions {
                    template_name: "t".into(),
                }));
            }),
            vec!["template"],
        ),
        (
            with(&|r| {
                r.channel = pb::Channel::Call as i32;
                r.channel_options = Some(ChannelOptions::Call(pb::CallOptions {
                    speed: 2.5,
                    repetition: 4,
                    voice_profile: "v".repeat(51),
                    ..Default::default()
                }));
            }),
            vec!["call.speed", "call.repetition", "call.voice_profile"],
        ),
        (
            with(&|r| {
                r.channel = pb::Channel::Call as i32;
                r.channel_options = Some(ChannelOptions::Call(pb::CallOptions {
                    speed: 0.333,
                    ..Default::default()
                }));
            }),
            vec!["call.speed"],
        ),
        (
            with(&|r| {
                r.channel_options = Some(ChannelOptions::Sms(pb::SmsOptions {
                    source: "TwelveChars1".into(),
                    encoding: 7,
                }));
            }),
            vec!["sms.source", "sms.encoding"],
        ),
        (
            with(&|r| {
                r.channel_options = Some(ChannelOptions::Sms(pb::SmsOptions {
                    source: "+12345678901234567".into(),
                    ..Default::default()
                }));
            }),
            vec!["sms.source"],
        ),
        (
            with(&|r| {
                r.destination = "".into();
                r.brand = "B".repeat(40);
                r.code_length = 1;
            }),
            vec!["destination", "code_length", "brand"],
        ),
    ]
}

#[tokio::test]
async fn invalid_requests_are_refused_locally_with_one_violation_per_field() {
    let mut h = common::start().await;
    for (request, expected) in invalid_cases() {
        let described = format!("{request:?}");
        let status = h.client.start_verification(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{described}");
        assert_eq!(reason(&status), "INVALID_REQUEST", "{described}");
        let mut fields = violated_fields(&status);
        let mut expected: Vec<String> = expected.into_iter().map(String::from).collect();
        fields.sort();
        expected.sort();
        assert_eq!(fields, expected, "{described}");
    }
    assert!(
        h.upstream_requests().await.is_empty(),
        "nothing went upstream"
    );
}

#[tokio::test]
async fn accepted_edge_values_pass_validation() {
    let mut h = common::start().await;
    let mut request = full_request(pb::Channel::Sms);
    request.destination = "+6598765432".into();
    request.country = String::new();
    request.code_length = 10;
    request.code_validity = duration(7200);
    request.resending_interval = duration(10);
    request.brand = "B".repeat(30);
    request.channel_options = Some(ChannelOptions::Sms(pb::SmsOptions {
        source: "+1234567890123456".into(),
        ..Default::default()
    }));
    h.client
        .start_verification(request)
        .await
        .expect("accepted");
}

#[tokio::test]
async fn other_rpcs_validate_too() {
    let mut h = common::start().await;
    let status = h.check("abc", "12").await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["code"]);
    let status = h.check("abc", "12 34").await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["code"]);
    let status = h.get("../etc").await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["session_id"]);
    let status = h
        .client
        .check_sma_coverage(pb::CheckSmaCoverageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["client_ip"]);
    assert!(h.upstream_requests().await.is_empty());
}
