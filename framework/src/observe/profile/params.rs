//! The query of a profile request: `seconds` and `frequency`, checked against their bounds.

use std::ops::RangeInclusive;
use std::time::Duration;

/// How long a profile runs when the request does not say (as in Go's `net/http/pprof`).
pub(super) const DEFAULT_SECONDS: u64 = 30;
/// The accepted profile durations, in seconds.
pub(super) const SECONDS: RangeInclusive<u64> = 1..=300;
/// Samples per second when the request does not say: 99, not 100, so that sampling does not
/// run in lockstep with work on a 10 ms period.
pub(super) const DEFAULT_FREQUENCY: i32 = 99;
/// The accepted sampling frequencies, in Hz.
pub(super) const FREQUENCY: RangeInclusive<i32> = 1..=1000;

/// A checked profile request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Params {
    /// How long to sample.
    pub(super) duration: Duration,
    /// Samples per second of CPU time.
    pub(super) frequency: i32,
}

impl Params {
    /// Parses `seconds` and `frequency` from a raw query string; the error is a message for
    /// the client (the response is a 400).
    pub(super) fn parse(query: Option<&str>) -> Result<Self, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|e| format!("invalid query string: {e}"))?;
        let mut seconds = DEFAULT_SECONDS;
        let mut frequency = DEFAULT_FREQUENCY;
        for (key, value) in &pairs {
            match key.as_str() {
                "seconds" => seconds = bounded(key, value, &SECONDS)?,
                "frequency" => frequency = bounded(key, value, &FREQUENCY)?,
                _ => {
                    return Err(format!(
                        "unknown query parameter {key:?}: accepted are `seconds` ({}..={}, \
                         default {DEFAULT_SECONDS}) and `frequency` ({}..={} Hz, default \
                         {DEFAULT_FREQUENCY})",
                        SECONDS.start(),
                        SECONDS.end(),
                        FREQUENCY.start(),
                        FREQUENCY.end(),
                    ));
                }
            }
        }
        Ok(Self {
            duration: Duration::from_secs(seconds),
            frequency,
        })
    }
}

/// `value` as a whole number within `range`, or a message naming `key` and the range.
fn bounded<T>(key: &str, value: &str, range: &RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    value
        .trim()
        .parse::<T>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            format!(
                "`{key}` must be a whole number from {} to {}, got {value:?}",
                range.start(),
                range.end()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bounds_and_clear_errors() {
        let p = Params::parse(None).unwrap();
        assert_eq!(p.duration, Duration::from_secs(30));
        assert_eq!(p.frequency, 99);
        let p = Params::parse(Some("seconds=5&frequency=250")).unwrap();
        assert_eq!((p.duration.as_secs(), p.frequency), (5, 250));
        assert_eq!(
            Params::parse(Some("seconds=300"))
                .unwrap()
                .duration
                .as_secs(),
            300
        );

        for (query, names) in [
            (
                "seconds=0",
                "`seconds` must be a whole number from 1 to 300",
            ),
            (
                "seconds=301",
                "`seconds` must be a whole number from 1 to 300",
            ),
            ("seconds=abc", "got \"abc\""),
            ("seconds=1.5", "`seconds`"),
            ("seconds=-1", "`seconds`"),
            (
                "frequency=0",
                "`frequency` must be a whole number from 1 to 1000",
            ),
            ("frequency=5000", "`frequency`"),
            ("second=5", "unknown query parameter \"second\""),
        ] {
            let err = Params::parse(Some(query)).unwrap_err();
            assert!(err.contains(names), "{query}: {err}");
        }
    }
}
