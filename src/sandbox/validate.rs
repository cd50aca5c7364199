//! Request validation with 8x8's documented ranges and error codes.
//!
//! Order: body shape (1000) → country (1010/1009) → field ranges (1010) → clientIp (1012) →
//! callbackUrl (1000) → channel options (1005/1003/1010/1000) → destination (1002).

use std::net::IpAddr;

use chrono::Duration;
use serde::de::DeserializeOwned;

use super::codes;
use super::errors::{ApiError, code};
use super::phone::{self, PhoneError};
use super::sessions::StartRequest;
use super::wire::{Channel, CodeType, CoverageRequest, VerifyRequest};

const DEFAULT_VALIDITY_SECS: i64 = 300;
const DEFAULT_RESEND_SECS: i64 = 10;

/// Subaccounts whose id starts with this do not belong to the sandbox's key (8x8 code 1001).
pub const FOREIGN_PREFIX: &str = "foreign";

/// `^[A-Za-z0-9\-._&]{3,50}$`, then the deterministic ownership rule.
pub fn subaccount(id: &str) -> Result<(), ApiError> {
    let well_formed = (3..=50).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'&'));
    if !well_formed {
        return Err(ApiError::invalid_parameter(
            "subAccountId must match ^[A-Za-z0-9\\-._&]{3,50}$",
        ));
    }
    if id.starts_with(FOREIGN_PREFIX) {
        return Err(ApiError::foreign_subaccount());
    }
    Ok(())
}

/// Parses a JSON object body; anything else is 8x8's "invalid parameter".
pub fn parse_body<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::invalid_parameter(format!("Malformed JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid_parameter(
            "Request body must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::invalid_parameter(format!("Invalid request body: {e}")))
}

/// Validates a verification request into what the state machine needs.
pub fn verify_request(subaccount: &str, req: VerifyRequest) -> Result<StartRequest, ApiError> {
    let destination = req
        .destination
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter("destination is required"))?;
    let country = req.country.as_deref();
    if let Some(c) = country {
        phone::dialling_code(c).map_err(phone_error)?;
    }
    if req.brand.as_ref().is_some_and(|b| b.chars().count() > 30) {
        return Err(ApiError::out_of_range(
            "brand must be at most 30 characters",
        ));
    }
    let code_length = in_range("codeLength", req.code_length, 3, 10)?
        .map_or(codes::DEFAULT_LENGTH, |n| n as usize);
    let validity =
        in_range("codeValidity", req.code_validity, 30, 7200)?.unwrap_or(DEFAULT_VALIDITY_SECS);
    let resend = in_range("resendingInterval", req.resending_interval, 10, 7200)?
        .unwrap_or(DEFAULT_RESEND_SECS);
    if let Some(ip) = &req.client_ip {
        client_ip(ip)?;
    }
    if let Some(url) = &req.callback_url {
        let ok = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(ApiError::invalid_parameter(
                "callbackUrl must be an http(s) URI",
            ));
        }
    }
    let channel = req.channel.unwrap_or(Channel::Sms);
    channel_options(channel, &req)?;
    let destination = phone::normalise(destination, country).map_err(phone_error)?;
    Ok(StartRequest {
        subaccount: subaccount.to_owned(),
        destination,
        channel,
        brand: req.brand,
        template: req.template,
        code_type: req.code_type.unwrap_or(CodeType::Numeric),
        code_length,
        validity: Duration::seconds(validity),
        resend_interval: Duration::seconds(resend),
        reset_session: req.reset_session.unwrap_or(false),
    })
}

