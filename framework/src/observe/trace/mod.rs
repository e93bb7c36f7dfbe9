//! W3C trace context: every request gets a trace id, taken from the caller's `traceparent`
//! (HTTP header or gRPC metadata) or started fresh when it is absent or malformed (never a
//! rejection). The handler (and every inner layer) reads it with [`TraceContext::current`],
//! the response carries it as `x-trace-id`, every log line written while serving
//! the request carries `trace_id` and `span_id` (they are fields of the request's `tracing`
//! span), and [`InjectTraceLayer`] on a client sends it onward as `traceparent` (with
//! `tracestate` passed through), so one id follows a request across services.
//!
//! ```
//! use truss::observe::trace::{TraceContext, TraceLayer};
//!
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async {
//!         let id = TraceContext::current().map(|t| t.trace_id_hex()).unwrap_or_default();
//!         format!("trace {id}")
//!     }))
//!     .layer(TraceLayer::new(true));
//! # let _ = app;
//! ```

mod access;
mod context;
mod current;
mod layer;

pub use context::{SpanId, TraceContext, TraceId};
pub use current::TraceScope;
pub use layer::{InjectTrace, InjectTraceLayer, TraceLayer, TraceService};
