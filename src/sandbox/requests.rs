//! Journal of every request that reached the `/api/` routes (including rejected ones), so tests
//! can assert the exact method, path, query, headers and JSON a client sent.

use std::collections::VecDeque;

use serde::Serialize;

/// Oldest entries are dropped beyond this, so long benchmarks cannot grow memory without bound.
pub const CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Raw query string, without `?`.
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The body parsed as JSON; null when empty or not JSON.
    pub body: serde_json::Value,
    pub raw_body: String,
    /// The W3C trace context the client sent, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl RecordedRequest {
    pub fn new(
        method: String,
        path: String,
        query: Option<String>,
        authorization: Option<String>,
        content_type: Option<String>,
        raw: &[u8],
    ) -> Self {
        Self {
            method,
            path,
            query,
            authorization,
            content_type,
            body: serde_json::from_slice(raw).unwrap_or(serde_json::Value::Null),
            raw_body: String::from_utf8_lossy(raw).into_owned(),
            traceparent: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct RequestLog {
    entries: VecDeque<RecordedRequest>,
}

impl RequestLog {
    pub fn push(&mut self, entry: RecordedRequest) {
        if self.entries.len() >= CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub fn all(&self) -> Vec<RecordedRequest> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_bodies_and_keeps_raw_text() {
        let json =
            RecordedRequest::new("POST".into(), "/a".into(), None, None, None, br#"{"a":1}"#);
        assert_eq!(json.body["a"], 1);
        let text = RecordedRequest::new("POST".into(), "/a".into(), None, None, None, b"{oops");
        assert!(text.body.is_null());
        assert_eq!(text.raw_body, "{oops");
        let empty = RecordedRequest::new("GET".into(), "/a".into(), None, None, None, b"");
        assert!(empty.body.is_null());
    }
}