/// Channel objects are only "taken into account" for their own channel, per 8x8's docs.
fn channel_options(channel: Channel, req: &VerifyRequest) -> Result<(), ApiError> {
    match channel {
        Channel::Sms => {
            let Some(sms) = &req.sms else { return Ok(()) };
            if let Some(source) = &sms.source
                && !valid_sms_source(source)
            {
                return Err(ApiError::bad_request(
                    code::INVALID_SOURCE,
                    "Invalid sms.source: up to 11 letters, digits or spaces, or up to 16 digits with an optional +",
                ));
            }
            if let Some(encoding) = &sms.encoding
                && !matches!(encoding.as_str(), "AUTO" | "GSM7" | "UCS2")
            {
                return Err(ApiError::bad_request(
                    code::INVALID_ENCODING,
                    "Invalid sms.encoding: expected AUTO, GSM7 or UCS2",
                ));
            }
        }
        Channel::Call => {
            let Some(call) = &req.call else { return Ok(()) };
            if call.speed.is_some_and(|s| !(0.5..=2.0).contains(&s)) {
                return Err(ApiError::out_of_range(
                    "call.speed must be between 0.5 and 2",
                ));
            }
            in_range("call.repetition", call.repetition, 1, 3)?;
            if call
                .voice_profile
                .as_ref()
                .is_some_and(|v| v.chars().count() > 50)
            {
                return Err(ApiError::out_of_range(
                    "call.voiceProfile must be at most 50 characters",
                ));
            }
        }
        Channel::Whatsapp => {
            let named = req
                .whatsapp
                .as_ref()
                .and_then(|w| w.template_name.as_deref())
                .is_some_and(|t| !t.trim().is_empty());
            if !named {
                return Err(ApiError::invalid_parameter(
                    "whatsapp.templateName is required for the whatsapp channel",
                ));
            }
        }
        Channel::Viber | Channel::Sma => {}
    }
    Ok(())
}

/// Alphanumeric sender (≤ 11 ASCII letters, digits, spaces) or numeric (≤ 16 digits, optional +).
fn valid_sms_source(source: &str) -> bool {
    let numeric = source.strip_prefix('+').unwrap_or(source);
    let is_numeric =
        !numeric.is_empty() && numeric.len() <= 16 && numeric.bytes().all(|b| b.is_ascii_digit());
    let is_alpha = !source.trim().is_empty()
        && source.len() <= 11
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b' ');
    is_numeric || is_alpha
}

fn in_range(name: &str, value: Option<i64>, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(ApiError::out_of_range(format!(
            "{name} must be between {min} and {max}"
        ))),
        other => Ok(other),
    }
}

pub fn client_ip(ip: &str) -> Result<IpAddr, ApiError> {
    ip.trim()
        .parse()
        .map_err(|_| ApiError::bad_request(code::INVALID_IP, "Invalid IP address in clientIp"))
}

fn phone_error(e: PhoneError) -> ApiError {
    match e {
        PhoneError::InvalidMsisdn => ApiError::invalid_msisdn(),
        PhoneError::CountryFormat => {
            ApiError::out_of_range("country must be an ISO 3166 alpha-2 code")
        }
        PhoneError::UnknownCountry => {
            ApiError::bad_request(code::INVALID_COUNTRY, "Invalid country code")
        }
    }
}

