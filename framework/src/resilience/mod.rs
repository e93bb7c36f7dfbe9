//! Protection as tower layers: admission (in-flight limit, rate limits, adaptive load
//! shedding), circuit breakers ([`breaker`]), deadlines ([`deadline`]) and budgeted client
//! retries ([`retry`]).
//!
//! Each layer works on `http::Request<B>` → `http::Response<axum::body::Body>` services, so it
//! wraps axum routes and tonic services (served through axum) alike. Rejections are cheap and
//! speak the caller's protocol: a gRPC request (content-type `application/grpc…`) gets a
//! trailers-only gRPC status, anything else a plain HTTP status.
//!
//! The app decides them first to last in this order (in-flight limit, rate limits,
//! shedding), then the server breaker: shedding comes last of the three so that its window
//! measures handler work, not cheap rejections. Each is a [`Policy`], usable alone as an
//! [`AdmitLayer`]; [`admission_layer`] decides the three in one layer (a [`Chain`]), and
//! the app chains the server breaker after them.
//!
//! | layer | HTTP | gRPC | when |
//! | --- | --- | --- | --- |
//! | [`InFlightLimitLayer`] | 503 | `UNAVAILABLE` | more than `max_in_flight` requests in flight |
//! | [`ShedLayer`] | 503 | `UNAVAILABLE` | CPU over threshold (or a drop < `cool_off` ago) and in-flight above estimated capacity |
//! | [`RateLimitLayer`] | 429 + `Retry-After` | `RESOURCE_EXHAUSTED` | token bucket (GCRA) empty, globally, per route or per key |
//! | `RedisRateLimitLayer` (feature `redis`) | 429 + `Retry-After` | `RESOURCE_EXHAUSTED` | the same, with buckets shared in Redis (`backend = "redis"`); the local share decides while Redis is away |
//!
//! Shedding and the concurrency limit answer `UNAVAILABLE` rather than `RESOURCE_EXHAUSTED`:
//! the request was not processed and another instance may well serve it, which is what
//! `UNAVAILABLE` tells a retrying client. Rate limiting is about the caller's quota, so it
//! answers `RESOURCE_EXHAUSTED`.
//!
//! Every decision increments `truss_admission_total{layer, route, decision}` through the
//! `metrics` facade (`decision` is `admitted` or `rejected`). Rate limits kept in Redis
//! (`backend = "redis"`, feature `redis`) also count which backend decided in
//! `truss_ratelimit_decisions_total`; see [`ratelimit`](ratelimit#shared-limits-in-redis).

pub mod admit;
pub mod breaker;
mod chain;
pub(crate) mod clock;
mod config;
mod counters;
pub mod deadline;
pub mod inflight;
pub mod panic;
pub mod ratelimit;
pub mod retry;
pub mod shed;

pub use admit::{Admit, AdmitLayer, Policy, Rejection};
pub use chain::Chain;
pub use clock::TokioClock;
pub use config::AdmissionConfig;
pub use inflight::{InFlight, InFlightLimit, InFlightLimitLayer};
pub use panic::CatchPanicLayer;
pub use ratelimit::{Backend, KeySpec, RateLimit, RateLimitLayer, RateLimitRule, RateLimits};
#[cfg(feature = "redis")]
pub use ratelimit::{RedisRateLimit, RedisRateLimitLayer, RedisRateLimits};
pub use shed::{CpuSource, Shed, ShedConfig, ShedLayer, Shedder};

use std::sync::Arc;

#[cfg(feature = "redis")]
use tower::ServiceBuilder;
#[cfg(feature = "redis")]
use tower::layer::util::{Identity, Stack};
#[cfg(feature = "redis")]
use tower::util::Either;

use crate::section::ValidationError;

/// The admission policies `[admission]` asks for, decided in this order: in-flight limit,
/// rate limits, load shedding. Absent ones admit every request.
pub type Admission = Chain<InFlight, Chain<RateLimits, Shedder>>;

/// The layer of the [`Admission`] policies: one service and one response future per
/// request for all of them (see [`Chain`]).
pub type AdmissionLayer = AdmitLayer<Admission>;

