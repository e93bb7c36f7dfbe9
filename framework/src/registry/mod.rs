//! Service registration: the [`Registrar`] trait the app calls after binding and before
//! draining.
//!
//! The app registers once every listener is bound (with the addresses it actually bound) and
//! deregisters first thing on shutdown, before the drain delay, so clients stop sending before
//! the listeners close.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::BoxError;

/// A boxed, sendable future, as returned by [`Registrar`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a running instance announces about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Instance {
    /// Unique per process, e.g. `hello-3f9c…`.
    pub id: String,
    /// The service name given to [`App::builder`](crate::App::builder).
    pub name: String,
    /// The service version.
    pub version: String,
    /// The bound HTTP address, when the app serves HTTP.
    #[serde(default)]
    pub http: Option<SocketAddr>,
    /// The bound gRPC address, when the app serves gRPC.
    pub grpc: Option<SocketAddr>,
    /// Free-form metadata (zone, weight, ...).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

mod config;
#[cfg(feature = "etcd")]
pub mod etcd;

pub use config::{EtcdConfig, RegistryConfig};

/// Announces an instance to a registry and withdraws it.
///
/// ```
/// use truss::registry::{BoxFuture, Instance, Registrar};
/// use truss::BoxError;
///
/// struct Log;
///
/// impl Registrar for Log {
///     fn register<'a>(&'a self, instance: &'a Instance) -> BoxFuture<'a, Result<(), BoxError>> {
///         Box::pin(async move {
///             println!("up: {} at {:?}", instance.name, instance.http);
///             Ok(())
///         })
///     }
///     fn deregister(&self) -> BoxFuture<'_, Result<(), BoxError>> {
///         Box::pin(async { Ok(()) })
///     }
/// }
/// ```
pub trait Registrar: Send + Sync + 'static {
    /// Registers the instance. Implementations keep it registered (renewing leases,
    /// re-registering after losing them) until [`deregister`](Self::deregister).
    fn register<'a>(&'a self, instance: &'a Instance) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Withdraws the instance. Called once, at the start of shutdown.
    fn deregister(&self) -> BoxFuture<'_, Result<(), BoxError>>;
}
