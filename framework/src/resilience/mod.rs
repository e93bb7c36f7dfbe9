//! Server-side protection as tower layers: concurrency limit, adaptive load shedding and rate
//! limiting.
//!
//! Each layer works on `http::Request<B>` → `http::Response<axum::body::Body>` services, so it
//! wraps axum routes and tonic services (served through axum) alike. Rejections are cheap and
//! speak the caller's protocol: a gRPC request (content-type `application/grpc…`) gets a
//! trailers-only gRPC status, anything else a plain HTTP status.
//!
//! | layer | HTTP | gRPC | when |
//! | --- | --- | --- | --- |
//! The app applies them outermost first in this order (in-flight limit, rate limits,
//! shedding): shedding sits innermost so that its window measures handler work, not cheap
//! rejections.
//!
//! | [`InFlightLimitLayer`] | 503 | `UNAVAILABLE` | more than `max_in_flight` requests in flight |
//! | [`ShedLayer`] | 503 | `UNAVAILABLE` | CPU over threshold (or a drop < `cool_off` ago) and in-flight above estimated capacity |
//! | [`RateLimitLayer`] | 429 + `Retry-After` | `RESOURCE_EXHAUSTED` | token bucket (GCRA) empty, globally, per route or per key |
//!
//! Shedding and the concurrency limit answer `UNAVAILABLE` rather than `RESOURCE_EXHAUSTED`:
//! the request was not processed and another instance may well serve it, which is what
//! `UNAVAILABLE` tells a retrying client. Rate limiting is about the caller's quota, so it
//! answers `RESOURCE_EXHAUSTED`.
//!
//! Every decision increments `truss_admission_total{layer, route, decision}` through the
//! `metrics` facade (`decision` is `admitted` or `rejected`).

mod clock;
mod config;
mod future;
pub mod inflight;
pub mod ratelimit;
mod reject;
mod route;
pub mod shed;

pub use clock::TokioClock;
pub use config::AdmissionConfig;
pub use future::{AdmissionFuture, Completion};
pub use inflight::{InFlightLimit, InFlightLimitLayer};
pub use ratelimit::{KeySpec, RateLimit, RateLimitLayer, RateLimitRule, RateLimits};
pub use route::route_label;
pub use shed::{CpuSource, Shed, ShedConfig, ShedLayer, Shedder};

/// Counts one admission decision.
#[inline]
pub(crate) fn record(layer: &'static str, route: &str, admitted: bool) {
    let decision = if admitted { "admitted" } else { "rejected" };
    metrics::counter!(
        "truss_admission_total",
        "layer" => layer,
        "route" => route.to_owned(),
        "decision" => decision
    )
    .increment(1);
}
