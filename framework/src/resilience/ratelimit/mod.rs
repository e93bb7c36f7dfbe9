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

mod layer;
mod limiter;
mod rule;

pub use layer::{RateLimit, RateLimitLayer};
pub use limiter::{Limiter, RateLimits};
pub use rule::{KeySpec, RateLimitRule};
