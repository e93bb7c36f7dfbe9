//! Budgeted retries for client calls.
//!
//! Retried: connect failures (the request never left), gRPC `UNAVAILABLE` (configurable
//! codes), and for idempotent HTTP methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) the
//! statuses 502, 503 and 504 (configurable) and other transport errors. Each retry waits an
//! exponential backoff with jitter, needs a token from a retry budget (a share of recent
//! requests plus a small per-second floor, as Linkerd and Envoy do), and is only made when the
//! current [`Deadline`](crate::resilience::deadline::Deadline) leaves time for the backoff.
//! Request bodies up to `max_body` (64 KiB) are buffered so they can be sent again; a larger
//! body is sent once, never retried, and so is a body whose next frame is not ready yet (a
//! client or bidirectional gRPC stream its caller feeds as answers come: waiting for its end
//! would wait for ever).
//!
//! Never retried: a call a local layer refused before sending it (an open client breaker, no
//! instance known; its status carries `truss-not-sent`): it would be refused again.
//!
//! Metrics: `truss_retry_decisions_total{target, decision}` with `decision` one of `retried`,
//! `budget_exhausted`, `no_time_left`, `attempts_exhausted`, `not_retryable` (a failure it
//! may not retry: a POST's 503, a status not in `grpc_codes`, a refused call).
//!
//! ```no_run
//! use tower::ServiceBuilder;
//! use truss::resilience::retry::{RetryConfig, RetryLayer};
//!
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9090").connect_lazy();
//! let channel = ServiceBuilder::new()
//!     .layer(RetryLayer::new("user", &RetryConfig::default()).unwrap())
//!     .service(channel);
//! # let _ = channel;
//! ```

mod body;
mod config;
mod layer;

pub use body::{Replay, ReplayBody};
pub use config::RetryConfig;
pub use layer::{Retry, RetryLayer};
