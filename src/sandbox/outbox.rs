//! What the sandbox "delivered": one entry per code message, readable via `/_sandbox/messages`
//! so developers and tests can see the code a real user would have received.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use super::clock::format_8x8;

/// Oldest entries are dropped beyond this, so long benchmarks cannot grow memory without bound.
pub const CAPACITY: usize = 10_000;

/// One message the sandbox would have delivered (`/_sandbox/messages`, or in process via
/// [`RunningSandbox::messages`](super::RunningSandbox::messages)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMessage {
    pub session_id: String,
    /// E.164 with a leading `+`.
    pub destination: String,
    /// `sms`, `call`, `whatsapp` or `viber` (SMA sends nothing).
    pub channel: String,
    /// Rendered text as the user would see or hear it.
    pub text: String,
    pub code: String,
    /// Sandbox-clock time of sending (RFC 3339 with 8x8's precision on the wire).
    #[serde(serialize_with = "as_8x8_time")]
    pub sent_at: DateTime<Utc>,
}

fn as_8x8_time<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_8x8(*at))
}

#[derive(Debug, Default)]
pub struct Outbox {
    messages: VecDeque<OutboxMessage>,
}

impl Outbox {
    pub fn push(&mut self, message: OutboxMessage) {
        if self.messages.len() >= CAPACITY {
            self.messages.pop_front();
        }
        self.messages.push_back(message);
    }

    /// Messages oldest first; empty filters match everything, destinations with or without `+`.
    pub fn list(&self, session_id: Option<&str>, destination: Option<&str>) -> Vec<OutboxMessage> {
        let session_id = session_id.filter(|s| !s.is_empty());
        let destination = destination
            .map(|d| d.trim().trim_start_matches('+'))
            .filter(|d| !d.is_empty());
        self.messages
            .iter()
            .filter(|m| session_id.is_none_or(|id| m.session_id == id))
            .filter(|m| destination.is_none_or(|d| m.destination.trim_start_matches('+') == d))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(session: &str, destination: &str) -> OutboxMessage {
        OutboxMessage {
            session_id: session.into(),
            destination: destination.into(),
            channel: "sms".into(),
            text: "t".into(),
            code: "1234".into(),
            sent_at: Utc::now(),
        }
    }

    #[test]
    fn filters_and_keeps_order() {
        let mut outbox = Outbox::default();
        outbox.push(message("a", "+6511111111"));
        outbox.push(message("b", "+6522222222"));
        outbox.push(message("a", "+6511111111"));
        assert_eq!(outbox.list(None, None).len(), 3);
        assert_eq!(outbox.list(Some("a"), None).len(), 2);
        assert_eq!(outbox.list(Some(""), Some("6522222222")).len(), 1);
        assert_eq!(outbox.list(None, Some("+6522222222"))[0].session_id, "b");
        assert!(outbox.list(Some("a"), Some("+6522222222")).is_empty());
    }

    #[test]
    fn drops_oldest_beyond_capacity() {
        let mut outbox = Outbox::default();
        for n in 0..CAPACITY + 2 {
            outbox.push(message(&n.to_string(), "+6511111111"));
        }
        let all = outbox.list(None, None);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].session_id, "2");
    }
}
