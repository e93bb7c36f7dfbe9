//! Redis (feature `redis`): a governed client and a cache-aside cache on top of it.
//!
//! [`Redis`] wraps redis-rs's `ConnectionManager`. Every command sent through it gets what
//! every truss client gets:
//!
//! * **the request's deadline** ([`Deadline::current`](crate::resilience::deadline::Deadline::current)),
//!   `command_timeout` and, for [`Redis::query_within`] and [`Redis::eval`], the call's own
//!   budget: the earliest bounds the call; past it the call fails with
//!   [`RedisError::DeadlineExceeded`] (504).
//! * **a breaker** (`[redis.breaker]`, named `redis`): timeouts and connection failures count
//!   against it; error replies (`WRONGTYPE …`) do not, and neither do its own rejections.
//!   While it rejects, calls fail at once with [`RedisError::Unavailable`] (503).
//! * **metrics**: `truss_client_requests_total{transport="redis",target="redis",operation,code}`
//!   (`code` is `ok` or [`RedisError::kind`]) and `truss_client_request_duration_seconds`.
//! * **a `redis` span** with `db.system = "redis"` and `db.operation`.
//!
//! A server that is down at start or goes away later is not fatal: calls fail fast, the
//! client reconnects in the background, and calls succeed again once the server answers.
//!
//! [`Cache`] is cache-aside on that client: singleflight loads, negative caching, TTL
//! jitter, an optional in-process L1 kept coherent across instances by pub/sub, and a Redis
//! outage that only bypasses the cache.
//!
//! ```no_run
//! use axum::{Router, extract::{Path, State}, routing::get};
//! use truss::redis::{Cache, Redis};
//! use truss::{App, AppError, Config};
//!
//! async fn name(State(names): State<Cache<u64, String>>, Path(id): Path<u64>) -> Result<String, truss::Error> {
//!     let name = names
//!         .get_or_load(&id, || async move { Ok::<_, truss::Error>(Some(format!("user {id}"))) })
//!         .await?;
//!     name.ok_or_else(|| truss::Error::not_found("USER_NOT_FOUND", "no such user"))
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config: Config = Config::load()?;
//! let redis = Redis::connect(&config.redis).await?;   // never fails on a down server
//! let app = App::builder("user").config(&config);
//! redis.readiness(&app.health());                      // when [redis] required = true
//! let names = Cache::new(redis, "name", &config.redis.cache);
//! app.http(Router::new().route("/users/{id}/name", get(name)).with_state(names))
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! redis-rs's own API stays usable: commands are built with [`cmd`] and [`pipe`], replies
//! convert through [`FromRedisValue`], and [`Redis::manager`] is the raw connection.

// Without the feature, only the config is here: the links above have nothing to point to.
#![cfg_attr(not(feature = "redis"), allow(rustdoc::broken_intra_doc_links))]

mod config;

pub use config::{CacheConfig, L1Config, RedisConfig};

#[cfg(feature = "redis")]
mod cache;
#[cfg(feature = "redis")]
mod client;
#[cfg(feature = "redis")]
mod error;
#[cfg(feature = "redis")]
mod readiness;

/// redis-rs's command builders, script type and reply conversion, as truss is built with
/// them: `truss::redis::cmd("GET")` needs no dependency of your own. The whole crate is
/// [`truss::deps::redis`](crate::deps::redis).
#[cfg(feature = "redis")]
pub use ::redis::{Cmd, FromRedisValue, Pipeline, Script, ToRedisArgs, Value, cmd, pipe};
#[cfg(feature = "redis")]
pub use cache::{Cache, Codec, Json, Prost};
#[cfg(feature = "redis")]
pub use client::Redis;
#[cfg(feature = "redis")]
pub use error::RedisError;
#[cfg(feature = "redis")]
pub use readiness::CHECK;