/// Validated coverage check: the client IP and the normalised destination, if any.
pub fn coverage_request(req: CoverageRequest) -> Result<(IpAddr, Option<String>), ApiError> {
    let ip = req
        .client_ip
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter("clientIp is required"))?;
    let ip = client_ip(ip)?;
    let country = req.country.as_deref();
    if let Some(c) = country {
        phone::dialling_code(c).map_err(phone_error)?;
    }
    let destination = req
        .destination
        .as_deref()
        .map(|d| phone::normalise(d, country))
        .transpose()
        .map_err(phone_error)?;
    Ok((ip, destination))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<StartRequest, ApiError> {
        verify_request("acme", parse_body(json.as_bytes())?)
    }

    fn code_of(json: &str) -> u32 {
        parse(json).unwrap_err().code
    }

    #[test]
    fn defaults() {
        let r = parse(r#"{"destination":"+6598765432"}"#).unwrap();
        assert_eq!(r.destination, "6598765432");
        assert_eq!(r.channel, Channel::Sms);
        assert_eq!(r.code_type, CodeType::Numeric);
        assert_eq!(r.code_length, 4);
        assert_eq!(r.validity, Duration::seconds(300));
        assert_eq!(r.resend_interval, Duration::seconds(10));
        assert!(!r.reset_session);
    }

    #[test]
    fn error_codes() {
        assert_eq!(code_of("{"), 1000);
        assert_eq!(code_of("[1]"), 1000);
        assert_eq!(code_of("{}"), 1000);
        assert_eq!(
            code_of(r#"{"destination":"+6598765432","channel":"fax"}"#),
            1000
        );
        assert_eq!(
            code_of(r#"{"destination":"+6598765432","codeLength":"5"}"#),
            1000
        );
        assert_eq!(
            code_of(r#"{"destination":"+6598765432","codeLength":11}"#),
            1010
        );
        assert_eq!(
            code_of(r#"{"destination":"+6598765432","codeLength":2}"#),
            1010
        );
        assert_eq!(
            code_of(r#"{"destination":"+6598765432","codeValidity":29}"#),
            1010
        );
        assert_eq!(
            code_of(r#"{"destination":"+6598765432","codeValidity":7201}"#),
            1010
        );
        assert_eq!(
            code_of(r#"{"destination":"+6598765432","resendingInterval":9}"#),
            1010
        );
        let long_brand = format!(
            r#"{{"destination":"+6598765432","brand":"{}"}}"#,
            "b".repeat(31)
        );
        assert_eq!(code_of(&long_brand), 1010);
        assert_eq!(code_of(r#"{"destination":"8765","country":"SGP"}"#), 1010);
        assert_eq!(
            code_of(r#"{"destination":"87654321","country":"QQ"}"#),
            1009
        );
        assert_eq!(
            code_of(r#"{"destination":"+6598765432","clientIp":"1.2.3"}"#),
            1012
        );
        assert_eq!(
            code_of(r#"{"destination":"+6598765432","callbackUrl":"nope"}"#),
            1000
        );
        assert_eq!(code_of(r#"{"destination":"12"}"#), 1002);
        assert_eq!(
            code_of(r#"{"destination":"+6598765432","channel":"whatsapp"}"#),
            1000
        );
        let call = r#"{"destination":"+6598765432","channel":"call","call":"#;
        assert_eq!(code_of(&format!(r#"{call}{{"speed":2.5}}}}"#)), 1010);
        assert_eq!(code_of(&format!(r#"{call}{{"repetition":4}}}}"#)), 1010);
        let sms = r#"{"destination":"+6598765432","sms":"#;
        assert_eq!(
            code_of(&format!(r#"{sms}{{"source":"TooLongBrand1"}}}}"#)),
            1005
        );
        assert_eq!(code_of(&format!(r#"{sms}{{"encoding":"UTF8"}}}}"#)), 1003);
    }

    #[test]
    fn accepts_documented_samples() {
        parse(r#"{"destination":"8765 4321","country":"SG","brand":"ABC","codeLength":5,"codeValidity":300,"codeType":"NUMERIC","resendingInterval":10,"channel":"sms","sms":{"source":"ABC","encoding":"AUTO"}}"#).unwrap();
        parse(r#"{"destination":"+65(876)54321","country":"SG","brand":"ABC","codeLength":5,"codeValidity":300,"language":"en-US","channel":"call","call":{"source":"+19876543210","speed":0.8,"repetition":3,"voiceProfile":"en-US-Kimberly"}}"#).unwrap();
        parse(r#"{"destination":"+19876543210","channel":"whatsapp","whatsapp":{"templateName":"abc"}}"#).unwrap();
        parse(r#"{"destination":"+6587654321","channel":"sma","clientIp":"2001:db8::1"}"#).unwrap();
        let sms = parse(r#"{"destination":"+6598765432","sms":{"source":"+6512345678"}}"#).unwrap();
        assert_eq!(sms.channel, Channel::Sms);
    }

    #[test]
    fn subaccount_rules() {
        assert!(subaccount("acme_corp").is_ok());
        assert!(subaccount("a.b-c&d").is_ok());
        assert_eq!(subaccount("ab").unwrap_err().code, 1000);
        assert_eq!(subaccount("bad id").unwrap_err().code, 1000);
        assert_eq!(subaccount(&"a".repeat(51)).unwrap_err().code, 1000);
        assert_eq!(subaccount("foreign-1").unwrap_err().code, 1001);
    }

    #[test]
    fn coverage_validation() {
        let cov = |json: &str| coverage_request(parse_body(json.as_bytes()).unwrap());
        assert_eq!(cov("{}").unwrap_err().code, 1000);
        assert_eq!(cov(r#"{"clientIp":"x"}"#).unwrap_err().code, 1012);
        assert_eq!(
            cov(r#"{"clientIp":"1.2.3.4","destination":"1"}"#)
                .unwrap_err()
                .code,
            1002
        );
        let (_, dest) =
            cov(r#"{"clientIp":"1.2.3.4","destination":"98765432","country":"SG"}"#).unwrap();
        assert_eq!(dest.as_deref(), Some("6598765432"));
    }
}
