//! 8x8's JSON: what we send (camelCase, absent fields omitted so 8x8's own
//! defaults apply) and what we accept back (every documented shape).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Call,
    Whatsapp,
    Viber,
    Sma,
}

impl Channel {
    /// 8x8's name of the channel.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CodeType {
    Numeric,
    NumericWithDash,
    Alphanumeric,
    AlphanumericCapitals,
    AlphanumericEasy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SmsEncoding {
    #[serde(rename = "AUTO")]
    Auto,
    #[serde(rename = "GSM7")]
    Gsm7,
    #[serde(rename = "UCS2")]
    Ucs2,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<SmsEncoding>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repetition: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhatsAppOptions {
    pub template_name: String,
}

/// Channel-specific options; serialised as 8x8's `sms`, `call` or `whatsapp` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOptions {
    Sms(SmsOptions),
    Call(CallOptions),
    Whatsapp(WhatsAppOptions),
}

/// Body of POST /api/v2/subaccounts/{subAccountId}/sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartRequest {
    pub destination: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_length: Option<u32>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_validity: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_type: Option<CodeType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_session: Option<bool>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resending_interval: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub options: Option<ChannelOptions>,
}

/// Body of POST /api/v2/subaccounts/{subAccountId}/sma/coverage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SmaCoverageRequest {
    pub client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A session as 8x8 answers it. The docs show several generations of this
/// object (`sessionId`/`sessionID`/`uid`, `verifyUri`/`resourceUri`,
/// `retryAfter`/`nextSmsAfter`, destination as a string or a number), so
/// every spelling is accepted. Text borrows from the body where it can: most
/// fields are parsed further, not kept.
#[derive(Debug, Deserialize)]
pub(crate) struct SessionBody<'a> {
    #[serde(alias = "sessionID", alias = "uid")]
    #[serde(rename = "sessionId", default, borrow, deserialize_with = "text")]
    pub session_id: Option<Cow<'a, str>>,
    #[serde(
        rename = "verifyUri",
        alias = "resourceUri",
        default,
        borrow,
        deserialize_with = "text"
    )]
    pub verify_uri: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "string_or_number")]
    pub destination: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub status: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "string_or_number")]
    pub attempt: Option<Cow<'a, str>>,
    #[serde(rename = "expiresAt", default, borrow, deserialize_with = "text")]
    pub expires_at: Option<Cow<'a, str>>,
    #[serde(
        rename = "retryAfter",
        alias = "nextSmsAfter",
        default,
        borrow,
        deserialize_with = "text"
    )]
    pub retry_after: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub sma: Option<SmaBody<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SmaBody<'a> {
    #[serde(rename = "verificationUrl", default, borrow, deserialize_with = "text")]
    pub verification_url: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CoverageBody {
    #[serde(rename = "isAvailable", alias = "available")]
    pub is_available: Option<bool>,
}

/// 8x8's error body: `{"code", "message", "errorId", "timestamp"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(default, borrow, deserialize_with = "string_or_number")]
    pub code: Option<Cow<'a, str>>,
    pub message: Option<String>,
    #[serde(rename = "errorId")]
    pub error_id: Option<String>,
}

/// A JSON string (or null) that borrows from the body unless it holds
/// escapes: serde's own `Option<Cow<str>>` always copies.
fn text<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

    Ok(Option::<Text>::deserialize(de)?.map(|Text(text)| text))
}

/// Accepts a JSON string or number (or null) as text. A visitor rather than
/// an untagged enum: that one buffers the value and builds an error message
/// for every number before trying the second variant.
fn string_or_number<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Loose;

    impl<'de> serde::de::Visitor<'de> for Loose {
        type Value = Option<Cow<'de, str>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string, a number or null")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(text)))
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(text.to_owned())))
        }
        fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(text)))
        }
        fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(number.to_string())))
        }
        fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(number.to_string())))
        }
        fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<Self::Value, E> {
            // serde_json's own formatting, as a JSON number reads back.
            Ok(serde_json::Number::from_f64(number).map(|n| Cow::Owned(n.to_string())))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
            de.deserialize_any(Loose)
        }
    }

    de.deserialize_option(Loose)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn loose_text_fields_take_strings_numbers_and_null_only() {
        let code = |json: &str| {
            serde_json::from_str::<ErrorBody>(json).map(|body| body.code.map(Cow::into_owned))
        };
        assert_eq!(code(r#"{"code":"1002"}"#).unwrap().as_deref(), Some("1002"));
        assert_eq!(code(r#"{"code":1002}"#).unwrap().as_deref(), Some("1002"));
        assert_eq!(code(r#"{"code":-7}"#).unwrap().as_deref(), Some("-7"));
        assert_eq!(code(r#"{"code":1.5}"#).unwrap().as_deref(), Some("1.5"));
        assert_eq!(code(r#"{"code":null}"#).unwrap(), None);
        assert_eq!(code("{}").unwrap(), None);
        assert!(code(r#"{"code":true}"#).is_err());
        assert!(code(r#"{"code":{"n":1}}"#).is_err());
    }

    #[test]
    fn session_text_is_borrowed_unless_escaped() {
        let body: SessionBody = serde_json::from_slice(
            br#"{"sessionId":"a\u0042c","status":"WAITING","destination":"6598765432","expiresAt":null}"#,
        )
        .unwrap();
        assert!(matches!(body.status, Some(Cow::Borrowed("WAITING"))));
        assert!(matches!(
            body.destination,
            Some(Cow::Borrowed("6598765432"))
        ));
        assert!(matches!(&body.session_id, Some(Cow::Owned(id)) if id == "aBc"));
        assert!(body.expires_at.is_none() && body.retry_after.is_none());
        assert!(serde_json::from_slice::<SessionBody>(br#"{"status":5}"#).is_err());
    }

    #[test]
    fn start_request_omits_unset_fields_and_nests_channel_options() {
        let request = StartRequest {
            destination: "+6598765432".into(),
            channel: Some(Channel::Call),
            code_validity: Some(300),
            options: Some(ChannelOptions::Call(CallOptions {
                speed: Some(0.8),
                voice_profile: Some("en-US-Kimberly".into()),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "destination": "+6598765432",
                "channel": "call",
                "codeValidity": 300,
                "call": {"speed": 0.8, "voiceProfile": "en-US-Kimberly"}
            })
        );
    }

    #[test]
    fn code_type_and_encoding_use_8x8_spelling() {
        assert_eq!(
            serde_json::to_value(CodeType::NumericWithDash).unwrap(),
            json!("NUMERIC_WITH_DASH")
        );
        assert_eq!(
            serde_json::to_value(SmsEncoding::Gsm7).unwrap(),
            json!("GSM7")
        );
        assert_eq!(
            serde_json::to_value(Channel::Whatsapp).unwrap(),
            json!("whatsapp")
        );
    }
}
