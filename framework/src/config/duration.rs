//! Human-readable durations in config: `"500ms"`, `"3s"`, `"1m30s"`.
//!
//! Use it on your own config fields with `#[serde(with = "truss::config::duration")]`:
//!
//! ```
//! use std::time::Duration;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Section {
//!     #[serde(with = "truss::config::duration")]
//!     cache_ttl: Duration,
//! }
//!
//! let s: Section = serde_json::from_str(r#"{ "cache_ttl": "1m30s" }"#).unwrap();
//! assert_eq!(s.cache_ttl, Duration::from_secs(90));
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

/// Units accepted after a number, longest first so `ms` is not read as `m`.
const UNITS: &[(&str, f64)] = &[
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86400.0),
];

/// Parses `"250ms"`, `"3s"`, `"1.5s"`, `"1m30s"` or `"0"` into a [`Duration`].
///
/// ```
/// use std::time::Duration;
/// assert_eq!(truss::config::duration::parse("250ms"), Ok(Duration::from_millis(250)));
/// assert!(truss::config::duration::parse("3 sec").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let err = || {
        format!(
            "invalid duration {text:?}: expected a number followed by a unit \
             (ns, us, ms, s, m, h, d), such as \"500ms\" or \"1m30s\""
        )
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let (unit, scale) = UNITS
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())
            .ok_or_else(err)?;
        total += value * scale;
        rest = &rest[unit.len()..];
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way [`parse`] reads it (`"1.5s"`, `"250ms"`).
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        "0".to_owned()
    } else if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else if d.as_nanos().is_multiple_of(1_000) {
        format!("{}us", d.as_micros())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// Serde `deserialize_with` for a [`Duration`] written as a string with a unit.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

/// Serde `serialize_with` for a [`Duration`], written back as a string with a unit.
pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*d))
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, such as \"500ms\" or \"3s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        if v == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(E::custom(format!(
                "invalid duration {v}: a duration needs a unit, such as \"{v}ms\" or \"{v}s\""
            )))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!(
                "invalid duration {v}: must not be negative"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "3", "s", "3 sec", "3sec", "-1s", "1.2.3s", "ms500", "1e3s",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_secs(3),
            Duration::from_millis(250),
            Duration::from_micros(7),
            Duration::from_nanos(9),
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}

/// A [`Duration`] that (de)serializes as a string with a unit, for places where
/// `#[serde(with)]` cannot reach, such as map values.
///
/// ```
/// use std::collections::BTreeMap;
/// use truss::config::duration::HumanDuration;
///
/// let routes: BTreeMap<String, HumanDuration> =
///     serde_json::from_str(r#"{ "/slow": "2m" }"#).unwrap();
/// assert_eq!(routes["/slow"].0.as_secs(), 120);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(HumanDuration)
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, serializer)
    }
}
