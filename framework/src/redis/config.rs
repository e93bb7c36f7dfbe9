//! `[redis]` and `[redis.cache]`: always compiled, so a config file with the section is
//! accepted by every build; a configured `url` without the `redis` feature is a validation
//! error.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::resilience::breaker::BreakerConfig;
use crate::section::duration;
use crate::section::{Section, ValidationError};

/// URL schemes the Redis client accepts.
/// The longest any of the section's timeouts may be: longer is surely a typo, and deadlines
/// computed from it must stay representable.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The longest a cache TTL may be (a year): jittered TTLs are computed with floating point
/// and sent to Redis in milliseconds, which must not overflow.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

const SCHEMES: &[&str] = &["redis://", "rediss://", "redis+unix://", "unix://"];

/// `[redis]`: the governed Redis client behind [`Redis`](crate::redis) (feature `redis`) and
/// the defaults of its caches.
///
/// Without a `url`, Redis is off: nothing connects, and a service that needs it says so at
/// start. With `required = false` (the default) the service stays ready while Redis is down;
/// its calls fail fast with `REDIS_UNAVAILABLE` and caches call their loaders directly.
///
/// ```toml
/// [redis]
/// url = "redis://cache.internal:6379/0"   # rediss:// for TLS (system roots); default: off
/// connect_timeout = "1s"        # default: longest wait for a (re)connection
/// command_timeout = "500ms"     # default: the longest any command runs
/// required = false              # default; true: /readyz includes a `redis` check
///
/// [redis.breaker]               # the [breaker] keys; one breaker per client
/// strategy = "adaptive"
///
/// [redis.cache]                 # defaults of every truss::redis::Cache
/// ttl = "60s"
/// negative_ttl = "5s"           # how long "not found" is remembered; "0": never
/// jitter = 0.1                  # each TTL is ttl × (1 ± jitter), uniformly
/// invalidation_channel = "truss:cache:invalidate"
///
/// [redis.cache.l1]              # an in-process cache in front of Redis
/// enabled = false
/// capacity = 10000
/// ttl = "5s"                    # also the longest an entry can be stale on this instance
/// ```
///
/// ```
/// use truss::config::Section;
/// use truss::redis::RedisConfig;
///
/// let config = RedisConfig::default();
/// assert!(config.url.is_none() && config.validate().is_ok());
///
/// let bad = RedisConfig { url: Some("http://cache:6379".into()), ..RedisConfig::default() };
/// assert_eq!(bad.validate().unwrap_err().field, "url");
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, `rediss://…` (TLS, the system's roots) or
    /// `redis+unix:///path/to/socket` (also spelled `unix:///path/to/socket`). Default
    /// none: Redis is off.
    pub url: Option<String>,
    /// Longest wait for one connection attempt; reconnections after an outage use it too.
    /// Default `1s`.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// The longest any governed command runs; a request deadline (or a call's own budget)
    /// that leaves less time bounds it further. Default `500ms`.
    #[serde(with = "duration")]
    pub command_timeout: Duration,
    /// Whether `/readyz` includes a `redis` check. Default `false`: Redis is treated as
    /// optional (a cache), and the service stays ready without it.
    pub required: bool,
    /// The client's breaker: the same keys as `[breaker]`.
    pub breaker: BreakerConfig,
    /// The defaults of the caches built on this client.
    pub cache: CacheConfig,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(500),
            required: false,
            breaker: BreakerConfig::default(),
            cache: CacheConfig::default(),
        }
    }
}

impl RedisConfig {
    /// Whether a Redis server is configured (a `url`).
    pub fn is_configured(&self) -> bool {
        self.url.is_some()
    }
}

