//! Protection as tower layers: admission (in-flight limit, rate limits, adaptive load
//! shedding), circuit breakers ([`breaker`]), deadlines ([`deadline`]) and budgeted client
//! retries ([`retry`]).
//!
//! Each layer works on `http::Request<B>` → `http::Response<axum::body::Body>` services, so it
//! wraps axum routes and tonic services (served through axum) alike. Rejections are cheap and
//! speak the caller's protocol: a gRPC request (content-type `application/grpc…`) gets a
//! trailers-only gRPC status, anything else a plain HTTP status.
//!
//! The app applies them outermost first in this order (in-flight limit, rate limits,
//! shedding): shedding sits innermost so that its window measures handler work, not cheap
//! rejections. Each is an [`AdmitLayer`] over a [`Policy`]; the server breaker is one too.
//!
//! | layer | HTTP | gRPC | when |
//! | --- | --- | --- | --- |
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

pub mod admit;
pub mod breaker;
pub(crate) mod clock;
mod config;
mod counters;
pub mod deadline;
pub mod inflight;
pub mod ratelimit;
pub mod retry;
pub mod shed;

pub use admit::{Admit, AdmitLayer, Policy, Rejection};
pub use clock::TokioClock;
pub use config::AdmissionConfig;
pub use inflight::{InFlight, InFlightLimit, InFlightLimitLayer};
pub use ratelimit::{KeySpec, RateLimit, RateLimitLayer, RateLimitRule, RateLimits};
pub use shed::{CpuSource, Shed, ShedConfig, ShedLayer, Shedder};

use std::sync::Arc;

use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower::util::Either;

use crate::section::ValidationError;

/// The admission layers `[admission]` asks for, as one layer: in-flight limit (outermost),
/// rate limits, load shedding (innermost). Absent parts pass requests straight through.
pub type AdmissionLayer = ServiceBuilder<
    Stack<
        Either<ShedLayer, Identity>,
        Stack<
            Either<RateLimitLayer, Identity>,
            Stack<Either<InFlightLimitLayer, Identity>, Identity>,
        >,
    >,
>;

/// Builds the [`AdmissionLayer`] for one listener. Shedding reads `cpu` (when
/// `config.shed.enabled`; `None` disables shedding). Apply it with a single
/// `Router::layer` call: axum boxes every layer it applies, so one stacked layer costs one
/// box per request instead of three.
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
    let shed = cpu
        .filter(|_| config.shed.enabled)
        .map(|cpu| ShedLayer::new(Shedder::new(&config.shed, cpu)));
    Ok(ServiceBuilder::new()
        .option_layer(
            (config.max_in_flight > 0).then(|| InFlightLimitLayer::new(config.max_in_flight)),
        )
        .option_layer((!limits.is_empty()).then(|| RateLimitLayer::new(limits)))
        .option_layer(shed))
}
