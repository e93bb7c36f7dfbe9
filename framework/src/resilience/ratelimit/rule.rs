use std::fmt;
use std::time::Duration;

use http::HeaderName;
use serde::{Deserialize, Serialize};

use crate::section::duration;
use crate::section::{Section, ValidationError};

/// What a rate limit counts separately.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeySpec {
    /// One bucket for everyone (`"global"`, the default).
    #[default]
    Global,
    /// One bucket per client IP address (`"ip"`), from the TCP peer address.
    ClientIp,
    /// One bucket per value of a header, which is also how gRPC metadata travels
    /// (`"header:x-api-key"`). Requests without it share one bucket.
    Header(HeaderName),
}

impl TryFrom<String> for KeySpec {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "global" => Ok(KeySpec::Global),
            "ip" => Ok(KeySpec::ClientIp),
            other => match other.strip_prefix("header:") {
                Some(name) => HeaderName::from_bytes(name.trim().as_bytes())
                    .map(KeySpec::Header)
                    .map_err(|_| format!("invalid header name {name:?} in key {text:?}")),
                None => Err(format!(
                    "invalid key {text:?}: expected \"global\", \"ip\" or \"header:<name>\""
                )),
            },
        }
    }
}

impl From<KeySpec> for String {
    fn from(key: KeySpec) -> String {
        key.to_string()
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::Global => f.write_str("global"),
            KeySpec::ClientIp => f.write_str("ip"),
            KeySpec::Header(name) => write!(f, "header:{name}"),
        }
    }
}

/// One rate limit: a token bucket refilled at `rps`, holding `burst` tokens.
///
/// ```toml
/// rps = 100            # tokens per second; fractions allowed (0.5 = one every 2 s)
/// burst = 20           # bucket size; default: rps rounded up
/// key = "ip"           # "global" (default), "ip" or "header:<name>"
/// evict_interval = "30s"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// Requests per second (must be > 0).
    pub rps: f64,
    /// Bucket size (must be ≥ 1). Default: `rps` rounded up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// What is counted separately.
    #[serde(default)]
    pub key: KeySpec,
    /// How often idle keys are forgotten. Default `30s`.
    #[serde(default = "default_evict", with = "duration")]
    pub evict_interval: Duration,
}

fn default_evict() -> Duration {
    Duration::from_secs(30)
}

impl Default for RateLimitRule {
    fn default() -> Self {
        Self {
            rps: 100.0,
            burst: None,
            key: KeySpec::Global,
            evict_interval: default_evict(),
        }
    }
}

impl RateLimitRule {
    /// The bucket size in effect.
    pub fn effective_burst(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| self.rps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32)
    }
}

impl Section for RateLimitRule {
    fn validate(&self) -> Result<(), ValidationError> {
        if !self.rps.is_finite() || self.rps <= 0.0 {
            return Err(ValidationError::new(
                "rps",
                format!(
                    "must be a positive number of requests per second, got {}",
                    self.rps
                ),
            ));
        }
        if self.rps > 1e9 {
            return Err(ValidationError::new("rps", "must be at most 1e9"));
        }
        if self.burst == Some(0) {
            return Err(ValidationError::new("burst", "must be at least 1"));
        }
        if self.evict_interval.is_zero() {
            return Err(ValidationError::new(
                "evict_interval",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_spec_parses() {
        assert_eq!(KeySpec::try_from("ip".to_owned()), Ok(KeySpec::ClientIp));
        assert_eq!(
            KeySpec::try_from("header:X-Api-Key".to_owned()),
            Ok(KeySpec::Header(HeaderName::from_static("x-api-key")))
        );
        assert!(KeySpec::try_from("cookie:x".to_owned()).is_err());
        assert!(KeySpec::try_from("header:bad name".to_owned()).is_err());
    }

    #[test]
    fn bad_rules_are_rejected() {
        let bad = |rule: RateLimitRule, field: &str| {
            assert_eq!(rule.validate().unwrap_err().field, field, "{rule:?}");
        };
        bad(
            RateLimitRule {
                rps: -1.0,
                ..Default::default()
            },
            "rps",
        );
        bad(
            RateLimitRule {
                rps: 0.0,
                ..Default::default()
            },
            "rps",
        );
        bad(
            RateLimitRule {
                rps: f64::NAN,
                ..Default::default()
            },
            "rps",
        );
        bad(
            RateLimitRule {
                burst: Some(0),
                ..Default::default()
            },
            "burst",
        );
        assert_eq!(
            RateLimitRule {
                rps: 2.5,
                ..Default::default()
            }
            .effective_burst(),
            3
        );
    }
}
