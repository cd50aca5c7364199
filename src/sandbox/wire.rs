//! 8x8 Verification API v2 JSON shapes, as the server side sees them (camelCase names).
//!
//! Deliberately independent of the client types in `crate::upstream`: the sandbox is the other
//! side of the wire and must catch a client that drifts from 8x8's documented field names.
//! Numbers are parsed as wide types so that out-of-range values reach the range checks (8x8
//! code 1010) instead of failing deserialisation (code 1000).

use serde::{Deserialize, Serialize};

/// `channel` of a verification request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Call,
    Whatsapp,
    Viber,
    Sma,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Call => "call",
            Channel::Whatsapp => "whatsapp",
            Channel::Viber => "viber",
            Channel::Sma => "sma",
        }
    }
}

/// `codeType` of a verification request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CodeType {
    Numeric,
    NumericWithDash,
    Alphanumeric,
    AlphanumericCapitals,
    AlphanumericEasy,
}

/// Body of `POST /api/v2/subaccounts/{subAccountId}/sessions` (VerifyRequestV2).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyRequest {
    pub destination: Option<String>,
    pub country: Option<String>,
    pub channel: Option<Channel>,
    pub brand: Option<String>,
    pub code_length: Option<i64>,
    pub code_validity: Option<i64>,
    pub code_type: Option<CodeType>,
    pub template: Option<String>,
    /// Parsed so a wrong type is refused (1000); the sandbox has no voice or WhatsApp platform
    /// that would use it.
    #[allow(dead_code)]
    pub language: Option<String>,
    pub reset_session: Option<bool>,
    pub resending_interval: Option<i64>,
    pub callback_url: Option<String>,
    pub client_ip: Option<String>,
    pub sms: Option<SmsOptions>,
    pub call: Option<CallOptions>,
    pub whatsapp: Option<WhatsAppOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsOptions {
    pub source: Option<String>,
    /// Kept as a string so an unknown value maps to 8x8 code 1003 rather than 1000.
    pub encoding: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallOptions {
    /// Parsed so a wrong type is refused (1000); there is no caller ID to set in the sandbox.
    #[allow(dead_code)]
    pub source: Option<String>,
    pub speed: Option<f64>,
    pub repetition: Option<i64>,
    pub voice_profile: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhatsAppOptions {
    pub template_name: Option<String>,
}

/// Session as answered by POST sessions and GET session (VerifyResponseV2).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    pub session_id: String,
    pub verify_uri: String,
    pub destination: String,
    pub status: &'static str,
    pub attempt: u8,
    pub expires_at: String,
    pub retry_after: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sma: Option<SmaResponse>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SmaResponse {
    pub verification_url: String,
}

/// Body of `POST /api/v2/subaccounts/{subAccountId}/sma/coverage`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageRequest {
    pub client_ip: Option<String>,
    pub destination: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageResponse {
    pub is_available: bool,
}

/// Answer of `GET /sma/{sessionId}` (sandbox's stand-in for the operator-side check).
#[derive(Debug, Serialize)]
pub struct SmaVisitResponse {
    pub verified: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_sample() {
        let body = r#"{"destination":"+65(876)54321","country":"SG","brand":"ABC","codeLength":5,
            "codeValidity":300,"language":"en-US","channel":"call",
            "call":{"source":"+19876543210","speed":0.8,"repetition":3,"voiceProfile":"en-US-Kimberly"}}"#;
        let req: VerifyRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.channel, Some(Channel::Call));
        assert_eq!(req.code_length, Some(5));
        assert_eq!(req.call.unwrap().repetition, Some(3));
    }

    #[test]
    fn rejects_unknown_enum_values_and_wrong_types() {
        assert!(serde_json::from_str::<VerifyRequest>(r#"{"channel":"fax"}"#).is_err());
        assert!(serde_json::from_str::<VerifyRequest>(r#"{"codeType":"numeric"}"#).is_err());
        assert!(serde_json::from_str::<VerifyRequest>(r#"{"codeLength":"4"}"#).is_err());
        assert!(serde_json::from_str::<VerifyRequest>(r#"[]"#).is_err());
    }

    #[test]
    fn omits_sma_when_absent() {
        let resp = SessionResponse {
            session_id: "a".into(),
            verify_uri: "/x".into(),
            destination: "+6598765432".into(),
            status: "WAITING",
            attempt: 0,
            expires_at: "t".into(),
            retry_after: "t".into(),
            sma: None,
        };
        let json = serde_json::to_value(&resp).unwrap();
        assert!(json.get("sma").is_none());
        assert_eq!(json["sessionId"], "a");
        assert_eq!(json["retryAfter"], "t");
    }
}
