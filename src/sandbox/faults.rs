//! Injected upstream failures: the next N `/api/` requests answer a chosen status with an 8x8
//! error body (optionally after a delay and with `Retry-After`), without touching any state.
//! Rules queue up: each POST appends one; requests consume the oldest rule first.

use std::collections::VecDeque;
use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;

use super::errors::{ApiError, code};

/// Body of `POST /_sandbox/faults`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRequest {
    pub status: u16,
    pub code: Option<u32>,
    pub count: Option<u32>,
    pub message: Option<String>,
    pub retry_after_seconds: Option<u64>,
    pub delay_ms: Option<u64>,
}

/// Longest accepted delay, so a typo cannot park a connection for hours.
const MAX_DELAY_MS: u64 = 60_000;

#[derive(Debug, Clone)]
struct Rule {
    error: ApiError,
    remaining: u32,
    delay: Duration,
}

/// A fault to serve for one request.
#[derive(Debug, Clone)]
pub struct Fault {
    pub error: ApiError,
    pub delay: Duration,
}

#[derive(Debug, Default)]
pub struct Faults {
    rules: VecDeque<Rule>,
}

impl Faults {
    /// Queues a rule; returns the number of faulty answers now pending.
    pub fn add(&mut self, req: FaultRequest) -> Result<u64, String> {
        let status = StatusCode::from_u16(req.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| format!("status must be 400-599, got {}", req.status))?;
        let delay_ms = req.delay_ms.unwrap_or(0);
        if delay_ms > MAX_DELAY_MS {
            return Err(format!("delayMs must be at most {MAX_DELAY_MS}"));
        }
        let remaining = req.count.unwrap_or(1);
        if remaining == 0 {
            return Err("count must be at least 1".into());
        }
        let message = req.message.unwrap_or_else(|| {
            format!(
                "Simulated fault: {}",
                status.canonical_reason().unwrap_or("error")
            )
        });
        let mut error = ApiError::new(status, req.code.unwrap_or(code::INTERNAL), message);
        error.retry_after_secs = req.retry_after_seconds;
        self.rules.push_back(Rule {
            error,
            remaining,
            delay: Duration::from_millis(delay_ms),
        });
        Ok(self.pending())
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// Faulty answers still to be served.
    pub fn pending(&self) -> u64 {
        self.rules.iter().map(|r| u64::from(r.remaining)).sum()
    }

    /// Consumes one faulty answer, if any is pending.
    pub fn take(&mut self) -> Option<Fault> {
        let rule = self.rules.front_mut()?;
        rule.remaining -= 1;
        let fault = Fault {
            error: rule.error.clone(),
            delay: rule.delay,
        };
        if rule.remaining == 0 {
            self.rules.pop_front();
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(status: u16, count: Option<u32>) -> FaultRequest {
        FaultRequest {
            status,
            code: None,
            count,
            message: None,
            retry_after_seconds: None,
            delay_ms: None,
        }
    }

    #[test]
    fn rules_are_consumed_in_order() {
        let mut faults = Faults::default();
        assert_eq!(faults.add(req(503, Some(2))), Ok(2));
        assert_eq!(faults.add(req(429, None)), Ok(3));
        let statuses: Vec<u16> = std::iter::from_fn(|| faults.take())
            .map(|f| f.error.status.as_u16())
            .collect();
        assert_eq!(statuses, [503, 503, 429]);
        assert!(faults.take().is_none());
    }

    #[test]
    fn rejects_nonsense() {
        let mut faults = Faults::default();
        assert!(faults.add(req(200, None)).is_err());
        assert!(faults.add(req(99, None)).is_err());
        assert!(faults.add(req(500, Some(0))).is_err());
        faults.add(req(500, Some(3))).unwrap();
        faults.clear();
        assert_eq!(faults.pending(), 0);
    }
}
