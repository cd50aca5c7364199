//! Upstream answers → proto messages. (Requests are read by `validate`.)

use chrono::{DateTime, Utc};

use crate::pb::v1 as pb;
use crate::upstream::{SessionInfo, SessionStatus};

pub fn status(status: SessionStatus) -> pb::SessionStatus {
    match status {
        SessionStatus::Waiting => pb::SessionStatus::Waiting,
        SessionStatus::Verified => pb::SessionStatus::Verified,
        SessionStatus::Failed => pb::SessionStatus::Failed,
        SessionStatus::Expired => pb::SessionStatus::Expired,
    }
}

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

pub fn session(subaccount: &str, session: &SessionInfo) -> pb::Session {
    pb::Session {
        session_id: session.session_id.clone(),
        subaccount_id: subaccount.to_owned(),
        destination: session.destination.clone(),
        status: status(session.status) as i32,
        attempt: session.attempt,
        expires_at: session.expires_at.map(timestamp),
        retry_after: session.retry_after.map(timestamp),
        verify_uri: session.verify_uri.clone(),
        verification_url: session.verification_url.clone().unwrap_or_default(),
    }
}
