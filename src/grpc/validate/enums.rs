//! Proto enums → upstream types. Enum fields arrive as raw i32 on the wire,
//! so an unknown number is a field violation, not a panic.

use super::Violations;
use crate::pb::v1 as pb;
use crate::upstream;

pub fn channel(v: &mut Violations, value: i32) -> Option<upstream::Channel> {
    match pb::Channel::try_from(value) {
        Ok(pb::Channel::Unspecified) => None,
        Ok(pb::Channel::Sms) => Some(upstream::Channel::Sms),
        Ok(pb::Channel::Call) => Some(upstream::Channel::Call),
        Ok(pb::Channel::Whatsapp) => Some(upstream::Channel::Whatsapp),
        Ok(pb::Channel::Viber) => Some(upstream::Channel::Viber),
        Ok(pb::Channel::Sma) => Some(upstream::Channel::Sma),
        Err(_) => {
            v.add("channel", format!("unknown channel {value}"));
            None
        }
    }
}

pub fn code_type(v: &mut Violations, value: i32) -> Option<upstream::CodeType> {
    use upstream::CodeType;
    match pb::CodeType::try_from(value) {
        Ok(pb::CodeType::Unspecified) => None,
        Ok(pb::CodeType::Numeric) => Some(CodeType::Numeric),
        Ok(pb::CodeType::NumericWithDash) => Some(CodeType::NumericWithDash),
        Ok(pb::CodeType::Alphanumeric) => Some(CodeType::Alphanumeric),
        Ok(pb::CodeType::AlphanumericCapitals) => Some(CodeType::AlphanumericCapitals),
        Ok(pb::CodeType::AlphanumericEasy) => Some(CodeType::AlphanumericEasy),
        Err(_) => {
            v.add("code_type", format!("unknown code type {value}"));
            None
        }
    }
}

pub fn sms_encoding(v: &mut Violations, value: i32) -> Option<upstream::SmsEncoding> {
    use upstream::SmsEncoding;
    match pb::SmsEncoding::try_from(value) {
        Ok(pb::SmsEncoding::Unspecified) => None,
        Ok(pb::SmsEncoding::Auto) => Some(SmsEncoding::Auto),
        Ok(pb::SmsEncoding::Gsm7) => Some(SmsEncoding::Gsm7),
        Ok(pb::SmsEncoding::Ucs2) => Some(SmsEncoding::Ucs2),
        Err(_) => {
            v.add("sms.encoding", format!("unknown encoding {value}"));
            None
        }
    }
}
