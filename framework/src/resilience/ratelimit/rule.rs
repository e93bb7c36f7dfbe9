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

/// Where a rule's buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process (`"local"`, the default): each instance enforces the whole rate.
    #[default]
    Local,
    /// In Redis (`"redis"`, feature `redis`, needs `[redis] url`): every instance of the
    /// service shares the buckets, so the rate is global; while Redis is away each instance
    /// falls back to its share of the rate (see
    /// [`ratelimit`](crate::resilience::ratelimit#shared-limits-in-redis)).
    Redis,
}

/// One rate limit: a token bucket refilled at `rps`, holding `burst` tokens.
///
/// ```toml
/// rps = 100            # tokens per second; fractions allowed (0.5 = one every 2 s)
/// burst = 20           # bucket size; default: rps rounded up
/// key = "ip"           # "global" (default), "ip" or "header:<name>"
/// evict_interval = "30s"
///
/// # Shared by every instance through Redis (feature `redis`, `[redis] url`):
/// backend = "redis"    # "local" (default) or "redis"
/// redis_budget = "5ms" # longest wait for Redis before deciding locally
/// instances = 4        # local fallback: each instance allows rps / instances
/// shards = 1           # split each bucket over this many Redis keys (hot keys)
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
    /// Where the buckets live. Default [`Backend::Local`].
    #[serde(default)]
    pub backend: Backend,
    /// With `backend = "redis"`: how long a decision waits for Redis before the local
    /// fallback decides it instead. Default `5ms`.
    #[serde(default = "default_redis_budget", with = "duration")]
    pub redis_budget: Duration,
    /// With `backend = "redis"`: how many instances share the limit. While Redis is away,
    /// each instance enforces `rps / instances` (and `burst / instances`, rounded up) on its
    /// own, so together they stay near the configured rate. Default 1.
    #[serde(default = "one")]
    pub instances: u32,
    /// With `backend = "redis"`: how many Redis keys each bucket is split into, each with
    /// `rps / shards` and `burst / shards` (rounded up), one picked at random per decision. More than 1 only
    /// for a key so hot that one Redis node cannot carry it. Default 1.
    #[serde(default = "one")]
    pub shards: u32,
}

fn default_evict() -> Duration {
    Duration::from_secs(30)
}

fn default_redis_budget() -> Duration {
    Duration::from_millis(5)
}

fn one() -> u32 {
    1
}

impl Default for RateLimitRule {
    fn default() -> Self {
        Self {
            rps: 100.0,
            burst: None,
            key: KeySpec::Global,
            evict_interval: default_evict(),
            backend: Backend::Local,
            redis_budget: default_redis_budget(),
            instances: 1,
            shards: 1,
        }
    }
}

impl RateLimitRule {
    /// The bucket size in effect.
    pub fn effective_burst(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| self.rps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32)
    }

    /// One `n`th of this rule (`rps / n`, `burst / n` rounded up), kept in this process:
    /// the local fallback's share when `n` is `instances`, a sub-bucket when it is
    /// `shards`.
    pub fn share(&self, n: u32) -> RateLimitRule {
        let n = n.max(1);
        RateLimitRule {
            rps: self.rps / f64::from(n),
            burst: Some(self.effective_burst().div_ceil(n)),
            backend: Backend::Local,
            ..self.clone()
        }
    }

    fn validate_backend(&self) -> Result<(), ValidationError> {
        if self.instances == 0 {
            return Err(ValidationError::new("instances", "must be at least 1"));
        }
        if self.shards == 0 {
            return Err(ValidationError::new("shards", "must be at least 1"));
        }
        if self.backend == Backend::Local {
            return Ok(());
        }
        if cfg!(not(feature = "redis")) {
            return Err(ValidationError::new(
                "backend",
                "\"redis\" needs truss's `redis` feature (and a `[redis] url`)",
            ));
        }
        if self.redis_budget.is_zero() || self.redis_budget > Duration::from_secs(1) {
            return Err(ValidationError::new(
                "redis_budget",
                format!(
                    "must be greater than 0 and at most 1s, got {:?}",
                    self.redis_budget
                ),
            ));
        }
        Ok(())
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
        self.validate_backend()
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

    #[test]
    fn redis_rules_are_checked_and_share_the_rate() {
        let redis = |rule: RateLimitRule| RateLimitRule {
            backend: Backend::Redis,
            ..rule
        };
        let err = redis(RateLimitRule {
            instances: 0,
            ..Default::default()
        })
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "instances");
        let err = RateLimitRule {
            shards: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "shards");
        let result = redis(RateLimitRule::default()).validate();
        if cfg!(feature = "redis") {
            assert!(result.is_ok(), "{result:?}");
            let err = redis(RateLimitRule {
                redis_budget: Duration::ZERO,
                ..Default::default()
            })
            .validate()
            .unwrap_err();
            assert_eq!(err.field, "redis_budget");
        } else {
            let err = result.unwrap_err();
            assert_eq!(err.field, "backend");
            assert!(err.message.contains("`redis` feature"), "{err}");
        }
        let share = redis(RateLimitRule {
            rps: 100.0,
            burst: Some(25),
            ..Default::default()
        })
        .share(4);
        assert_eq!(
            (share.rps, share.burst, share.backend),
            (25.0, Some(7), Backend::Local)
        );
    }

    #[test]
    fn backend_options_parse_with_defaults() {
        let rule: RateLimitRule =
            serde_json::from_str(r#"{"rps": 10, "backend": "redis", "redis_budget": "2ms"}"#)
                .unwrap();
        assert_eq!(rule.backend, Backend::Redis);
        assert_eq!(rule.redis_budget, Duration::from_millis(2));
        assert_eq!((rule.instances, rule.shards), (1, 1));
        let local: RateLimitRule = serde_json::from_str(r#"{"rps": 10}"#).unwrap();
        assert_eq!(local.backend, Backend::Local);
        assert_eq!(local.redis_budget, Duration::from_millis(5));
        assert!(serde_json::from_str::<RateLimitRule>(r#"{"rps": 1, "backend": "etcd"}"#).is_err());
    }
}
