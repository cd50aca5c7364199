//! One check per field: each records a violation (and returns what 8x8
//! should be sent) instead of stopping at the first problem.

use std::net::IpAddr;

use super::Violations;
use crate::grpc::languages::LANGUAGES;
use crate::pb::v1 as pb;
use crate::upstream::{self, ChannelOptions};

/// A subaccount ID: `^[A-Za-z0-9\-._&]{3,50}$`, or the server's default when empty.
pub fn subaccount(v: &mut Violations, value: &str, default: Option<&str>) -> String {
    if value.is_empty() {
        return match default {
            Some(default) => default.to_owned(),
            None => {
                v.add(
                    "subaccount_id",
                    "required: this server has no default subaccount",
                );
                String::new()
            }
        };
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._&".contains(c);
    if !(3..=50).contains(&value.len()) || !value.chars().all(allowed) {
        v.add(
            "subaccount_id",
            "must be 3 to 50 characters of A-Z, a-z, 0-9, '-', '.', '_' or '&'",
        );
    }
    value.to_owned()
}

/// 8x8 session IDs are hex or UUIDs; anything else can't name a session.
pub fn session_id(v: &mut Violations, value: &str) {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if value.is_empty() {
        v.add("session_id", "required");
    } else if value.len() > 64 || !value.chars().all(allowed) {
        v.add(
            "session_id",
            "must be at most 64 characters of A-Z, a-z, 0-9, '-' or '_'",
        );
    }
}

/// A code as the user typed it: 3 to 10 characters of the alphabets 8x8
/// generates from. Refusing anything else locally spares the user an attempt.
pub fn code(v: &mut Violations, value: &str) {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-';
    if !(3..=10).contains(&value.chars().count()) {
        v.add("code", "must be 3 to 10 characters");
    } else if !value.chars().all(allowed) {
        v.add("code", "may only hold letters, digits and '-'");
    }
}

/// ISO 3166 alpha-2, sent upper-case. Empty stays unset.
pub(super) fn country(v: &mut Violations, field: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() != 2 || !value.chars().all(|c| c.is_ascii_alphabetic()) {
        v.add(field, "must be an ISO 3166 alpha-2 country code such as SG");
        return None;
    }
    Some(value.to_ascii_uppercase())
}

/// A phone number in international format (country code first, optional
/// `+`) or national format (needs `country`). Formatting characters are
/// dropped, as 8x8 would drop them.
pub(super) fn destination(
    v: &mut Violations,
    field: &str,
    value: &str,
    has_country: bool,
) -> String {
    if value.trim().is_empty() {
        v.add(field, "required");
        return String::new();
    }
    let formatting = |c: char| c.is_whitespace() || "()-.".contains(c);
    let compact: String = value.chars().filter(|&c| !formatting(c)).collect();
    let (plus, digits) = match compact.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", compact.as_str()),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        v.add(field, "must be a phone number: digits, an optional leading '+', spaces, brackets, dots or dashes");
    } else if plus.is_empty() && digits.starts_with('0') && !has_country {
        v.add(field, "looks like a national number (leading 0): set country, or give the international format");
    } else if !plus.is_empty() || !has_country {
        if digits.starts_with('0') || !(7..=15).contains(&digits.len()) {
            v.add(
                field,
                "an international number has 7 to 15 digits and starts with the country code",
            );
        }
    } else if !(4..=15).contains(&digits.len()) {
        v.add(field, "a national number has 4 to 15 digits");
    }
    format!("{plus}{digits}")
}

pub(super) fn optional_text(
    v: &mut Violations,
    field: &str,
    value: &str,
    max_chars: usize,
) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.chars().count() > max_chars {
        v.add(field, format!("must be at most {max_chars} characters"));
    }
    Some(value.to_owned())
}

/// A Duration in whole seconds within `min..=max`; unset stays unset.
pub(super) fn seconds(
    v: &mut Violations,
    field: &str,
    value: Option<&prost_types::Duration>,
    min: i64,
    max: i64,
) -> Option<u32> {
    let value = value?;
    if value.nanos != 0 || !(min..=max).contains(&value.seconds) {
        v.add(
            field,
            format!("must be whole seconds from {min}s to {max}s"),
        );
        return None;
    }
    u32::try_from(value.seconds).ok()
}