impl Section for RedisConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(url) = &self.url
            && !SCHEMES.iter().any(|scheme| url.starts_with(scheme))
        {
            let scheme = url
                .split_once(':')
                .map_or(url.as_str(), |(scheme, _)| scheme);
            return Err(ValidationError::new(
                "url",
                format!(
                    "`{scheme}:` is not a Redis url; use redis://, rediss://, redis+unix:// or unix://"
                ),
            ));
        }
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("command_timeout", self.command_timeout),
        ] {
            if value.is_zero() {
                return Err(ValidationError::new(field, "must be above zero"));
            }
            if value > MAX_TIMEOUT {
                return Err(ValidationError::new(field, "must be at most 1h"));
            }
        }
        self.breaker.validate().map_err(|e| e.within("breaker"))?;
        self.cache.validate().map_err(|e| e.within("cache"))?;
        if cfg!(not(feature = "redis")) && self.is_configured() {
            return Err(ValidationError::new(
                "url",
                "Redis is configured but truss was built without its `redis` feature",
            ));
        }
        Ok(())
    }
}

/// `[redis.cache]`: TTLs, jitter, the optional in-process L1 and the channel that keeps L1s
/// of other instances honest. Every [`Cache`](crate::redis) takes one (usually
/// `&config.redis.cache`).
///
/// ```
/// use std::time::Duration;
/// use truss::config::Section;
/// use truss::redis::CacheConfig;
///
/// let mut config = CacheConfig::default();
/// assert_eq!(config.ttl, Duration::from_secs(60));
/// config.jitter = 1.5;
/// assert_eq!(config.validate().unwrap_err().field, "jitter");
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long a loaded value stays in Redis (before jitter). Default `60s`.
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// How long "not found" (a loader's `Ok(None)`) stays in Redis (before jitter), so a
    /// missing key does not reach the loader on every request. Default `5s`; `0` does not
    /// remember misses.
    #[serde(with = "duration")]
    pub negative_ttl: Duration,
    /// Each TTL is drawn uniformly from `ttl × (1 − jitter)` to `ttl × (1 + jitter)`, so keys
    /// written together do not expire together. From 0 to below 1. Default `0.1`.
    pub jitter: f64,
    /// The in-process cache in front of Redis.
    pub l1: L1Config,
    /// The pub/sub channel `Cache::delete` announces deleted keys on, so that other
    /// instances drop them from their L1. Default `truss:cache:invalidate`.
    pub invalidation_channel: String,
    /// The longest the cache's own reads and writes in Redis (`GET`, `SET`) take; past it
    /// the cache is bypassed for that call, so a slow Redis costs a request at most this
    /// much, not its whole deadline. The request deadline and `command_timeout` bound it
    /// further. Default `100ms`.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            jitter: 0.1,
            l1: L1Config::default(),
            invalidation_channel: "truss:cache:invalidate".to_owned(),
            timeout: Duration::from_millis(100),
        }
    }
}

impl Section for CacheConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.ttl < Duration::from_millis(1) {
            return Err(ValidationError::new("ttl", "must be at least 1ms"));
        }
        if self.timeout.is_zero() {
            return Err(ValidationError::new("timeout", "must be above zero"));
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(ValidationError::new("timeout", "must be at most 1h"));
        }
        for (field, value) in [("ttl", self.ttl), ("negative_ttl", self.negative_ttl)] {
            if value > MAX_TTL {
                return Err(ValidationError::new(field, "must be at most 365d"));
            }
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(ValidationError::new(
                "jitter",
                "must be from 0 to below 1 (0.1 is ±10 %)",
            ));
        }
        if self.l1.enabled && self.invalidation_channel.is_empty() {
            return Err(ValidationError::new(
                "invalidation_channel",
                "must not be empty while l1 is enabled",
            ));
        }
        self.l1.validate().map_err(|e| e.within("l1"))
    }
}

/// `[redis.cache.l1]`: an in-process cache (moka) in front of Redis. Off by default: it
/// saves a round trip per hit, at the price of a window in which this instance can serve
/// a value another instance already deleted (at most `ttl`, when the invalidation message
/// is lost).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct L1Config {
    /// Whether the L1 is used. Default `false`.
    pub enabled: bool,
    /// Most entries it holds (least recently and frequently used ones go first). Default
    /// 10000.
    pub capacity: u64,
    /// How long an entry stays in it; "not found" entries stay at most `negative_ttl`.
    /// Default `5s`.
    #[serde(with = "duration")]
    pub ttl: Duration,
}

