//! Property tests of request validation: thousands of generated requests,
//! no panic, every invalid input refused with a violation on its field.

use proptest::prelude::*;
use tonic::Code;
use tonic_types::StatusExt;

use super::validate;
use crate::pb::v1 as pb;
use crate::pb::v1::start_verification_request::ChannelOptions;

fn duration() -> impl Strategy<Value = Option<prost_types::Duration>> {
    proptest::option::of(
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| prost_types::Duration { seconds, nanos }),
    )
}

fn options() -> impl Strategy<Value = Option<ChannelOptions>> {
    proptest::option::of(prop_oneof![
        (".{0,20}", any::<i32>()).prop_map(|(source, encoding)| ChannelOptions::Sms(
            pb::SmsOptions { source, encoding }
        )),
        (".{0,20}", any::<f64>(), any::<u32>(), ".{0,60}").prop_map(
            |(source, speed, repetition, voice_profile)| {
                ChannelOptions::Call(pb::CallOptions {
                    source,
                    speed,
                    repetition,
                    voice_profile,
                })
            }
        ),
        ".{0,20}".prop_map(
            |template_name| ChannelOptions::Whatsapp(pb::WhatsAppOptions { template_name })
        ),
    ])
}

prop_compose! {
    fn any_request()(
        subaccount_id in ".{0,60}",
        destination in "[+0-9 ()a-z.-]{0,25}",
        country in ".{0,3}",
        channel in -1i32..8,
        brand in ".{0,40}",
        code_length in any::<u32>(),
        code_validity in duration(),
        code_type in -1i32..8,
        template in ".{0,40}",
        language in "[a-zA-Z-]{0,6}",
        reset_session in any::<Option<bool>>(),
        resending_interval in duration(),
        callback_url in ".{0,40}",
        client_ip in "[0-9a-f.:]{0,20}",
        request_id in ".{0,40}",
        channel_options in options(),
    ) -> pb::StartVerificationRequest {
        pb::StartVerificationRequest {
            subaccount_id, destination, country, channel, brand, code_length, code_validity,
            code_type, template, language, reset_session, resending_interval, callback_url,
            client_ip, request_id, channel_options,
        }
    }
}

/// The fields a StartVerification violation may name.
const FIELDS: &[&str] = &[
    "subaccount_id",
    "destination",
    "country",
    "channel",
    "brand",
    "code_length",
    "code_validity",
    "code_type",
    "template",
    "language",
    "resending_interval",
    "callback_url",
    "client_ip",
    "request_id",
    "sms",
    "sms.source",
    "sms.encoding",
    "call",
    "call.speed",
    "call.repetition",
    "call.voice_profile",
    "whatsapp",
    "whatsapp.template_name",
];

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_request_is_accepted_or_refused_with_named_fields(request in any_request()) {
        match validate::start_request(&request, Some("default_sub")) {
            Ok((subaccount, body)) => {
                prop_assert!(!subaccount.is_empty());
                prop_assert!(!body.destination.is_empty());
            }
            Err(status) => {
                prop_assert_eq!(status.code(), Code::InvalidArgument);
                let fields = violations(&status);
                prop_assert!(!fields.is_empty());
                for field in &fields {
                    prop_assert!(FIELDS.contains(&field.as_str()), "unknown field {}", field);
                }
            }
        }
    }

    #[test]
    fn an_out_of_range_code_length_is_named(length in prop_oneof![1u32..3, 11u32..]) {
        let request = pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            code_length: length,
            ..Default::default()
        };
        let status = validate::start_request(&request, Some("sub")).unwrap_err();
        prop_assert_eq!(violations(&status), vec!["code_length".to_owned()]);
    }

    #[test]
    fn an_out_of_range_validity_is_named(seconds in prop_oneof![i64::MIN..30, 7201i64..]) {
        let request = pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            code_validity: Some(prost_types::Duration { seconds, nanos: 0 }),
            ..Default::default()
        };
        let status = validate::start_request(&request, Some("sub")).unwrap_err();
        prop_assert_eq!(violations(&status), vec!["code_validity".to_owned()]);
    }

    #[test]
    fn a_bad_speed_is_named(speed in prop_oneof![
        Just(f64::NAN), Just(f64::INFINITY), -1e9f64..0.49, 2.01f64..1e9
    ]) {
        let request = pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            channel: pb::Channel::Call as i32,
            channel_options: Some(ChannelOptions::Call(pb::CallOptions { speed, ..Default::default() })),
            ..Default::default()
        };
        let status = validate::start_request(&request, Some("sub")).unwrap_err();
        prop_assert_eq!(violations(&status), vec!["call.speed".to_owned()]);
    }

    #[test]
    fn a_brand_longer_than_30_is_named(brand in ".{31,60}") {
        let request = pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            brand,
            ..Default::default()
        };
        let status = validate::start_request(&request, Some("sub")).unwrap_err();
        prop_assert_eq!(violations(&status), vec!["brand".to_owned()]);
    }

    #[test]
    fn a_template_without_code_is_named(template in "[^{}]{1,40}") {
        let request = pb::StartVerificationRequest {
            destination: "+6598765432".into(),
            template,
            ..Default::default()
        };
        let status = validate::start_request(&request, Some("sub")).unwrap_err();
        prop_assert_eq!(violations(&status), vec!["template".to_owned()]);
    }

    #[test]
    fn valid_requests_pass_unchanged(
        digits in "[1-9][0-9]{7,13}",
        code_length in 3u32..=10,
        validity in 30i64..=7200,
        interval in 10i64..=7200,
        brand in "[A-Za-z0-9 ]{0,30}",
    ) {
        let request = pb::StartVerificationRequest {
            destination: format!("+{digits}"),
            code_length,
            code_validity: Some(prost_types::Duration { seconds: validity, nanos: 0 }),
            resending_interval: Some(prost_types::Duration { seconds: interval, nanos: 0 }),
            brand: brand.clone(),
            ..Default::default()
        };
        let (_, body) = validate::start_request(&request, Some("sub")).unwrap();
        prop_assert_eq!(body.destination, format!("+{digits}"));
        prop_assert_eq!(body.code_length, Some(code_length));
        prop_assert_eq!(body.code_validity, Some(validity as u32));
        prop_assert_eq!(body.resending_interval, Some(interval as u32));
        prop_assert_eq!(body.brand, (!brand.is_empty()).then_some(brand));
    }

    #[test]
    fn codes_and_session_ids_never_panic(code in ".{0,20}", session in ".{0,80}") {
        let request = pb::CheckCodeRequest { subaccount_id: String::new(), session_id: session, code };
        if let Err(status) = validate::check_code_request(&request, Some("sub")) {
            prop_assert_eq!(status.code(), Code::InvalidArgument);
            prop_assert!(!violations(&status).is_empty());
        }
    }
}
