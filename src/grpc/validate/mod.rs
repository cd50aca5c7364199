//! Every limit 8x8 documents, checked before anything is sent upstream. Each
//! check records a field violation instead of stopping, so a caller learns
//! about every bad field at once.

use tonic::Status;
use tonic_types::FieldViolation;

mod enums;
mod fields;

use self::fields::{
    callback_url, channel_options, client_ip, code, country, destination, language, optional_text,
    seconds, session_id, subaccount,
};
use super::status;
use crate::pb::v1 as pb;
use crate::upstream;

#[derive(Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// `value` when nothing was wrong, else INVALID_ARGUMENT with every violation.
    pub fn finish<T>(self, value: T) -> Result<T, Status> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(status::invalid_request(self.0))
        }
    }
}

/// Checks a StartVerification and builds the body 8x8 expects.
pub fn start_request(
    request: &pb::StartVerificationRequest,
    default_subaccount: Option<&str>,
) -> Result<(String, upstream::StartRequest), Status> {
    let mut v = Violations::default();
    let subaccount = subaccount(&mut v, &request.subaccount_id, default_subaccount);
    let country = country(&mut v, "country", &request.country);
    let destination = destination(
        &mut v,
        "destination",
        &request.destination,
        country.is_some(),
    );
    let channel = enums::channel(&mut v, request.channel);
    let channel_kind = pb::Channel::try_from(request.channel).unwrap_or_default();

    let code_length = (request.code_length != 0).then_some(request.code_length);
    if code_length.is_some_and(|length| !(3..=10).contains(&length)) {
        v.add("code_length", "must be from 3 to 10");
    }
    let template = optional_text(&mut v, "template", &request.template, 1000);
    if let Some(template) = &template {
        if !template.contains("{code}") {
            v.add("template", "must contain the {code} placeholder");
        }
        if !matches!(
            channel_kind,
            pb::Channel::Unspecified | pb::Channel::Sms | pb::Channel::Call
        ) {
            v.add("template", "applies only to channels sms and call");
        }
    }

    if !request.request_id.is_empty() && uuid::Uuid::parse_str(&request.request_id).is_err() {
        v.add(
            "request_id",
            "must be a UUID, e.g. 3f2c1a9e-8d4b-4c5e-9f1a-2b3c4d5e6f70",
        );
    }
    let body = upstream::StartRequest {
        destination,
        country,
        channel,
        brand: optional_text(&mut v, "brand", &request.brand, 30),
        code_length,
        code_validity: seconds(
            &mut v,
            "code_validity",
            request.code_validity.as_ref(),
            30,
            7200,
        ),
        code_type: enums::code_type(&mut v, request.code_type),
        template,
        language: language(&mut v, &request.language),
        reset_session: request.reset_session,
        resending_interval: seconds(
            &mut v,
            "resending_interval",
            request.resending_interval.as_ref(),
            10,
            7200,
        ),
        callback_url: callback_url(&mut v, &request.callback_url),
        client_ip: client_ip(&mut v, "client_ip", &request.client_ip),
        options: channel_options(&mut v, channel_kind, request.channel_options.as_ref()),
    };
    v.finish((subaccount, body))
}

/// Checks a CheckSmaCoverage and builds the body 8x8 expects.
pub fn sma_coverage_request(
    request: &pb::CheckSmaCoverageRequest,
    default_subaccount: Option<&str>,
) -> Result<(String, upstream::SmaCoverageRequest), Status> {
    let mut v = Violations::default();
    let subaccount = subaccount(&mut v, &request.subaccount_id, default_subaccount);
    if request.client_ip.is_empty() {
        v.add(
            "client_ip",
            "required: the IP of the device's mobile data session",
        );
    }
    let client_ip = client_ip(&mut v, "client_ip", &request.client_ip).unwrap_or_default();
    let country = country(&mut v, "country", &request.country);
    let destination = (!request.destination.is_empty()).then(|| {
        destination(
            &mut v,
            "destination",
            &request.destination,
            country.is_some(),
        )
    });
    let body = upstream::SmaCoverageRequest {
        client_ip,
        destination,
        country,
    };
    v.finish((subaccount, body))
}

/// Checks the subaccount and session ID every session RPC names.
pub fn session_ref(
    subaccount_id: &str,
    session_id: &str,
    default_subaccount: Option<&str>,
) -> Result<String, Status> {
    let mut v = Violations::default();
    let subaccount = subaccount(&mut v, subaccount_id, default_subaccount);
    fields::session_id(&mut v, session_id);
    v.finish(subaccount)
}

/// Checks a CheckCode request.
pub fn check_code_request(
    request: &pb::CheckCodeRequest,
    default_subaccount: Option<&str>,
) -> Result<String, Status> {
    let mut v = Violations::default();
    let subaccount = subaccount(&mut v, &request.subaccount_id, default_subaccount);
    session_id(&mut v, &request.session_id);
    code(&mut v, &request.code);
    v.finish(subaccount)
}

/// Checks a WatchSession request; a heartbeat, when asked, is at least 1 s.
pub fn watch_request(
    request: &pb::WatchSessionRequest,
    default_subaccount: Option<&str>,
) -> Result<String, Status> {
    let mut v = Violations::default();
    let subaccount = subaccount(&mut v, &request.subaccount_id, default_subaccount);
    session_id(&mut v, &request.session_id);
    if let Some(every) = &request.heartbeat_interval
        && (every.seconds < 1 || every.seconds > 3600 || every.nanos < 0)
    {
        v.add("heartbeat_interval", "must be from 1s to 3600s");
    }
    v.finish(subaccount)
}
