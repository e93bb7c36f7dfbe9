//! Observability: health and readiness, logging.

pub mod health;
pub mod log;
pub mod metrics;
pub mod otel;
pub mod trace;
