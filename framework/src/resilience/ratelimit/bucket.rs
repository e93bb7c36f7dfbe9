//! One rate limit kept in Redis: its key, the script that decides, and the local fallback.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use http::Request;
use metrics::Counter;

use super::limiter::{Limiter, RequestKey};
use super::rule::RateLimitRule;
use crate::redis::{Redis, RedisError};
use crate::section::{Section, ValidationError};

/// The `operation` label of the script's calls in `truss_client_*`.
const OPERATION: &str = "ratelimit";

/// GCRA, the token bucket the local limiter runs too, kept in one key: the bucket's
/// "theoretical arrival time" in microseconds of Redis's own clock (`TIME`), so the
/// instances' clocks never matter. `KEYS[1]` is the bucket; `ARGV` are the tokens per
/// second, the burst and the cost of this request. Returns `{1, 0}` when admitted,
/// `{0, retry_after_ms}` when not. The key expires when its bucket would be full again.
const GCRA: &str = r"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = 1000000 / rate
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - interval * burst
if now < allow_at then
  return {0, math.ceil((allow_at - now) / 1000)}
end
local ttl = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
return {1, 0}
";

static SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| ::redis::Script::new(GCRA));

/// `truss_ratelimit_decisions_total{rule, backend, decision}` for one rule.
struct BackendCounters {
    redis: [Counter; 2],
    fallback: [Counter; 2],
}

impl BackendCounters {
    fn new(rule: &str) -> Self {
        let counter = |backend: &'static str, decision: &'static str| {
            metrics::counter!(
                "truss_ratelimit_decisions_total",
                "rule" => rule.to_owned(),
                "backend" => backend,
                "decision" => decision
            )
        };
        Self {
            redis: [counter("redis", "rejected"), counter("redis", "admitted")],
            fallback: [
                counter("local_fallback", "rejected"),
                counter("local_fallback", "admitted"),
            ],
        }
    }
}

/// A rule with `backend = "redis"`: decided by [`GCRA`] in Redis within `redis_budget`,
/// else by a local limiter at this instance's share of the rate.
pub(crate) struct RedisRule {
    /// `global` or the route label: the `rule` metric label and part of the key.
    name: String,
    /// `truss:rl:<namespace>:<rule>:`, escaped.
    prefix: String,
    /// Rate, burst and cost of one sub-bucket, as the script reads them.
    args: [String; 3],
    shards: u32,
    budget: Duration,
    fallback: Limiter,
    redis: Redis,
    counters: OnceLock<BackendCounters>,
    /// Whether the last decision was the fallback's, to log changes once.
    degraded: AtomicBool,
}

impl std::fmt::Debug for RedisRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRule")
            .field("prefix", &self.prefix)
            .field("args", &self.args)
            .field("shards", &self.shards)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl RedisRule {
    /// The rule named `name` (`global` or a route label) of the listener `namespace`.
    pub(crate) fn new(
        name: &str,
        rule: &RateLimitRule,
        redis: &Redis,
        namespace: &str,
    ) -> Result<Self, ValidationError> {
        rule.validate()?;
        let fallback = Limiter::new(&rule.share(rule.instances))?;
        let shard = rule.share(rule.shards);
        let burst = shard.effective_burst();
        let mut prefix = String::from("truss:rl:");
        escape(&mut prefix, namespace.as_bytes(), b":|");
        prefix.push(':');
        escape(&mut prefix, name.as_bytes(), b":|");
        prefix.push(':');
        Ok(Self {
            name: name.to_owned(),
            prefix,
            args: [shard.rps.to_string(), burst.to_string(), "1".to_owned()],
            shards: rule.shards,
            budget: rule.redis_budget,
            fallback,
            redis: redis.clone(),
            counters: OnceLock::new(),
            degraded: AtomicBool::new(false),
        })
    }

    /// What `req` is counted under (taken before the request moves on).
    pub(crate) fn key_of<B>(&self, req: &Request<B>) -> RequestKey {
        self.fallback.key_of(req)
    }

    /// The Redis key of `key`'s bucket (one of its sub-buckets, picked at random, when
    /// sharded: a rule-wide turn would let callers that alternate always meet the same
    /// sub-bucket).
    fn redis_key(&self, key: &RequestKey) -> String {
        let mut out = self.prefix.clone();
        match key {
            RequestKey::Ip(ip) => {
                let _ = write!(out, "{ip}");
            }
            RequestKey::Value(value) => escape(&mut out, value.as_bytes(), b"|"),
            RequestKey::Missing => {}
        }
        if self.shards > 1 {
            let shard = crate::random::below(self.shards);
            let _ = write!(out, "|{shard}");
        }
        out
    }

    /// Takes a token for `key` in Redis, or from this instance's share when Redis does not
    /// answer within the budget; `Err` says how long until one is available.
    pub(crate) async fn decide(&self, key: RequestKey) -> Result<(), Duration> {
        let redis_key = [self.redis_key(&key)];
        let reply = self
            .redis
            .eval::<(i64, i64)>(
                OPERATION,
                &SCRIPT,
                &redis_key,
                &self.args,
                Some(self.budget),
            )
            .await;
        let counters = self
            .counters
            .get_or_init(|| BackendCounters::new(&self.name));
        match reply {
            Ok((admitted, wait_ms)) => {
                self.on_redis();
                let admitted = admitted == 1;
                counters.redis[usize::from(admitted)].increment(1);
                if admitted {
                    Ok(())
                } else {
                    let wait_ms = u64::try_from(wait_ms).unwrap_or(0).max(1);
                    Err(Duration::from_millis(wait_ms))
                }
            }
            Err(error) => {
                self.on_fallback(&error);
                let decision = self.fallback.check_key(&key);
                counters.fallback[usize::from(decision.is_ok())].increment(1);
                decision
            }
        }
    }

    fn on_redis(&self) {
        if self.degraded.load(Ordering::Relaxed) && self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(rule = %self.name, "rate limit decided in Redis again");
        }
    }

    fn on_fallback(&self, error: &RedisError) {
        if !self.degraded.load(Ordering::Relaxed) && !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                rule = %self.name,
                %error,
                "rate limit falls back to this instance's share: Redis did not answer in time"
            );
        }
    }
}

