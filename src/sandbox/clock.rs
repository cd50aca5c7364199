//! The sandbox's clock: wall time plus an offset that tests can only move forward, so sessions
//! can be expired (or resend intervals passed) without sleeping.

use chrono::{DateTime, Duration, Utc};

/// Largest total offset, so date arithmetic on sandbox times can never overflow.
pub const MAX_OFFSET_DAYS: i64 = 100 * 366;

/// Wall clock shifted by an adjustable, never-negative offset.
#[derive(Debug, Default, Clone)]
pub struct Clock {
    offset: Duration,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// Moves the clock forward by `millis` (≥ 0). Refused (false) beyond [`MAX_OFFSET_DAYS`].
    pub fn advance_millis(&mut self, millis: i64) -> bool {
        let offset = self.offset + Duration::milliseconds(millis.max(0));
        if offset > Duration::days(MAX_OFFSET_DAYS) {
            return false;
        }
        self.offset = offset;
        true
    }
}

/// Formats like 8x8 does: RFC 3339 with seven fractional digits and an explicit `+00:00`
/// offset, e.g. `2025-12-18T14:05:00.1254323+00:00`.
pub fn format_8x8(at: DateTime<Utc>) -> String {
    // Leap-second nanos can exceed 10^9; clamp so the fraction stays seven digits.
    let ticks = (at.timestamp_subsec_nanos() / 100).min(9_999_999);
    format!("{}.{ticks:07}+00:00", at.format("%Y-%m-%dT%H:%M:%S"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_with_seven_fraction_digits_and_offset() {
        let at = Utc.with_ymd_and_hms(2025, 12, 18, 14, 5, 0).unwrap()
            + Duration::nanoseconds(125_432_399);
        assert_eq!(format_8x8(at), "2025-12-18T14:05:00.1254323+00:00");
        let whole = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(format_8x8(whole), "2025-01-02T03:04:05.0000000+00:00");
        assert!(DateTime::parse_from_rfc3339(&format_8x8(Utc::now())).is_ok());
    }

    #[test]
    fn advance_moves_forward_only() {
        let mut clock = Clock::default();
        let before = clock.now();
        assert!(clock.advance_millis(3_600_000));
        assert!(clock.now() - before >= Duration::seconds(3600));
        assert!(clock.advance_millis(-10_000_000));
        assert!(clock.now() - before >= Duration::seconds(3600));
        assert!(!clock.advance_millis(MAX_OFFSET_DAYS * 86_400_000));
        assert!(clock.now() - before < Duration::days(1));
    }
}
