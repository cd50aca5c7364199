//! The caller's deadline, from the `grpc-timeout` header, so the upstream
//! call gives up when the caller would stop waiting anyway.

use std::time::Duration;

use tonic::metadata::MetadataMap;

/// The time the upstream call may take: the caller's `grpc-timeout` less a
/// small margin, so our own DEADLINE_EXCEEDED (with its ErrorInfo) answers
/// before tonic's timer cancels the call.
pub fn from_metadata(metadata: &MetadataMap) -> Option<Duration> {
    let timeout = grpc_timeout(metadata)?;
    let margin = (timeout / 10).min(Duration::from_millis(50));
    Some(timeout - margin)
}

/// `grpc-timeout` is at most 8 digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Option<Duration> {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", value.parse().unwrap());
        grpc_timeout(&metadata)
    }

    #[test]
    fn parses_every_unit_and_refuses_junk() {
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99u"), Some(Duration::from_micros(99)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        for junk in ["", "S", "123456789S", "5s", "-1S", "1.5S"] {
            assert_eq!(parse(junk), None, "{junk}");
        }
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }
}

#[cfg(test)]
mod margin_tests {
    use super::*;

    #[test]
    fn leaves_a_margin_for_the_answer() {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "400m".parse().unwrap());
        assert_eq!(from_metadata(&metadata), Some(Duration::from_millis(360)));
        metadata.insert("grpc-timeout", "10S".parse().unwrap());
        assert_eq!(from_metadata(&metadata), Some(Duration::from_millis(9950)));
    }
}
