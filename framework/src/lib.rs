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
//! * [`App`] / [`AppBuilder`]: the builder and run loop; [`RunningApp`] for tests.
//! * [`config`]: defaults < file < environment, strict and typed, errors naming key and source.
//! * [`shutdown`]: signals and the [`ShutdownHandle`].
//! * [`observe`]: health/readiness and logging.
//! * [`registry`]: the [`Registrar`](registry::Registrar) the app calls on start and stop.
//!
//! Everything the framework adds around handlers is a `tower::Layer`; plug your own in with
//! [`AppBuilder::http_layer`] and [`AppBuilder::grpc_layer`].

#![warn(missing_docs)]

// The macros name `::truss`; this makes that path work inside the crate too.
extern crate self as truss;

pub mod app;
pub mod client;
pub mod config;
pub mod error;
pub mod grpc;
mod labels;
pub mod observe;
pub mod registry;
pub mod resilience;
pub mod route;
mod section;
pub mod shutdown;
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
pub use shutdown::ShutdownHandle;
pub use truss_macros::{Error, grpc, route};

/// A boxed error, as tower uses.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The framework's dependencies, re-exported so a team can depend on `truss` alone.
pub mod deps {
    pub use axum;
    pub use http;
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