/// [`redis_admission_layer`]'s layers: in-flight limit (outermost), the rate limits kept in
/// Redis, load shedding (innermost). Absent parts pass requests straight through.
#[cfg(feature = "redis")]
pub type RedisAdmissionLayer = ServiceBuilder<
    Stack<
        Either<ShedLayer, Identity>,
        Stack<RedisRateLimitLayer, Stack<Either<InFlightLimitLayer, Identity>, Identity>>,
    >,
>;

/// Builds the [`AdmissionLayer`] for one listener. Shedding reads `cpu` (when
/// `config.shed.enabled`; `None` disables shedding). Apply it in the same
/// `Router::layer` call as your other layers (a `ServiceBuilder`): axum boxes each layer it
/// applies, one box per request per call.
///
/// ```
/// use truss::resilience::{AdmissionConfig, admission_layer, shed::SystemCpu};
///
/// let config = AdmissionConfig::default();
/// let layer = admission_layer(&config, Some(SystemCpu::manual(0.0))).unwrap();
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "ok" }))
///     .layer(layer);
/// # let _ = app;
/// ```
pub fn admission_layer(
    config: &AdmissionConfig,
    cpu: Option<Arc<dyn CpuSource>>,
) -> Result<AdmissionLayer, ValidationError> {
    let limits = RateLimits::new(config.rate_limit.as_ref(), &config.routes)?;
    let rate_limit = (!limits.is_empty()).then(|| RateLimitLayer::new(limits));
    Ok(AdmitLayer::chain(
        in_flight(config),
        Some(AdmitLayer::chain(rate_limit, shed(config, cpu))),
    ))
}

/// [`admission_layer`] for a config with rules kept in Redis (`backend = "redis"`): their
/// decisions go through `redis`, with keys under `namespace` (the app's is
/// `<service>/<transport>`; see [`RedisRateLimits::new`]). The app calls it when a rule
/// asks for Redis; a config without such rules is better served by [`admission_layer`],
/// whose local limits do not pay for the asynchronous path.
///
/// Give it a client of its own without a breaker, as the app does: `redis_budget` bounds
/// each decision, and a breaker would hold decisions on the local fallback after Redis is
/// back (see [`ratelimit`](ratelimit#shared-limits-in-redis)).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use truss::redis::{Redis, RedisConfig};
/// use truss::resilience::{AdmissionConfig, Backend, RateLimitRule, redis_admission_layer};
///
/// let mut limiter = RedisConfig {
///     url: Some("redis://127.0.0.1:6379".into()),
///     ..RedisConfig::default()
/// };
/// limiter.breaker.enabled = false;
/// let redis = Redis::connect(&limiter).await?;
/// let mut config = AdmissionConfig::default();
/// config.rate_limit =
///     Some(RateLimitRule { rps: 500.0, backend: Backend::Redis, ..RateLimitRule::default() });
/// let layer = redis_admission_layer(&config, None, &redis, "orders/http")?;
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "ok" }))
///     .layer(layer);
/// # let _ = app; Ok(()) }
/// ```
#[cfg(feature = "redis")]
pub fn redis_admission_layer(
    config: &AdmissionConfig,
    cpu: Option<Arc<dyn CpuSource>>,
    redis: &crate::redis::Redis,
    namespace: &str,
) -> Result<RedisAdmissionLayer, ValidationError> {
    let limits =
        RedisRateLimits::new(config.rate_limit.as_ref(), &config.routes, redis, namespace)?;
    Ok(ServiceBuilder::new()
        .option_layer(in_flight(config))
        .layer(RedisRateLimitLayer::new(limits))
        .option_layer(shed(config, cpu)))
}

/// The in-flight limit `config` asks for (`max_in_flight = 0`: none).
fn in_flight(config: &AdmissionConfig) -> Option<InFlightLimitLayer> {
    (config.max_in_flight > 0).then(|| InFlightLimitLayer::new(config.max_in_flight))
}

/// Shedding on `cpu`, when `config.shed.enabled` and there is a CPU source.
fn shed(config: &AdmissionConfig, cpu: Option<Arc<dyn CpuSource>>) -> Option<ShedLayer> {
    cpu.filter(|_| config.shed.enabled)
        .map(|cpu| ShedLayer::new(Shedder::new(&config.shed, cpu)))
}
