//! The 8x8 sandbox over real HTTP: spawned on an ephemeral port and driven with reqwest.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use verif8_grpc::sandbox::{RunningSandbox, Sandbox, SandboxConfig};

const KEY: &str = "test-key";
const SUB: &str = "acme_corp";

struct Fixture {
    sandbox: RunningSandbox,
    http: Client,
}

async fn start() -> Fixture {
    start_with(None).await
}

async fn start_with(public_url: Option<&str>) -> Fixture {
    start_configured(public_url, Duration::ZERO).await
}

async fn start_configured(public_url: Option<&str>, latency: Duration) -> Fixture {
    let sandbox = Sandbox::spawn(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            api_key: KEY.into(),
            public_url: public_url.map(str::to_owned),
            latency,
        },
    )
    .await
    .expect("sandbox starts");
    Fixture {
        sandbox,
        http: Client::new(),
    }
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request completes");
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, body)
    }

    async fn create(&self, sub: &str, body: Value) -> (StatusCode, Value) {
        let url = self.url(&format!("/api/v2/subaccounts/{sub}/sessions"));
        self.send(self.http.post(url).bearer_auth(KEY).json(&body))
            .await
    }

    async fn get_session(&self, sub: &str, id: &str, code: Option<&str>) -> (StatusCode, Value) {
        let mut url = self.url(&format!("/api/v2/subaccounts/{sub}/sessions/{id}"));
        if let Some(code) = code {
            url.push_str(&format!("?code={code}"));
        }
        self.send(self.http.get(url).bearer_auth(KEY)).await
    }

    async fn coverage(&self, sub: &str, body: Value) -> (StatusCode, Value) {
        let url = self.url(&format!("/api/v2/subaccounts/{sub}/sma/coverage"));
        self.send(self.http.post(url).bearer_auth(KEY).json(&body))
            .await
    }

    async fn messages(&self, query: &str) -> Vec<Value> {
        let (status, body) = self
            .send(
                self.http
                    .get(self.url(&format!("/_sandbox/messages{query}"))),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        body["messages"].as_array().cloned().unwrap()
    }

    async fn requests(&self) -> Vec<Value> {
        let (status, body) = self
            .send(self.http.get(self.url("/_sandbox/requests")))
            .await;
        assert_eq!(status, StatusCode::OK);
        body["requests"].as_array().cloned().unwrap()
    }

    async fn advance(&self, seconds: f64) {
        let (status, body) = self
            .send(
                self.http
                    .post(self.url("/_sandbox/clock/advance"))
                    .json(&json!({ "seconds": seconds })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        time(&body["now"]);
    }

    /// Creates an SMS session and returns (session, delivered code).
    async fn session_with_code(&self, body: Value) -> (Value, String) {
        let (status, session) = self.create(SUB, body).await;
        assert_eq!(status, StatusCode::OK, "{session}");
        let id = session["sessionId"].as_str().unwrap();
        let messages = self.messages(&format!("?sessionId={id}")).await;
        let code = messages.last().unwrap()["code"]
            .as_str()
            .unwrap()
            .to_owned();
        (session, code)
    }
}

/// Parses an 8x8 timestamp, checking the 7-digit fraction and `+00:00` offset.
fn time(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().expect("timestamp is a string");
    assert!(text.ends_with("+00:00"), "{text}");
    let fraction = text.split('.').nth(1).unwrap().trim_end_matches("+00:00");
    assert_eq!(fraction.len(), 7, "{text}");
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// Asserts an 8x8 error body with the given code.
fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: u64) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let id = uuid::Uuid::parse_str(body["errorId"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 4);
    time(&body["timestamp"]);
}

#[tokio::test]
async fn missing_or_wrong_key_is_401_code_1200() {
    let f = start().await;
    let url = f.url(&format!("/api/v2/subaccounts/{SUB}/sessions"));
    let body = json!({"destination": "+6598765432"});
    for request in [
        f.http.post(&url).json(&body),
        f.http.post(&url).bearer_auth("wrong").json(&body),
        f.http.post(&url).basic_auth(KEY, None::<&str>).json(&body),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_error(status, &body, 401, 1200);
        assert_eq!(body["message"], "Request was not authenticated properly");
    }
    let (status, body) = f
        .send(
            f.http
                .get(f.url(&format!("/api/v2/subaccounts/{SUB}/sessions/abc"))),
        )
        .await;
    assert_error(status, &body, 401, 1200);
    assert!(f.messages("").await.is_empty());
}

#[tokio::test]
async fn subaccount_format_and_ownership() {
    let f = start().await;
    let dest = json!({"destination": "+6598765432"});
    let (status, body) = f.create("ab", dest.clone()).await;
    assert_error(status, &body, 400, 1000);
    let (status, body) = f.create("foreign-acct", dest).await;
    assert_error(status, &body, 400, 1001);
    assert_eq!(
        body["message"],
        "Provided subAccountId doesn't belong to your account"
    );
    let (status, body) = f.get_session("foreign-acct", "abc", None).await;
    assert_error(status, &body, 400, 1001);
    let (status, body) = f
        .coverage("foreign-acct", json!({"clientIp": "1.2.3.4"}))
        .await;
    assert_error(status, &body, 400, 1001);
}

#[tokio::test]
async fn request_validation_codes() {
    let f = start().await;
    let cases = [
        (json!({"destination": "12345"}), 1002),
        (json!({"destination": "+0065987654"}), 1002),
        (json!({"destination": "98765432", "country": "ZZ"}), 1009),
        (json!({"destination": "98765432", "country": "SGP"}), 1010),
        (
            json!({"destination": "+6598765432", "codeLength": 11}),
            1010,
        ),
        (
            json!({"destination": "+6598765432", "codeValidity": 20}),
            1010,
        ),
        (
            json!({"destination": "+6598765432", "resendingInterval": 7201}),
            1010,
        ),
        (
            json!({"destination": "+6598765432", "brand": "x".repeat(31)}),
            1010,
        ),
        (
            json!({"destination": "+6598765432", "channel": "pigeon"}),
            1000,
        ),
        (
            json!({"destination": "+6598765432", "codeType": "HEX"}),
            1000,
        ),
        (
            json!({"destination": "+6598765432", "codeLength": "4"}),
            1000,
        ),
        (
            json!({"destination": "+6598765432", "channel": "whatsapp"}),
            1000,
        ),
        (
            json!({"destination": "+6598765432", "clientIp": "999.1.1.1"}),
            1012,
        ),
        (
            json!({"destination": "+6598765432", "sms": {"source": "Far too long name"}}),
            1005,
        ),
        (
            json!({"destination": "+6598765432", "sms": {"encoding": "ASCII"}}),
            1003,
        ),
        (
            json!({"destination": "+6598765432", "channel": "call", "call": {"speed": 0.4}}),
            1010,
        ),
        (
            json!({"destination": "+6598765432", "channel": "call", "call": {"repetition": 0}}),
            1010,
        ),
        (json!({"country": "SG"}), 1000),
    ];
    for (body, code) in cases {
        let (status, answer) = f.create(SUB, body.clone()).await;
        assert_eq!(answer["code"], code, "{body} -> {answer}");
        assert_error(status, &answer, 400, code);
    }
    assert_eq!(
        f.create(SUB, json!({"destination": "12345"})).await.1["message"],
        "Invalid MSISDN format (not E.164 international number)"
    );
    let url = f.url(&format!("/api/v2/subaccounts/{SUB}/sessions"));
    for raw in ["{\"destination\":", "", "[]", "not json"] {
        let (status, body) = f
            .send(
                f.http
                    .post(&url)
                    .bearer_auth(KEY)
                    .header("content-type", "application/json")
                    .body(raw),
            )
            .await;
        assert_error(status, &body, 400, 1000);
    }
    assert!(f.messages("").await.is_empty(), "nothing sent on errors");
}

#[tokio::test]
async fn sms_session_flow() {
    let f = start().await;
    let before = Utc::now();
    let (session, code) = f
        .session_with_code(json!({"destination": "9876 5432", "country": "SG", "codeLength": 6}))
        .await;
    let id = session["sessionId"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        session["verifyUri"],
        format!("/api/v2/subaccounts/{SUB}/sessions/{id}")
    );
    assert_eq!(session["destination"], "+6598765432");
    assert_eq!(session["status"], "WAITING");
    assert_eq!(session["attempt"], 0);
    assert!(session.get("sma").is_none());
    let expires = time(&session["expiresAt"]) - before;
    let retry = time(&session["retryAfter"]) - before;
    assert!((299..=301).contains(&expires.num_seconds()), "{expires}");
    assert!((9..=11).contains(&retry.num_seconds()), "{retry}");

    let messages = f.messages(&format!("?sessionId={id}")).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["destination"], "+6598765432");
    assert_eq!(messages[0]["channel"], "sms");
    assert_eq!(
        messages[0]["text"],
        format!("Your verification code is {code}")
    );
    assert_eq!(code.len(), 6);
    time(&messages[0]["sentAt"]);
    assert_eq!(f.messages("?destination=6598765432").await.len(), 1);
    assert_eq!(f.messages("?destination=%2B6598765432").await.len(), 1);
    assert!(f.messages("?destination=6511111111").await.is_empty());

    // A read without code changes nothing.
    let (status, read) = f.get_session(SUB, id, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (read["status"].clone(), read["attempt"].clone()),
        (json!("WAITING"), json!(0))
    );
    assert_eq!(read["expiresAt"], session["expiresAt"]);

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, attempt) = f.get_session(SUB, id, Some(wrong)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(attempt["status"], "WAITING");
    assert_eq!(attempt["attempt"], 1);

    let (_, verified) = f.get_session(SUB, id, Some(&code)).await;
    assert_eq!(verified["status"], "VERIFIED");
    assert_eq!(verified["attempt"], 1);
    let (_, again) = f.get_session(SUB, id, Some(wrong)).await;
    assert_eq!(
        (again["status"].clone(), again["attempt"].clone()),
        (json!("VERIFIED"), json!(1))
    );
}

#[tokio::test]
async fn fifth_wrong_code_fails_for_good() {
    let f = start().await;
    let (session, code) = f
        .session_with_code(
            json!({"destination": "+6598765432", "codeType": "ALPHANUMERIC_CAPITALS"}),
        )
        .await;
    let id = session["sessionId"].as_str().unwrap();
    let wrong = "zzzz";
    for n in 1..=4 {
        let (_, s) = f.get_session(SUB, id, Some(wrong)).await;
        assert_eq!(
            (s["status"].clone(), s["attempt"].clone()),
            (json!("WAITING"), json!(n))
        );
    }
    let (_, s) = f.get_session(SUB, id, Some(wrong)).await;
    assert_eq!(
        (s["status"].clone(), s["attempt"].clone()),
        (json!("FAILED"), json!(5))
    );
    let (_, s) = f.get_session(SUB, id, Some(&code)).await;
    assert_eq!(
        (s["status"].clone(), s["attempt"].clone()),
        (json!("FAILED"), json!(5))
    );
}

#[tokio::test]
async fn code_length_and_unknown_sessions() {
    let f = start().await;
    let (session, _) = f
        .session_with_code(json!({"destination": "+6598765432"}))
        .await;
    let id = session["sessionId"].as_str().unwrap();
    for bad in ["12", "12345678901"] {
        let (status, body) = f.get_session(SUB, id, Some(bad)).await;
        assert_error(status, &body, 400, 1010);
    }
    let (_, s) = f.get_session(SUB, id, None).await;
    assert_eq!(s["attempt"], 0, "rejected codes are not attempts");

    let (status, body) = f
        .get_session(SUB, "0123456789abcdef0123456789abcdef", None)
        .await;
    assert_error(status, &body, 404, 1404);
    assert_eq!(body["message"], "Session not found");
    let (status, body) = f.get_session("other_sub", id, Some("1234")).await;
    assert_error(status, &body, 404, 1404);
}

#[tokio::test]
async fn resend_interval_same_code_and_reset() {
    let f = start().await;
    let body = json!({"destination": "+6598765432", "brand": "ACME", "codeValidity": 60});
    let (first, code) = f.session_with_code(body.clone()).await;
    let id = first["sessionId"].as_str().unwrap();

    let (status, err) = f.create(SUB, body.clone()).await;
    assert_error(status, &err, 403, 1400);
    assert_eq!(
        f.messages("").await.len(),
        1,
        "nothing re-sent inside the interval"
    );

    f.advance(30.0).await;
    let (status, resent) = f.create(SUB, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{resent}");
    assert_eq!(resent["sessionId"], id);
    let extension = time(&resent["expiresAt"]) - time(&first["expiresAt"]);
    assert!((29..=31).contains(&extension.num_seconds()), "{extension}");
    let messages = f.messages(&format!("?sessionId={id}")).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["code"], code.as_str());
    assert_eq!(
        messages[1]["text"],
        format!("ACME: Your verification code is {code}")
    );

    // 50 s after the first send the original validity (60 s) would be over; the re-send extended it.
    f.advance(20.0).await;
    let (_, read) = f.get_session(SUB, id, None).await;
    assert_eq!(read["status"], "WAITING");

    let mut reset = body.clone();
    reset["resetSession"] = json!(true);
    reset["codeLength"] = json!(10);
    let (status, renewed) = f.create(SUB, reset).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(renewed["sessionId"], id);
    let messages = f.messages(&format!("?sessionId={id}")).await;
    assert_eq!(messages.len(), 3);
    let new_code = messages[2]["code"].as_str().unwrap();
    assert_eq!(new_code.len(), 10);
    let (_, old) = f.get_session(SUB, id, Some(&code)).await;
    assert_eq!(old["attempt"], 1, "the old code no longer works");
    let (_, ok) = f.get_session(SUB, id, Some(new_code)).await;
    assert_eq!(ok["status"], "VERIFIED");
}

#[tokio::test]
async fn expiry_via_clock() {
    let f = start().await;
    let (session, code) = f
        .session_with_code(json!({"destination": "+6598765432", "codeValidity": 30}))
        .await;
    let id = session["sessionId"].as_str().unwrap();
    f.advance(31.0).await;
    let (_, read) = f.get_session(SUB, id, None).await;
    assert_eq!(read["status"], "EXPIRED");
    let (_, late) = f.get_session(SUB, id, Some(&code)).await;
    assert_eq!(
        (late["status"].clone(), late["attempt"].clone()),
        (json!("EXPIRED"), json!(0))
    );
    let (status, fresh) = f.create(SUB, json!({"destination": "+6598765432"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(fresh["sessionId"], session["sessionId"]);
    assert_eq!(fresh["status"], "WAITING");
}

#[tokio::test]
async fn templates_and_channels() {
    let f = start().await;
    let (call, code) = f
        .session_with_code(json!({
            "destination": "+14155550123", "channel": "call", "brand": "Shop",
            "template": "{brand} says {code}", "codeType": "NUMERIC_WITH_DASH", "codeLength": 8,
            "call": {"speed": 1.0, "repetition": 2}
        }))
        .await;
    assert_eq!(code.find('-'), Some(3));
    let messages = f
        .messages(&format!(
            "?sessionId={}",
            call["sessionId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(messages[0]["channel"], "call");
    assert_eq!(messages[0]["text"], format!("Shop says {code}"));

    let (wa, code) = f
        .session_with_code(json!({
            "destination": "+6587654321", "channel": "whatsapp", "template": "ignored {code}",
            "whatsapp": {"templateName": "otp"}
        }))
        .await;
    let messages = f
        .messages(&format!("?sessionId={}", wa["sessionId"].as_str().unwrap()))
        .await;
    assert_eq!(messages[0]["channel"], "whatsapp");
    assert_eq!(
        messages[0]["text"],
        format!("Your verification code is {code}")
    );
}

#[tokio::test]
async fn sma_verification_url_flow() {
    let f = start().await;
    let (status, session) = f
        .create(SUB, json!({"destination": "+6587654321", "channel": "sma"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let id = session["sessionId"].as_str().unwrap();
    let url = session["sma"]["verificationUrl"].as_str().unwrap();
    assert_eq!(url, format!("{}/sma/{id}", f.sandbox.base_url));
    assert!(f.messages("").await.is_empty(), "SMA sends no message");

    let (_, read) = f.get_session(SUB, id, None).await;
    assert_eq!(read["sma"]["verificationUrl"], url);
    let (status, visit) = f.send(f.http.get(url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(visit, json!({"verified": true}));
    let (_, read) = f.get_session(SUB, id, None).await;
    assert_eq!(read["status"], "VERIFIED");
    let (_, visit) = f.send(f.http.get(url)).await;
    assert_eq!(visit, json!({"verified": false}));
    let (status, body) = f.send(f.http.get(f.url("/sma/nope"))).await;
    assert_error(status, &body, 404, 1404);

    // Expired SMA sessions cannot be verified by a late visit.
    let (_, expired) = f
        .create(
            SUB,
            json!({"destination": "+6281234567890", "channel": "sma", "codeValidity": 30}),
        )
        .await;
    f.advance(31.0).await;
    let late = expired["sma"]["verificationUrl"].as_str().unwrap();
    assert_eq!(f.send(f.http.get(late)).await.1, json!({"verified": false}));
}

#[tokio::test]
async fn public_url_is_used_for_sma() {
    let f = start_with(Some("https://sandbox.example.test/")).await;
    let (_, session) = f
        .create(SUB, json!({"destination": "+6587654321", "channel": "sma"}))
        .await;
    let id = session["sessionId"].as_str().unwrap();
    assert_eq!(
        session["sma"]["verificationUrl"],
        format!("https://sandbox.example.test/sma/{id}")
    );
}

#[tokio::test]
async fn sma_coverage_rule() {
    let f = start().await;
    let cases = [
        (
            json!({"clientIp": "2001:db8::1", "destination": "+6587654321"}),
            true,
        ),
        (
            json!({"clientIp": "1.2.3.4", "destination": "+628123456789"}),
            true,
        ),
        (
            json!({"clientIp": "1.2.3.4", "destination": "012 345 6789", "country": "MY"}),
            true,
        ),
        (
            json!({"clientIp": "1.2.3.4", "destination": "66812345678"}),
            true,
        ),
        (
            json!({"clientIp": "1.2.3.4", "destination": "+19876543210"}),
            false,
        ),
        (json!({"clientIp": "1.2.3.4"}), true),
        (json!({"clientIp": "2001:db8::1"}), false),
    ];
    for (body, available) in cases {
        let (status, answer) = f.coverage(SUB, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body} -> {answer}");
        assert_eq!(answer, json!({"isAvailable": available}), "{body}");
    }
    let (status, body) = f.coverage(SUB, json!({"destination": "+6587654321"})).await;
    assert_error(status, &body, 400, 1000);
    let (status, body) = f.coverage(SUB, json!({"clientIp": "a.b.c.d"})).await;
    assert_error(status, &body, 400, 1012);
    let (status, body) = f
        .coverage(SUB, json!({"clientIp": "1.2.3.4", "destination": "123"}))
        .await;
    assert_error(status, &body, 400, 1002);
}

#[tokio::test]
async fn requests_are_journaled_including_rejected_ones() {
    let f = start().await;
    let (session, _) = f
        .session_with_code(json!({"destination": "+6598765432", "brand": "B"}))
        .await;
    let id = session["sessionId"].as_str().unwrap();
    f.get_session(SUB, id, Some("9999")).await;
    let url = f.url(&format!("/api/v2/subaccounts/{SUB}/sessions"));
    f.send(f.http.post(&url).body("plain text")).await;

    let requests = f.requests().await;
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(requests[0]["method"], "POST");
    assert_eq!(
        requests[0]["path"],
        format!("/api/v2/subaccounts/{SUB}/sessions")
    );
    assert_eq!(requests[0]["query"], Value::Null);
    assert_eq!(requests[0]["authorization"], format!("Bearer {KEY}"));
    assert_eq!(requests[0]["contentType"], "application/json");
    assert_eq!(
        requests[0]["body"],
        json!({"destination": "+6598765432", "brand": "B"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(requests[0]["rawBody"].as_str().unwrap()).unwrap(),
        requests[0]["body"]
    );
    assert_eq!(requests[1]["method"], "GET");
    assert_eq!(
        requests[1]["path"],
        format!("/api/v2/subaccounts/{SUB}/sessions/{id}")
    );
    assert_eq!(requests[1]["query"], "code=9999");
    assert_eq!(requests[1]["body"], Value::Null);
    assert_eq!(requests[1]["rawBody"], "");
    assert_eq!(requests[2]["authorization"], Value::Null);
    assert_eq!(requests[2]["body"], Value::Null);
    assert_eq!(requests[2]["rawBody"], "plain text");
}

#[tokio::test]
async fn faults_are_served_without_touching_state() {
    let f = start().await;
    let (status, body) = f
        .send(f.http.post(f.url("/_sandbox/faults")).json(&json!({
            "status": 503, "code": 2000, "count": 2, "retryAfterSeconds": 7
        })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let create = json!({"destination": "+6598765432"});
    for _ in 0..2 {
        let response = f
            .http
            .post(f.url(&format!("/api/v2/subaccounts/{SUB}/sessions")))
            .bearer_auth(KEY)
            .json(&create)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["retry-after"], "7");
        let status = response.status();
        assert_error(status, &response.json().await.unwrap(), 503, 2000);
    }
    assert!(
        f.messages("").await.is_empty(),
        "faults do not create sessions"
    );
    let (status, _) = f.create(SUB, create.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        f.requests().await.len(),
        3,
        "faulted requests are journaled too"
    );

    // Delayed fault, then a cleared one.
    f.send(f.http.post(f.url("/_sandbox/faults")).json(&json!({
        "status": 429, "code": 1100, "delayMs": 200
    })))
    .await;
    let started = Instant::now();
    let (status, body) = f.get_session(SUB, "abc", None).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_error(status, &body, 429, 1100);
    f.send(
        f.http
            .post(f.url("/_sandbox/faults"))
            .json(&json!({"status": 500})),
    )
    .await;
    let (status, _) = f.send(f.http.delete(f.url("/_sandbox/faults"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = f.get_session(SUB, "abc", None).await;
    assert_error(status, &body, 404, 1404);

    let (status, body) = f
        .send(
            f.http
                .post(f.url("/_sandbox/faults"))
                .json(&json!({"status": 200})),
        )
        .await;
    assert_error(status, &body, 400, 1000);
}

#[tokio::test]
async fn unknown_routes_and_limits() {
    let f = start().await;
    let (status, body) = f
        .send(f.http.get(f.url("/api/v3/whatever")).bearer_auth(KEY))
        .await;
    assert_error(status, &body, 404, 1300);
    let (status, body) = f.send(f.http.get(f.url("/nothing/here"))).await;
    assert_error(status, &body, 404, 1300);
    let (status, body) = f
        .send(
            f.http
                .delete(f.url(&format!("/api/v2/subaccounts/{SUB}/sessions")))
                .bearer_auth(KEY),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    let (status, body) = f
        .send(
            f.http
                .post(f.url(&format!("/api/v2/subaccounts/{SUB}/sessions")))
                .bearer_auth(KEY)
                .body(vec![b' '; 70 * 1024]),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, body) = f
        .send(
            f.http
                .post(f.url("/_sandbox/clock/advance"))
                .json(&json!({"seconds": -5})),
        )
        .await;
    assert_error(status, &body, 400, 1010);
}

#[tokio::test]
async fn in_process_messages_and_shutdown() {
    let f = start().await;
    let (session, code) = f
        .session_with_code(json!({"destination": "+6598765432"}))
        .await;
    let listed = f
        .sandbox
        .messages(session["sessionId"].as_str(), Some("6598765432"));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].code, code);
    assert_eq!(listed[0].channel, "sms");

    let base = f.sandbox.base_url.clone();
    f.sandbox.shutdown().await;
    assert!(
        f.http
            .get(format!("{base}/_sandbox/requests"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn latency_delays_every_api_answer_and_nothing_else() {
    let f = start_configured(None, Duration::from_millis(300)).await;
    let started = Instant::now();
    let (status, body) = f.create(SUB, json!({"destination": "+6598765432"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Refused requests wait too: the distance is the network's, not the handler's.
    let started = Instant::now();
    let (status, _) = f
        .send(
            f.http
                .get(f.url(&format!("/api/v2/subaccounts/{SUB}/sessions/x"))),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The sandbox's own inspection routes answer at once.
    let started = Instant::now();
    assert_eq!(f.requests().await.len(), 2);
    assert!(started.elapsed() < Duration::from_millis(300));
}
