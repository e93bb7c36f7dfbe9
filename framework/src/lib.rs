//! # truss
//!
//! A Rust service framework in the spirit of go-zero and Kratos. A team writes its axum
//! routes and tonic services; one builder wires the rest around them: typed config loading,
//! an HTTP listener (HTTP/1.1 and h2c), a gRPC listener, an admin listener with `/healthz`
//! and `/readyz`, lifecycle hooks, service registration, and a graceful, bounded shutdown.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use truss::{App, AppError};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), AppError> {
//!     App::builder("ping")
//!         .http(Router::new().route("/ping", get(|| async { "pong" })))
//!         .run() // loads config from --config / TRUSS_*, serves until SIGTERM
//!         .await
//! }
//! ```
//!
//! * [`App`] / [`AppBuilder`]: the builder and run loop; [`RunningApp`] for tests;
//!   [`app::server_stack`], the framework's layers in their one order.
//! * [`config`]: defaults < file < environment, strict and typed, errors naming key and source;
//!   every section implements [`config::Section`].
//! * [`resilience`]: admission ([`resilience::Admit`] over a [`resilience::Policy`]: in-flight,
//!   rate limits, shedding), circuit breakers, deadlines, budgeted retries.
//! * [`observe`]: health and readiness, logs and the access log, Prometheus metrics, W3C
//!   trace context, OTLP export (feature `otlp`).
//! * [`client`]: HTTP and gRPC clients by service name, with the client layer stack.
//! * [`registry`]: registration and discovery (etcd with feature `etcd`, or static).
//! * [`redis`](mod@redis): `[redis]` and, with feature `redis`, a governed Redis client and a
//!   cache-aside `Cache` (singleflight, negative caching, TTL jitter, optional L1).
//! * [`sql`]: `[database]` and, with feature `sql`, a governed SQL pool (SQLite by default,
//!   PostgreSQL) with deadlines, a breaker, metrics and readiness.
//! * [`error`] ([`Error`](struct@Error)), [`validate`], [`route`](mod@route), [`grpc`](mod@grpc) and the macros
//!   [`route`](macro@route), [`grpc`](macro@grpc), [`Error`](derive@Error): handlers and the
//!   Kratos-compatible error model.
//! * [`wire`]: protocol plumbing shared by all of the above (route labels, header names,
//!   `grpc-status`, the guarded response future).
//! * [`shutdown`]: signals and the [`ShutdownHandle`].
//!
//! Everything the framework adds around handlers is a `tower::Layer`; plug your own in with
//! [`AppBuilder::http_layer`] and [`AppBuilder::grpc_layer`].
//!
//! # Adding a config section
//!
//! 1. In the module that owns the capability, define the section struct with
//!    `#[serde(deny_unknown_fields, default)]`, a `Default` with documented defaults, and
//!    durations through [`config::duration`].
//! 2. `impl config::Section for YourConfig` with its checks; name fields relative to the
//!    section and let [`config::ValidationError::within`] add prefixes for nested parts.
//! 3. Add one line `your_key: YourConfig,` to the list in `config/framework.rs`. Loading,
//!    validation, the accepted top-level keys and the builder all follow from that list.
//! 4. Document the section in `examples/hello/hello.toml` and the README's table.
//!
//! # Adding a listener kind
//!
//! A new kind of input (a message consumer, say) implements the crate-internal
//! `transport::listener::Listener` trait: it is bound or connected before the app turns
//! ready, serves through the protected stack until its `Drain::stop` turns true, reports on
//! `Drain::closed` once it takes no new work, and finishes in-flight work within
//! `Drain::grace` (or stops at once when shutdown is forced). `app/start.rs` then spawns it
//! with the others; the shutdown phases, readiness and the hard deadline come for free.

#![warn(missing_docs)]
#![deny(clippy::too_many_lines)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The macros name `::truss`; this makes that path work inside the crate too.
extern crate self as truss;

pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod grpc;
mod labels;
mod local;
pub mod observe;
pub mod openapi;
pub mod queue;
mod random;
pub mod redis;
pub mod registry;
pub mod reload;
pub mod resilience;
pub mod route;
mod section;
pub mod shutdown;
pub mod sql;
mod transport;
pub mod validate;
pub mod wire;

#[doc(hidden)]
pub mod __private {
    pub use crate::private::*;
}
mod private;

pub use app::{App, AppBuilder, AppError, Phase, RunningApp};
pub use config::Config;
pub use error::Error;
pub use observe::health::Health;
/// Derive it on the `#[path]`, `#[query]`, `#[body]` and reply types of `#[truss::route]`
/// handlers: the OpenAPI document describes them with it (see [`openapi`]).
pub use schemars::JsonSchema;
pub use shutdown::ShutdownHandle;
pub use truss_macros::{Error, grpc, route};

/// A boxed error, as tower uses.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The framework's dependencies, re-exported so a team can depend on `truss` alone.
pub mod deps {
    pub use axum;
    pub use http;
    /// redis-rs (feature `redis`).
    #[cfg(feature = "redis")]
    pub use redis;
    pub use schemars;
    pub use serde;
    pub use tokio;
    pub use tonic;
    pub use tower;
    pub use tracing;
}

/// The names most services use.
pub mod prelude {
    pub use crate::config::{Config, Section, ValidationError};
    pub use crate::{App, AppError, Health, ShutdownHandle};
}
