//! Rate limiting on [`governor`]'s GCRA token bucket: a global limit, per-route limits and
//! per-key limits (client IP, or a header / gRPC metadata value such as an API key).
//!
//! ```
//! use std::collections::BTreeMap;
//! use truss::resilience::{KeySpec, RateLimitLayer, RateLimitRule, RateLimits};
//!
//! let mut routes = BTreeMap::new();
//! routes.insert(
//!     "/login".to_owned(),
//!     RateLimitRule { rps: 1.0, burst: Some(5), key: KeySpec::ClientIp, ..Default::default() },
//! );
//! let global = RateLimitRule { rps: 1000.0, ..Default::default() };
//! let limits = RateLimits::new(Some(&global), &routes).unwrap();
//! let layer = RateLimitLayer::new(limits);
//! let app: axum::Router = axum::Router::new()
//!     .route("/login", axum::routing::post(|| async { "ok" }))
//!     .layer(layer);
//! # let _ = app;
//! ```
//!
//! Rejections are HTTP 429 with `Retry-After` (whole seconds) or gRPC `RESOURCE_EXHAUSTED`.
//! Keyed limiters forget keys that have been idle long enough to have a full bucket again,
//! every `evict_interval`, so their memory stays bounded by the keys active in that interval.
//!
//! # Shared limits in Redis
//!
//! A local limit is enforced by each instance on its own: four instances with `rps = 100`
//! admit up to 400 requests per second together. A rule with `backend = "redis"` (feature
//! `redis`) keeps its buckets in Redis instead, so all the instances of a service share one
//! budget:
//!
//! ```toml
//! [redis]
//! url = "redis://redis.internal:6379"
//!
//! [admission.routes."/orders"]
//! rps = 200            # for all instances together (HTTP and gRPC count apart)
//! burst = 50
//! key = "header:x-api-key"
//! backend = "redis"
//! redis_budget = "5ms" # default
//! instances = 4        # what each instance allows alone while Redis is away: 200 / 4
//! ```
//!
//! The app connects to `[redis]` and builds a [`RedisRateLimitLayer`] in place of the
//! [`RateLimitLayer`]; rules that stay `local` are still decided in the process. A redis rule
//! without the `redis` feature or without `[redis] url` is a configuration error naming the
//! rule.
//!
//! * **One round trip per decision.** A Lua script (run with `EVALSHA`) takes a token
//!   atomically with the same algorithm as the local limiter (GCRA), on Redis's clock, and
//!   answers the wait before the next token. The key is
//!   `truss:rl:<service>/<transport>:<rule>:<key>`, `<rule>` being `global` or the route
//!   label and `<key>` the client IP or header value (empty for `key = "global"`); it
//!   expires once its bucket is full again, so idle keys cost nothing. The answer is the
//!   same 429 `RATE_LIMITED`.
//! * **Never a 5xx because Redis is away.** When Redis does not answer within
//!   `redis_budget` (down, slow, or the client's breaker open), the same decision is made
//!   at once by a local limiter holding this instance's share: `rps / instances` and
//!   `burst / instances` (rounded up). `instances` is configured, not discovered: set it
//!   to the number of instances you run (with autoscaling, the usual count; the total is
//!   off by the ratio while Redis is away). A warning is logged when a rule falls back,
//!   and a line when it is back.
//! * **Back to Redis as soon as it answers.** The app gives the limits a Redis connection
//!   of their own (built from `[redis]`, apart from the clients the service connects
//!   itself), which reconnects in the background and has **no breaker**: the budget is
//!   its protection (a hung Redis costs each decision at most `redis_budget`; a refused
//!   connection costs nothing), and a breaker would keep part of the decisions on the
//!   fallback until its window forgets the outage (10 s with the default adaptive
//!   breaker). Measured on a restarted redis-server: decisions are back on Redis within
//!   about 50 ms of it answering.
//! * **Metrics** say which backend decided:
//!   `truss_ratelimit_decisions_total{rule, backend="redis"|"local_fallback", decision}`,
//!   next to the usual `truss_admission_total{layer="ratelimit"}`; the script's calls are
//!   in `truss_client_requests_total{transport="redis",operation="ratelimit"}`.
//!
//! ## Hot spots: sharding the limiter
//!
//! Each decision touches exactly one key, so the limiter scales out with Redis itself:
//!
//! * **Across nodes, by key**: the truss client talks to the one server its `url` names,
//!   so point it at a proxy that routes each key to the node owning it (Envoy's Redis
//!   proxy, twemproxy, a Redis Cluster proxy). The keys of different rules and different
//!   key values then land on different nodes. The script touches only `KEYS[1]`, so
//!   `EVALSHA` routes by its key; but on a node that does not know the script yet, the
//!   client loads it with `SCRIPT LOAD`, which has no key: check that the proxy sends it to
//!   every node, or load the script on each node when deploying. truss escapes `{`, `}` in
//!   route labels and key values, so no accidental hash tag (the `{id}` of `/users/{id}`)
//!   pins a whole rule to one Redis Cluster slot.
//! * **Several independent Redis servers**: give each service (or group of services) its
//!   own `[redis] url`; a rule's buckets live where its service points.
//! * **One very hot key** (a `global` rule at many thousands of requests per second, one
//!   tenant's API key): `shards = N` splits its bucket into N keys (suffix `|0`…`|N-1`),
//!   each with `rps / N` and `burst / N` (rounded up); each decision picks one at random.
//!   Behind a cluster proxy the sub-buckets spread over N slots, hence nodes; the limit
//!   stays exact on average, a burst is at most the rounded-up sum, and a request can be
//!   refused by an empty sub-bucket while another still holds tokens.

// Without the feature, the Redis types linked above do not exist.
#![cfg_attr(not(feature = "redis"), allow(rustdoc::broken_intra_doc_links))]

mod layer;
mod limiter;
mod rule;

#[cfg(feature = "redis")]
mod bucket;
#[cfg(feature = "redis")]
mod distributed;

#[cfg(feature = "redis")]
pub use distributed::{RedisRateLimit, RedisRateLimitFuture, RedisRateLimitLayer, RedisRateLimits};
pub use layer::{RateLimit, RateLimitLayer};
pub use limiter::{Limiter, RateLimits};
pub use rule::{Backend, KeySpec, RateLimitRule};
