//! Property tests of response parsing: arbitrary bytes and JSON never panic;
//! every documented shape, generated with random values, decodes exactly.

use proptest::prelude::*;

use super::session::{SessionInfo, SessionStatus};

fn status() -> impl Strategy<Value = (&'static str, SessionStatus)> {
    prop_oneof![
        Just(("WAITING", SessionStatus::Waiting)),
        Just(("VERIFIED", SessionStatus::Verified)),
        Just(("FAILED", SessionStatus::Failed)),
        Just(("EXPIRED", SessionStatus::Expired)),
    ]
}

/// An RFC 3339 timestamp with 0 to 12 fraction digits and a random offset.
fn timestamp() -> impl Strategy<Value = (String, i64)> {
    (
        0i64..4_000_000_000,
        proptest::option::of("[0-9]{1,12}"),
        -12i32..=14,
    )
        .prop_map(|(epoch, fraction, offset_hours)| {
            let offset = chrono::FixedOffset::east_opt(offset_hours * 3600).unwrap();
            let local = chrono::DateTime::from_timestamp(epoch, 0)
                .unwrap()
                .with_timezone(&offset);
            let mut text = local.format("%Y-%m-%dT%H:%M:%S").to_string();
            if let Some(fraction) = fraction {
                text.push('.');
                text.push_str(&fraction);
            }
            text.push_str(&local.format("%:z").to_string());
            (text, epoch)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = SessionInfo::from_json(&bytes, Some("fallback"));
    }

    #[test]
    fn arbitrary_json_objects_never_panic(
        keys in proptest::collection::vec(prop_oneof![
            Just("sessionId"), Just("sessionID"), Just("uid"), Just("status"), Just("attempt"),
            Just("expiresAt"), Just("retryAfter"), Just("nextSmsAfter"), Just("destination"),
            Just("sma"), Just("verifyUri")
        ], 0..8),
        values in proptest::collection::vec(prop_oneof![
            Just(serde_json::json!(null)), Just(serde_json::json!(-1)), Just(serde_json::json!(1e300)),
            Just(serde_json::json!("WAITING")), Just(serde_json::json!("2025-13-45T99:99:99Z")),
            Just(serde_json::json!([])), Just(serde_json::json!({"verificationUrl": 5})),
            ".{0,12}".prop_map(serde_json::Value::from),
        ], 8),
    ) {
        let object: serde_json::Map<_, _> = keys
            .iter()
            .zip(values)
            .map(|(key, value)| (key.to_string(), value))
            .collect();
        let bytes = serde_json::to_vec(&object).unwrap();
        let _ = SessionInfo::from_json(&bytes, None);
    }

    #[test]
    fn every_documented_shape_decodes(
        id in "[0-9a-f]{32}",
        id_field in prop_oneof![Just("sessionId"), Just("sessionID"), Just("uid")],
        uri_field in prop_oneof![Just("verifyUri"), Just("resourceUri")],
        retry_field in prop_oneof![Just("retryAfter"), Just("nextSmsAfter")],
        digits in "[1-9][0-9]{7,13}",
        numeric_destination in any::<bool>(),
        (status_text, status) in status(),
        attempt in 0u32..=255,
        (expires_text, expires_epoch) in timestamp(),
        (retry_text, retry_epoch) in timestamp(),
    ) {
        let destination = if numeric_destination {
            serde_json::Value::from(digits.parse::<u64>().unwrap())
        } else {
            serde_json::Value::from(digits.clone())
        };
        let body = serde_json::json!({
            id_field: id,
            uri_field: format!("/api/v2/subaccounts/acme/sessions/{id}"),
            "destination": destination,
            "status": status_text,
            "attempt": attempt,
            "expiresAt": expires_text,
            retry_field: retry_text,
        });
        let session = SessionInfo::from_json(&serde_json::to_vec(&body).unwrap(), None).unwrap();
        prop_assert_eq!(&session.session_id, &id);
        prop_assert_eq!(session.destination, format!("+{digits}"));
        prop_assert_eq!(session.status, status);
        prop_assert_eq!(session.attempt, attempt);
        prop_assert_eq!(session.expires_at.unwrap().timestamp(), expires_epoch);
        prop_assert_eq!(session.retry_after.unwrap().timestamp(), retry_epoch);
    }
}
