//! `COUNT/WINDOW`, as in `5/10m`: at most COUNT events in any WINDOW.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub window: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (count, window) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected COUNT/WINDOW, e.g. 5/10m"))?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|count| *count > 0)
            .ok_or_else(|| format!("{text:?}: COUNT must be a whole number above 0"))?;
        let window = humantime::parse_duration(window.trim())
            .ok()
            .filter(|window| *window >= Duration::from_secs(1))
            .ok_or_else(|| {
                format!("{text:?}: WINDOW must be a duration of 1s or more, e.g. 10m")
            })?;
        Ok(Rate { count, window })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_count_and_window() {
        let rate: Rate = "5/10m".parse().unwrap();
        assert_eq!((rate.count, rate.window), (5, Duration::from_secs(600)));
        for bad in ["5", "0/1m", "x/1m", "5/0s", "5/soon"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }
}
