//! The server stack: the one documented ordering of the framework's layers.

use std::sync::Arc;

use axum::Router;

use super::AppError;
use crate::config::{Config, ConfigError, NoAppConfig, ValidationError};
use crate::observe::metrics::MetricsLayer;
use crate::observe::trace::TraceLayer;
use crate::resilience::breaker::{BreakerLayer, Breakers, DefaultClassifier};
use crate::resilience::deadline::DeadlineLayer;
use crate::resilience::{CpuSource, admission_layer};
use crate::wire::Transport;

/// Wraps a listener's router in the server stack the config asks for, as the app does for
/// its HTTP and gRPC listeners, outermost first: trace context, request metrics, in-flight
/// limit, rate limits, load shedding, circuit breaker (per route), deadline. `transport` is
/// the metrics label; `cpu` replaces the CPU sampler of load shedding.
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
    let invalid = |section: &str, e: ValidationError| {
        let e = e.within(section);
        AppError::Config(ConfigError::one(
            e.field,
            "the configuration given to the app builder",
            e.message,
        ))
    };
    let admission =
        admission_layer(&config.admission, cpu.cloned()).map_err(|e| invalid("admission", e))?;
    let breaker = if config.breaker.enabled {
        let breakers = Breakers::new(config.breaker.clone(), Arc::new(DefaultClassifier))
            .map_err(|e| invalid("breaker", e))?;
        Some(BreakerLayer::new(breakers))
    } else {
        None
    };
    let stack = tower::ServiceBuilder::new()
        .layer(TraceLayer::new(config.log.access).sample_ratio(config.trace.sample_ratio))
        .layer(MetricsLayer::new(transport))
        .layer(admission)
        .option_layer(breaker)
        .layer(DeadlineLayer::new(config.timeout.clone()));
    // `with_state(())` turns every handler into a finished service now; a `Router<()>` that
    // skips it rebuilds each handler with its layers on every request (found profiling the
    // load harness: a clone, the stack's layer calls and a drop per request).
    Ok(router.layer(stack).with_state(()))
}
