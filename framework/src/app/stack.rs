//! The server stack: the one documented ordering of the framework's layers.

use std::sync::Arc;

use axum::Router;

use super::AppError;
use crate::config::{Config, ConfigError, NoAppConfig, ValidationError};
use crate::observe::metrics::MetricsLayer;
use crate::observe::trace::TraceLayer;
use crate::resilience::breaker::{BreakerLayer, Breakers, DefaultClassifier};
use crate::resilience::deadline::DeadlineLayer;
use crate::resilience::{AdmitLayer, CatchPanicLayer, CpuSource, admission_layer};
use crate::wire::{GrpcRoutesLayer, Transport};

/// Wraps a listener's router in the server stack the config asks for, as the app does for
/// its HTTP and gRPC listeners, outermost first: trace context, request metrics,
/// authentication (feature `auth`, when `[auth]` has keys), in-flight limit, rate limits,
/// load shedding, circuit breaker (per route), deadline, and a handler's panic turned into
/// a `500` ([`CatchPanicLayer`]). `transport` is the metrics label; `cpu` replaces the CPU
/// sampler of load shedding.
///
/// One `Router::layer` call: axum boxes each layer it applies. Useful to measure the stack
/// or to serve a router with it outside an [`App`](super::App):
///
/// ```
/// use axum::{Router, routing::get};
/// use truss::config::{Config, NoAppConfig};
///
/// let router = Router::new().route("/", get(|| async { "ok" }));
/// let protected = truss::app::server_stack(router, truss::wire::Transport::Http, &Config::<NoAppConfig>::default(), None)
///     .unwrap();
/// # let _ = protected;
/// ```
pub fn server_stack(
    router: Router,
    transport: Transport,
    config: &Config<NoAppConfig>,
    cpu: Option<&Arc<dyn CpuSource>>,
) -> Result<Router, AppError> {
    #[cfg_attr(not(feature = "auth"), allow(clippy::needless_update))]
    let shared = StackShared {
        cpu: cpu.cloned(),
        ..StackShared::default()
    };
    build(router, transport, config, &shared)
}

/// What the listeners of one app share: the CPU sampler, the token verifier and the Redis
/// client of the rate limits kept there.
#[derive(Default, Clone)]
pub(crate) struct StackShared {
    pub(crate) cpu: Option<Arc<dyn CpuSource>>,
    #[cfg(feature = "auth")]
    pub(crate) verifier: Option<Arc<crate::auth::Verifier>>,
    /// The Redis client of the rate limits with `backend = "redis"` (only when one has).
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::redis::Redis>,
    /// The service's name: Redis rate-limit keys are scoped by it.
    #[cfg(feature = "redis")]
    pub(crate) service: Arc<str>,
}

impl StackShared {
    /// The sampler, the verifier with its JWKS fetched once (when auth is on) and the Redis
    /// client of the rate limits (when a rule keeps its buckets in Redis).
    pub(crate) async fn start(
        config: &Config<NoAppConfig>,
        cpu: Option<Arc<dyn CpuSource>>,
        service: &str,
    ) -> Result<Self, AppError> {
        #[cfg(not(any(feature = "auth", feature = "redis")))]
        let _ = config;
        #[cfg(not(feature = "redis"))]
        let _ = service;
        #[cfg_attr(
            not(any(feature = "auth", feature = "redis")),
            allow(unused_mut, clippy::needless_update)
        )]
        let mut shared = Self {
            cpu,
            ..Self::default()
        };
        #[cfg(feature = "auth")]
        if config.auth.is_on() {
            let v = crate::auth::Verifier::new(&config.auth).map_err(|e| invalid("auth", e))?;
            let v = Arc::new(v);
            v.start().await;
            shared.verifier = Some(v);
        }
        #[cfg(feature = "redis")]
        {
            shared.redis = redis_for_rate_limits(config).await?;
            shared.service = service.into();
        }
        Ok(shared)
    }
}

impl StackShared {
    /// The parts for a reloaded config: a new token verifier when `[auth]` changed, a Redis
    /// client when a rate limit newly keeps its buckets there; the rest shared.
    pub(crate) async fn renew(
        &self,
        config: &Config<NoAppConfig>,
        auth_changed: bool,
    ) -> Result<Self, AppError> {
        #[cfg_attr(not(any(feature = "auth", feature = "redis")), allow(unused_mut))]
        let mut shared = self.clone();
        #[cfg(feature = "auth")]
        if auth_changed {
            let previous = shared.verifier.take();
            if config.auth.is_on() {
                let v = crate::auth::Verifier::new(&config.auth).map_err(|e| invalid("auth", e))?;
                // Any `[auth]` change builds a new verifier: it keeps the JWKS keys in force
                // (same URL), so a failed first fetch does not refuse every token of them.
                if let Some(previous) = &previous {
                    v.keep_jwks_keys_of(previous);
                }
                let v = Arc::new(v);
                v.start().await;
                shared.verifier = Some(v);
            }
        }
        #[cfg(not(feature = "auth"))]
        let _ = auth_changed;
        #[cfg(feature = "redis")]
        if shared.redis.is_none() {
            shared.redis = redis_for_rate_limits(config).await?;
        }
        #[cfg(not(feature = "redis"))]
        let _ = config;
        Ok(shared)
    }
}

