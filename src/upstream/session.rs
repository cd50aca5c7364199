//! A verification session as the rest of the service sees it, decoded from
//! whichever JSON shape 8x8 answered with.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::wire::SessionBody;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SessionStatus {
    Waiting,
    Verified,
    Failed,
    Expired,
}

impl SessionStatus {
    /// VERIFIED, FAILED and EXPIRED never change again.
    pub fn is_final(self) -> bool {
        !matches!(self, SessionStatus::Waiting)
    }

    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        [
            ("WAITING", SessionStatus::Waiting),
            ("VERIFIED", SessionStatus::Verified),
            ("FAILED", SessionStatus::Failed),
            ("EXPIRED", SessionStatus::Expired),
        ]
        .into_iter()
        .find_map(|(name, status)| text.eq_ignore_ascii_case(name).then_some(status))
    }
}

/// Serde (our own field names, not 8x8's) is for replicas sharing it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub verify_uri: String,
    /// E.164 with a leading `+` (8x8 sometimes omits it).
    pub destination: String,
    pub status: SessionStatus,
    pub attempt: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub retry_after: Option<DateTime<Utc>>,
    /// SMA sessions only.
    pub verification_url: Option<String>,
}

impl SessionInfo {
    /// Decodes 8x8's session JSON. `fallback_id` serves when the body carries
    /// no ID (the session was addressed by it).
    pub(crate) fn from_json(bytes: &[u8], fallback_id: Option<&str>) -> Result<Self, String> {
        // One UTF-8 check of the whole body: from_slice would check each
        // string on its own, which cost more than the rest of the parse.
        let text = std::str::from_utf8(bytes).map_err(|e| format!("session JSON: {e}"))?;
        let body: SessionBody =
            serde_json::from_str(text).map_err(|e| format!("session JSON: {e}"))?;
        let session_id = body
            .session_id
            .filter(|id| !id.is_empty())
            .map(Cow::into_owned)
            .or_else(|| fallback_id.map(str::to_owned))
            .ok_or("session JSON without sessionId")?;
        let status = body
            .status
            .as_deref()
            .ok_or("session JSON without status")?;
        let status = SessionStatus::parse(status)
            .ok_or_else(|| format!("unknown session status {status:?}"))?;
        let attempt = match body.attempt.as_deref() {
            None => 0,
            Some(text) => text
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("attempt is not a count: {text:?}"))?,
        };
        Ok(SessionInfo {
            session_id,
            verify_uri: body.verify_uri.map(Cow::into_owned).unwrap_or_default(),
            destination: body
                .destination
                .as_deref()
                .map(with_plus)
                .unwrap_or_default(),
            status,
            attempt,
            expires_at: parse_optional_time(body.expires_at.as_deref(), "expiresAt")?,
            retry_after: parse_optional_time(body.retry_after.as_deref(), "retryAfter")?,
            verification_url: body
                .sma
                .and_then(|sma| sma.verification_url)
                .filter(|url| !url.is_empty())
                .map(Cow::into_owned),
        })
    }
}

fn with_plus(destination: &str) -> String {
    let trimmed = destination.trim();
    if trimmed.is_empty() || trimmed.starts_with('+') {
        trimmed.to_owned()
    } else {
        format!("+{trimmed}")
    }
}

fn parse_optional_time(text: Option<&str>, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => parse_time(text)
            .map(Some)
            .ok_or_else(|| format!("{field} is not a timestamp: {text:?}")),
    }
}

