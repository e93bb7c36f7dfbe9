//! The service builder and the run loop.
//!
//! * [`App::builder`] → [`AppBuilder`]: routes, services, hooks, registrar, config.
//! * [`AppBuilder::start`] binds every listener and returns a [`RunningApp`];
//!   [`AppBuilder::run`] also installs logging and signal handlers and waits.
//! * [`server_stack`]: the framework's layers, in their one documented order.
//! * [`Phase`]: where a running app is in its life; [`AppError`]: why it could not start.

mod builder;
mod consumers;
mod error;
mod lifecycle;
mod reflection;
mod running;
pub(crate) mod stack;
mod start;

pub use builder::{AppBuilder, RouteLayer};
pub use error::AppError;
pub use running::{Phase, RunningApp};
pub use stack::server_stack;

use crate::registry::BoxFuture;

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A truss service: the team's routes and services plus everything the framework wires
/// around them. Build one with [`App::builder`].
///
/// A complete service (see `examples/hello` for the gRPC half):
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use serde::Deserialize;
/// use truss::config::{Config, Section};
///
/// #[derive(Debug, Default, Deserialize)]
/// #[serde(deny_unknown_fields, default)]
/// struct Hello {
///     greeting: String,
/// }
/// impl Section for Hello {}
///
/// #[tokio::main]
/// async fn main() -> Result<(), truss::AppError> {
///     // defaults < --config file < TRUSS_* environment variables
///     let config = Config::<Hello>::load()?;
///     let greeting = config.app.greeting.clone();
///     let routes = Router::new().route("/", get(move || async move { greeting }));
///
///     truss::App::builder("hello")
///         .config(&config)
///         .http(routes)
///         // .grpc(GreeterServer::new(MyGreeter))
///         .run() // until SIGTERM / SIGINT, then a graceful, bounded shutdown
///         .await
/// }
/// ```
#[derive(Debug)]
pub struct App {
    _never: std::convert::Infallible,
}

impl App {
    /// Starts building the service called `name` (used in logs, metrics and the registry).
    pub fn builder(name: impl Into<String>) -> AppBuilder {
        AppBuilder::new(name.into())
    }
}
