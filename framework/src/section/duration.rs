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

/// Parses `"250ms"`, `"3s"`, `"1.5s"`, `"1m30s"` or `"0"` into a [`Duration`].
///
/// The grammar is `truss-duration`'s, the one the macros read too: a number and a unit
/// (ns, us, µs, ms, s, m, h, d), repeated for compounds.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(truss::config::duration::parse("250ms"), Ok(Duration::from_millis(250)));
/// assert!(truss::config::duration::parse("3 sec").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    truss_duration::parse(text).map_err(|_| {
        let text = text.trim();
        format!(
            "invalid duration {text:?}: expected a number followed by a unit \
             (ns, us, ms, s, m, h, d), such as \"500ms\" or \"1m30s\""
        )
    })
}

/// Formats a duration the way [`parse`] reads it (`"3s"`, `"250ms"`).
pub fn format(d: Duration) -> String {
    truss_duration::format(d)
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