/// RFC 3339 with any fraction length and offset; a timestamp without an
/// offset is taken as UTC. Fractions beyond nanoseconds are truncated.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    let trimmed = truncate_fraction(text);
    if let Ok(time) = DateTime::parse_from_rfc3339(&trimmed) {
        return Some(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(&trimmed, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// Cuts a fractional second to at most 9 digits.
fn truncate_fraction(text: &str) -> String {
    let Some(dot) = text.find('.') else {
        return text.to_owned();
    };
    let digits = text[dot + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if digits <= 9 {
        return text.to_owned();
    }
    format!("{}{}", &text[..dot + 10], &text[dot + 1 + digits..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_shape() {
        let current = br#"{"sessionId":"18b526ad-d063-48c0-bb93-4e71f042f047","verifyUri":"https://verify.8x8.com/x","destination":"6598765432","status":"WAITING","attempt":0,"expiresAt":"2025-12-18T14:05:00.1254323+00:00","retryAfter":"2025-12-18T14:00:20.1254323+00:00"}"#;
        let session = SessionInfo::from_json(current, None).unwrap();
        assert_eq!(session.session_id, "18b526ad-d063-48c0-bb93-4e71f042f047");
        assert_eq!(session.destination, "+6598765432");
        assert_eq!(session.status, SessionStatus::Waiting);
        assert_eq!(
            session.expires_at.unwrap().to_rfc3339(),
            "2025-12-18T14:05:00.125432300+00:00"
        );

        let tutorial = br#"{"sessionID":"7c1137e8fb1ceb11827c00155dc319db","verifyUri":"/api/v2/subaccounts/acme_corp/sessions/","destination":6598765432,"status":"WAITING","attempt":0,"expiresAt":"2020-11-02T11:14:44.70Z","retryAfter":"2020-11-02T11:09:54.70Z"}"#;
        let session = SessionInfo::from_json(tutorial, None).unwrap();
        assert_eq!(session.session_id, "7c1137e8fb1ceb11827c00155dc319db");
        assert_eq!(session.destination, "+6598765432");

        let legacy = br#"{"uid":"7c1137e8fb1ceb11827c00155dc319","resourceUri":"/api/v2/subaccounts/acme_corp/sessions/7c1137e8fb1ceb11827c00155dc319","destination":6598765432,"status":"VERIFIED","attempt":0,"expiresAt":"2020-11-02T13:19:56.70Z","nextSmsAfter":"2020-11-02T13:14:44.70Z"}"#;
        let session = SessionInfo::from_json(legacy, None).unwrap();
        assert_eq!(session.status, SessionStatus::Verified);
        assert_eq!(
            session.verify_uri,
            "/api/v2/subaccounts/acme_corp/sessions/7c1137e8fb1ceb11827c00155dc319"
        );
        assert!(session.retry_after.is_some());

        let sma = br#"{"sessionId":"a4","verifyUri":"/v","destination":"+198765432","status":"WAITING","attempt":0,"expiresAt":"2025-06-03T05:59:54.09Z","retryAfter":"2025-06-03T05:55:04.09Z","sma":{"verificationUrl":"https://verify.8x8.com/sma/a4"}}"#;
        let session = SessionInfo::from_json(sma, None).unwrap();
        assert_eq!(
            session.verification_url.as_deref(),
            Some("https://verify.8x8.com/sma/a4")
        );
    }

    #[test]
    fn timestamps_with_any_precision_and_offset() {
        for text in [
            "2025-12-18T14:05:00Z",
            "2025-12-18T14:05:00.1Z",
            "2025-12-18T14:05:00.123456789012+00:00",
            "2025-12-18T22:05:00.5+08:00",
            "2025-12-18T14:05:00.25",
        ] {
            let time = parse_time(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(
                time.format("%Y-%m-%d %H:%M:%S").to_string(),
                "2025-12-18 14:05:00"
            );
        }
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn rejects_bodies_it_cannot_understand() {
        assert!(SessionInfo::from_json(b"{\"status\":\"WAITING\"}", None).is_err());
        assert!(
            SessionInfo::from_json(b"{\"sessionId\":\"a\",\"status\":\"MAYBE\"}", None).is_err()
        );
        assert!(SessionInfo::from_json(b"not json", None).is_err());
        let fallback = SessionInfo::from_json(b"{\"status\":\"FAILED\"}", Some("abc")).unwrap();
        assert_eq!(fallback.session_id, "abc");
    }
}