pub(super) fn client_ip(v: &mut Violations, field: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    match value.parse::<IpAddr>() {
        Ok(ip) => Some(ip.to_string()),
        Err(_) => {
            v.add(field, "must be an IPv4 or IPv6 address");
            None
        }
    }
}

pub(super) fn callback_url(v: &mut Violations, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Some(value.to_owned())
        }
        _ => {
            v.add("callback_url", "must be an absolute http or https URL");
            None
        }
    }
}

pub(super) fn language(v: &mut Violations, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if !LANGUAGES.contains(&value) {
        v.add(
            "language",
            format!(
                "must be one of 8x8's case-sensitive tags: {}",
                LANGUAGES.join(", ")
            ),
        );
    }
    Some(value.to_owned())
}

/// Sender ID: alphanumeric (ASCII letters, digits, spaces; ≤ 11) or numeric
/// (digits with an optional leading `+`; ≤ 16 digits).
pub(super) fn sms_source(v: &mut Violations, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let digits = value.strip_prefix('+').unwrap_or(value);
    let numeric = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
    let alphanumeric = value.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ');
    let fits = if numeric {
        digits.len() <= 16
    } else {
        alphanumeric && value.len() <= 11
    };
    if !fits {
        v.add(
            "sms.source",
            "must be alphanumeric (ASCII letters, digits, spaces; at most 11) or numeric (digits, optional leading '+'; at most 16 digits)",
        );
    }
    Some(value.to_owned())
}

pub(super) fn call_options(v: &mut Violations, call: &pb::CallOptions) -> upstream::CallOptions {
    let speed = (call.speed != 0.0).then_some(call.speed);
    if let Some(speed) = speed {
        let two_decimals = (speed * 100.0 - (speed * 100.0).round()).abs() < 1e-6;
        if !(0.5..=2.0).contains(&speed) || !two_decimals {
            v.add(
                "call.speed",
                "must be from 0.5 to 2 with at most two decimals",
            );
        }
    }
    let repetition = (call.repetition != 0).then_some(call.repetition);
    if repetition.is_some_and(|r| r > 3) {
        v.add("call.repetition", "must be 1, 2 or 3");
    }
    upstream::CallOptions {
        source: optional_text(v, "call.source", &call.source, 50),
        speed,
        repetition,
        voice_profile: optional_text(v, "call.voice_profile", &call.voice_profile, 50),
    }
}

pub(super) fn channel_options(
    v: &mut Violations,
    channel: pb::Channel,
    options: Option<&pb::start_verification_request::ChannelOptions>,
) -> Option<ChannelOptions> {
    use pb::start_verification_request::ChannelOptions as Options;
    let options = match options {
        None => {
            if channel == pb::Channel::Whatsapp {
                v.add(
                    "whatsapp.template_name",
                    "required with channel CHANNEL_WHATSAPP",
                );
            }
            return None;
        }
        Some(options) => options,
    };
    let (field, expected) = match options {
        Options::Sms(_) => ("sms", [pb::Channel::Sms, pb::Channel::Unspecified]),
        Options::Call(_) => ("call", [pb::Channel::Call; 2]),
        Options::Whatsapp(_) => ("whatsapp", [pb::Channel::Whatsapp; 2]),
    };
    if !expected.contains(&channel) {
        v.add(
            field,
            format!(
                "{field} options apply only with channel {}",
                expected[0].as_str_name()
            ),
        );
        return None;
    }
    Some(match options {
        Options::Sms(sms) => ChannelOptions::Sms(upstream::SmsOptions {
            source: sms_source(v, &sms.source),
            encoding: super::enums::sms_encoding(v, sms.encoding),
        }),
        Options::Call(call) => ChannelOptions::Call(call_options(v, call)),
        Options::Whatsapp(whatsapp) => {
            if whatsapp.template_name.trim().is_empty() {
                v.add(
                    "whatsapp.template_name",
                    "required with channel CHANNEL_WHATSAPP",
                );
            }
            ChannelOptions::Whatsapp(upstream::WhatsAppOptions {
                template_name: whatsapp.template_name.clone(),
            })
        }
    })
}
