//! State-machine tests: expiry, attempts, re-sends, scoping and SMA.

use super::*;

fn request(dest: &str) -> StartRequest {
    StartRequest {
        subaccount: "acme".into(),
        destination: dest.into(),
        channel: Channel::Sms,
        brand: None,
        template: None,
        code_type: CodeType::Numeric,
        code_length: 6,
        validity: Duration::seconds(300),
        resend_interval: Duration::seconds(10),
        reset_session: false,
    }
}

fn start(store: &mut SessionStore, now: DateTime<Utc>) -> (Session, String) {
    let (s, d) = store.start(request("6598765432"), now).unwrap();
    (s, d.unwrap().code)
}

#[test]
fn new_session_shape() {
    let mut store = SessionStore::default();
    let now = Utc::now();
    let (s, d) = store.start(request("6598765432"), now).unwrap();
    assert_eq!(s.id.len(), 32);
    assert!(
        s.id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!((s.status, s.attempt), (Status::Waiting, 0));
    assert_eq!(s.expires_at, now + Duration::seconds(300));
    assert_eq!(s.retry_after, now + Duration::seconds(10));
    let d = d.unwrap();
    assert_eq!(d.text, format!("Your verification code is {}", d.code));
}

#[test]
fn right_code_verifies_and_is_final() {
    let mut store = SessionStore::default();
    let now = Utc::now();
    let (s, code) = start(&mut store, now);
    let v = store.attempt("acme", &s.id, &code, now).unwrap();
    assert_eq!(v.status, Status::Verified);
    let again = store.attempt("acme", &s.id, "000000x", now).unwrap();
    assert_eq!((again.status, again.attempt), (Status::Verified, 0));
}

#[test]
fn fifth_wrong_code_fails_for_good() {
    let mut store = SessionStore::default();
    let now = Utc::now();
    let (s, code) = start(&mut store, now);
    let wrong = format!("x{code}");
    for n in 1..=4 {
        let v = store.attempt("acme", &s.id, &wrong, now).unwrap();
        assert_eq!((v.status, v.attempt), (Status::Waiting, n));
    }
    let v = store.attempt("acme", &s.id, &wrong, now).unwrap();
    assert_eq!((v.status, v.attempt), (Status::Failed, 5));
    let v = store.attempt("acme", &s.id, &code, now).unwrap();
    assert_eq!((v.status, v.attempt), (Status::Failed, 5));
}

#[test]
fn codes_are_case_sensitive() {
    let mut store = SessionStore::default();
    let now = Utc::now();
    let mut req = request("6598765432");
    req.code_type = CodeType::AlphanumericCapitals;
    req.code_length = 10;
    let (s, d) = store.start(req, now).unwrap();
    let code = d.unwrap().code;
    if code.bytes().any(|b| b.is_ascii_uppercase()) {
        let v = store
            .attempt("acme", &s.id, &code.to_lowercase(), now)
            .unwrap();
        assert_eq!(v.attempt, 1);
    }
    let v = store.attempt("acme", &s.id, &code, now).unwrap();
    assert_eq!(v.status, Status::Verified);
}

#[test]
fn resend_inside_interval_is_refused() {
    let mut store = SessionStore::default();
    let now = Utc::now();
    let (s, _) = start(&mut store, now);
    let err = store.start(request("6598765432"), now + Duration::seconds(9));
    assert_eq!(
        err.unwrap_err(),
        StartError::ResendTooSoon {
            retry_after: s.retry_after
        }
    );
}

#[test]
fn resend_keeps_code_and_extends_expiry() {
    let mut store = SessionStore::default();
    let t0 = Utc::now();
    let (s, code) = start(&mut store, t0);
    store.attempt("acme", &s.id, "bad", t0).unwrap();
    let t1 = t0 + Duration::seconds(60);
    let (r, d) = store.start(request("6598765432"), t1).unwrap();
    assert_eq!(r.id, s.id);
    assert_eq!(d.unwrap().code, code);
    assert_eq!(r.attempt, 1);
    assert_eq!(r.expires_at, t1 + Duration::seconds(300));
    assert_eq!(r.retry_after, t1 + Duration::seconds(10));
    // Still valid after the original expiry thanks to the extension.
    let t2 = t0 + Duration::seconds(330);
    assert_eq!(
        store.attempt("acme", &s.id, &code, t2).unwrap().status,
        Status::Verified
    );
}

#[test]
fn reset_session_generates_new_code_and_resets_attempts() {
    let mut store = SessionStore::default();
    let t0 = Utc::now();
    let (s, first) = start(&mut store, t0);
    store.attempt("acme", &s.id, "bad", t0).unwrap();
    let mut req = request("6598765432");
    req.reset_session = true;
    req.code_length = 10;
    let (r, d) = store.start(req, t0 + Duration::seconds(11)).unwrap();
    let second = d.unwrap().code;
    assert_eq!(r.id, s.id);
    assert_eq!(r.attempt, 0);
    assert_eq!(second.len(), 10);
    assert_ne!(second, first);
}

#[test]
fn expiry_is_final_and_new_request_starts_new_session() {
    let mut store = SessionStore::default();
    let t0 = Utc::now();
    let (s, code) = start(&mut store, t0);
    let late = t0 + Duration::seconds(300);
    assert_eq!(
        store.get("acme", &s.id, late).unwrap().status,
        Status::Expired
    );
    let v = store.attempt("acme", &s.id, &code, late).unwrap();
    assert_eq!((v.status, v.attempt), (Status::Expired, 0));
    let (n, _) = store.start(request("6598765432"), late).unwrap();
    assert_ne!(n.id, s.id);
    assert_eq!(
        store.get("acme", &s.id, late).unwrap().status,
        Status::Expired
    );
}

#[test]
fn sessions_are_scoped_to_their_subaccount() {
    let mut store = SessionStore::default();
    let now = Utc::now();
    let (s, code) = start(&mut store, now);
    assert!(store.get("other", &s.id, now).is_none());
    assert!(store.attempt("other", &s.id, &code, now).is_none());
    let dashed = Uuid::parse_str(&s.id).unwrap().hyphenated().to_string();
    assert!(store.get("acme", &dashed.to_uppercase(), now).is_some());
}

#[test]
fn oldest_sessions_are_forgotten_beyond_capacity() {
    let mut store = SessionStore::with_capacity(2);
    let now = Utc::now();
    let first = store.start(request("6511111111"), now).unwrap().0;
    let second = store.start(request("6522222222"), now).unwrap().0;
    let third = store.start(request("6533333333"), now).unwrap().0;
    assert!(store.get("acme", &first.id, now).is_none());
    assert!(store.get("acme", &second.id, now).is_some());
    assert!(store.get("acme", &third.id, now).is_some());
    // The forgotten destination starts afresh instead of hitting the resend interval.
    assert!(store.start(request("6511111111"), now).is_ok());
}

#[test]
fn sma_sessions_have_no_code_and_verify_by_visit() {
    let mut store = SessionStore::default();
    let now = Utc::now();
    let mut req = request("6598765432");
    req.channel = Channel::Sma;
    let (s, d) = store.start(req, now).unwrap();
    assert!(d.is_none());
    assert_eq!(
        store.attempt("acme", &s.id, "1234", now).unwrap().attempt,
        1
    );
    assert_eq!(store.sma_visit(&s.id, now), Some(true));
    assert_eq!(
        store.get("acme", &s.id, now).unwrap().status,
        Status::Verified
    );
    assert_eq!(store.sma_visit(&s.id, now), Some(false));
    assert_eq!(store.sma_visit("nope", now), None);
}