/// Appends `bytes`, percent-encoding `%`, `{`, `}`, the bytes in `also` and every byte that
/// is not visible ASCII. Keys then never hold a Redis Cluster hash tag (`{…}`, as in the
/// route `/users/{id}`) that would put every bucket of a rule on one node.
fn escape(out: &mut String, bytes: &[u8], also: &[u8]) {
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && !b"%{}".contains(&b) && !also.contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::RedisConfig;
    use crate::resilience::KeySpec;
    use http::HeaderValue;

    async fn rule(name: &str, rule: &RateLimitRule) -> RedisRule {
        let config = RedisConfig {
            url: Some("redis://127.0.0.1:1/0".to_owned()),
            ..RedisConfig::default()
        };
        let redis = Redis::connect(&config).await.unwrap();
        RedisRule::new(name, rule, &redis, "orders/http").unwrap()
    }

    #[tokio::test]
    async fn keys_carry_the_rule_and_the_key_without_hash_tags() {
        let ip = RateLimitRule {
            key: KeySpec::ClientIp,
            ..RateLimitRule::default()
        };
        let r = rule("/users/{id}", &ip).await;
        let key = RequestKey::Ip("2001:db8::1".parse().unwrap());
        assert_eq!(
            r.redis_key(&key),
            "truss:rl:orders/http:/users/%7Bid%7D:2001:db8::1"
        );
        let value = RequestKey::Value(HeaderValue::from_bytes(b"k{1}|%\xff").unwrap());
        assert_eq!(
            r.redis_key(&value),
            "truss:rl:orders/http:/users/%7Bid%7D:k%7B1%7D%7C%25%FF"
        );
        let r = rule("global", &RateLimitRule::default()).await;
        assert_eq!(
            r.redis_key(&RequestKey::Missing),
            "truss:rl:orders/http:global:"
        );
    }

    #[tokio::test]
    async fn shards_split_the_rate_and_are_all_used() {
        let hot = RateLimitRule {
            rps: 1000.0,
            burst: Some(100),
            shards: 4,
            ..RateLimitRule::default()
        };
        let r = rule("global", &hot).await;
        assert_eq!(r.args, ["250".to_owned(), "25".to_owned(), "1".to_owned()]);
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..4000 {
            *seen.entry(r.redis_key(&RequestKey::Missing)).or_insert(0) += 1;
        }
        let keys: Vec<&String> = seen.keys().collect();
        assert_eq!(
            keys,
            (0..4)
                .map(|i| format!("truss:rl:orders/http:global:|{i}"))
                .collect::<Vec<_>>()
                .iter()
                .collect::<Vec<_>>()
        );
        // Each sub-bucket gets its share: 1000 expected, far from the 4000 of a stuck pick.
        assert!(seen.values().all(|&n| (700..1300).contains(&n)), "{seen:?}");
    }
}