/// The Redis client for the rate limits with `backend = "redis"`, if any rule has it; such
/// a rule without `[redis] url` is a config error naming it. Connecting never waits for
/// the server: while it is down, those limits decide locally.
#[cfg(feature = "redis")]
async fn redis_for_rate_limits(
    config: &Config<NoAppConfig>,
) -> Result<Option<crate::redis::Redis>, AppError> {
    let Some((rule, _)) = config.admission.redis_rules().next() else {
        return Ok(None);
    };
    if !config.redis.is_configured() {
        let e = ValidationError::new(
            format!("{rule}.backend"),
            "\"redis\" needs a Redis server: set `[redis] url`",
        );
        return Err(invalid("admission", e));
    }
    // Its own connection, without a breaker: see "Shared limits in Redis" in the ratelimit
    // docs.
    let mut limiter = config.redis.clone();
    limiter.breaker.enabled = false;
    crate::redis::Redis::connect(&limiter)
        .await
        .map(Some)
        .map_err(|e| invalid("redis", ValidationError::new("url", e.to_string())))
}

fn invalid(section: &str, e: ValidationError) -> AppError {
    let e = e.within(section);
    AppError::Config(ConfigError::one(
        e.field,
        "the configuration given to the app builder",
        e.message,
    ))
}

#[cfg(feature = "auth")]
fn auth_layer(
    config: &Config<NoAppConfig>,
    shared: &StackShared,
) -> Result<Option<crate::auth::AuthLayer>, AppError> {
    if !config.auth.is_on() {
        return Ok(None);
    }
    let verifier = match &shared.verifier {
        Some(v) => v.clone(),
        None => Arc::new(crate::auth::Verifier::new(&config.auth).map_err(|e| invalid("auth", e))?),
    };
    Ok(Some(crate::auth::AuthLayer::new(&config.auth, verifier)))
}

#[cfg(not(feature = "auth"))]
fn auth_layer(
    _: &Config<NoAppConfig>,
    _: &StackShared,
) -> Result<Option<tower::layer::util::Identity>, AppError> {
    Ok(None)
}

/// [`server_stack`] with the app's shared parts.
pub(crate) fn build(
    router: Router,
    transport: Transport,
    config: &Config<NoAppConfig>,
    shared: &StackShared,
) -> Result<Router, AppError> {
    let cpu = shared.cpu.clone();
    let breaker = if config.breaker.enabled {
        let breakers = Breakers::new(config.breaker.clone(), Arc::new(DefaultClassifier))
            .map_err(|e| invalid("breaker", e))?;
        Some(BreakerLayer::new(breakers))
    } else {
        None
    };
    let auth = auth_layer(config, shared)?;
    // One stack, two admission layers of different types: a macro rather than a boxed layer,
    // so the local one costs what it did before the Redis one existed.
    macro_rules! protect {
        ($admission:expr) => {{
            let stack = tower::ServiceBuilder::new()
                .layer(GrpcRoutesLayer::when(transport == Transport::Grpc))
                .layer(TraceLayer::new(config.log.access).sample_ratio(config.trace.sample_ratio))
                .layer(MetricsLayer::new(transport))
                .option_layer(auth)
                .layer($admission)
                .layer(DeadlineLayer::new(config.timeout.clone()))
                .layer(CatchPanicLayer);
            // `with_state(())` turns every handler into a finished service now; a `Router<()>`
            // that skips it rebuilds each handler with its layers on every request (found
            // profiling the load harness: a clone, the stack's layer calls and a drop per
            // request).
            Ok(router.layer(stack).with_state(()))
        }};
    }
    #[cfg(feature = "redis")]
    if let Some(redis) = &shared.redis {
        let namespace = format!("{}/{}", shared.service, transport.as_str());
        let admission =
            crate::resilience::redis_admission_layer(&config.admission, cpu, redis, &namespace)
                .map_err(|e| invalid("admission", e))?;
        return protect!(
            tower::ServiceBuilder::new()
                .layer(admission)
                .option_layer(breaker)
        );
    }
    // The admission policies and the breaker decide in one layer (see `Chain`).
    let admission = admission_layer(&config.admission, cpu).map_err(|e| invalid("admission", e))?;
    protect!(AdmitLayer::chain(Some(admission), breaker))
}