impl Default for L1Config {
    fn default() -> Self {
        Self {
            enabled: false,
            capacity: 10_000,
            ttl: Duration::from_secs(5),
        }
    }
}

impl Section for L1Config {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.enabled && self.capacity == 0 {
            return Err(ValidationError::new("capacity", "must be at least 1"));
        }
        if self.enabled && self.ttl.is_zero() {
            return Err(ValidationError::new("ttl", "must be above zero"));
        }
        if self.ttl > MAX_TTL {
            return Err(ValidationError::new("ttl", "must be at most 365d"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_urls_are_checked() {
        assert!(RedisConfig::default().validate().is_ok());
        let with = |url: &str| RedisConfig {
            url: Some(url.to_owned()),
            ..RedisConfig::default()
        };
        for ok in [
            "redis://127.0.0.1:6379/0",
            "rediss://cache.internal",
            "redis+unix:///run/redis.sock",
        ] {
            let result = with(ok).validate();
            if cfg!(feature = "redis") {
                assert!(result.is_ok(), "{ok}: {result:?}");
            } else {
                let err = result.unwrap_err();
                assert!(err.message.contains("`redis` feature"), "{err}");
            }
        }
        let err = with("memcached://h:11211").validate().unwrap_err();
        assert_eq!(err.field, "url");
        assert!(err.message.contains("`memcached:`"), "{err}");
    }

    #[test]
    fn the_documented_section_parses() {
        use figment::Figment;
        use figment::providers::{Format, Toml};
        let toml = r#"
            url = "redis://cache.internal:6379/0"
            connect_timeout = "1s"
            command_timeout = "250ms"
            required = true
            [breaker]
            strategy = "state_machine"
            [cache]
            ttl = "2m"
            negative_ttl = "0"
            jitter = 0.2
            invalidation_channel = "app:invalidate"
            [cache.l1]
            enabled = true
            capacity = 500
            ttl = "3s"
        "#;
        let config: RedisConfig = Figment::from(Toml::string(toml)).extract().unwrap();
        assert_eq!(config.command_timeout, Duration::from_millis(250));
        assert_eq!(config.cache.ttl, Duration::from_secs(120));
        assert_eq!((config.cache.l1.capacity, config.cache.jitter), (500, 0.2));
        let typo = Figment::from(Toml::string("[cache]\nttls = \"1s\"")).extract::<RedisConfig>();
        assert!(typo.is_err());
    }

    #[test]
    fn timeouts_cache_and_breaker_are_checked() {
        let config = RedisConfig {
            command_timeout: Duration::ZERO,
            ..RedisConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "command_timeout");
        let mut config = RedisConfig::default();
        config.cache.l1 = L1Config {
            enabled: true,
            capacity: 0,
            ..L1Config::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "cache.l1.capacity");
        let mut config = RedisConfig::default();
        config.cache.jitter = -0.1;
        assert_eq!(config.validate().unwrap_err().field, "cache.jitter");
        let mut config = RedisConfig::default();
        config.breaker.adaptive.k = 0.5;
        assert_eq!(config.validate().unwrap_err().field, "breaker.adaptive.k");
        let config: RedisConfig =
            serde_json::from_str(r#"{"cache": {"negative_ttl": "0", "l1": {"enabled": true}}}"#)
                .unwrap();
        assert!(config.validate().is_ok());
        assert!(config.cache.negative_ttl.is_zero() && config.cache.l1.enabled);
    }

    #[test]
    fn absurd_durations_are_config_errors_not_overflows() {
        let ages = Duration::from_secs(u64::MAX / 4);
        let config = RedisConfig {
            connect_timeout: ages,
            ..RedisConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "connect_timeout");
        for (field, set) in [
            (
                "cache.ttl",
                (|c: &mut CacheConfig, d| c.ttl = d) as fn(&mut CacheConfig, Duration),
            ),
            ("cache.negative_ttl", |c, d| c.negative_ttl = d),
            ("cache.timeout", |c, d| c.timeout = d),
            ("cache.l1.ttl", |c, d| c.l1.ttl = d),
        ] {
            let mut config = RedisConfig::default();
            set(&mut config.cache, ages);
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }
}
