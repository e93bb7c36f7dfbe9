//! Observability, one module per signal:
//!
//! * [`health`]: liveness and readiness ([`Health`](health::Health)), served on the admin
//!   listener as `/healthz` and `/readyz`.
//! * [`log`]: the `tracing` subscriber the app installs from `[log]`, and the access log.
//! * [`metrics`]: the Prometheus recorder, server metrics ([`MetricsLayer`](metrics::MetricsLayer))
//!   and client metrics ([`ClientMetricsLayer`](metrics::ClientMetricsLayer)).
//! * [`otel`]: `[trace]` ([`TraceConfig`](otel::TraceConfig)) and OTLP export (feature `otlp`).
//! * [`trace`]: W3C trace context: extraction on the server ([`TraceLayer`](trace::TraceLayer)),
//!   injection on the client ([`InjectTraceLayer`](trace::InjectTraceLayer)).

pub mod health;
pub mod log;
pub mod metrics;
pub mod otel;
#[cfg(feature = "profiling")]
#[cfg_attr(docsrs, doc(cfg(feature = "profiling")))]
pub mod profile;
pub mod trace;
