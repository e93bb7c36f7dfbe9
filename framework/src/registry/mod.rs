//! Service registration and discovery.
//!
//! * [`Registrar`]: what the app calls after binding and before draining;
//!   [`registrar_from`] picks the one `[registry]` asks for.
//! * [`Discovery`]: where clients learn a service's instances; [`StaticDiscovery`] for fixed
//!   `[registry.static]` endpoints, [`discovery_from`] picks one.
//! * [`etcd`] (feature `etcd`): both, on etcd, with leases that are renewed forever.
//! * [`Instance`] (what is announced), [`advertise`] (the address others reach), and the
//!   config section [`RegistryConfig`].
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
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub mod etcd;

pub use config::{EtcdConfig, EtcdTls, RegistryConfig, StaticEndpoint};

use tokio::sync::watch;

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

/// Where clients learn the instances of a service.
pub trait Discovery: Send + Sync + 'static {
    /// The instances of `service`, kept current. Call inside a tokio runtime.
    fn watch(&self, service: &str) -> watch::Receiver<Vec<Instance>>;
}

/// Fixed instances from `[registry.static]`.
#[derive(Debug, Clone, Default)]
pub struct StaticDiscovery {
    endpoints: BTreeMap<String, Vec<StaticEndpoint>>,
}

impl StaticDiscovery {
    /// Discovery over these fixed endpoints per service.
    pub fn new(endpoints: BTreeMap<String, Vec<StaticEndpoint>>) -> Self {
        Self { endpoints }
    }
}

impl Discovery for StaticDiscovery {
    fn watch(&self, service: &str) -> watch::Receiver<Vec<Instance>> {
        let instances = self
            .endpoints
            .get(service)
            .map(|eps| {
                eps.iter()
                    .enumerate()
                    .map(|(i, e)| Instance {
                        id: format!("{service}-static-{i}"),
                        name: service.to_owned(),
                        http: e.http,
                        grpc: e.grpc,
                        ..Instance::default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (tx, rx) = watch::channel(instances);
        // Keep the sender alive for as long as anyone watches.
        tokio::spawn(async move { tx.closed().await });
        rx
    }
}

/// The discovery `[registry]` asks for: etcd when configured (feature `etcd`), else the
/// static endpoints.
pub fn discovery_from(config: &RegistryConfig) -> std::sync::Arc<dyn Discovery> {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = &config.etcd {
        return std::sync::Arc::new(etcd::EtcdDiscovery::new(etcd.clone()));
    }
    std::sync::Arc::new(StaticDiscovery::new(config.static_endpoints.clone()))
}

/// The registrar an app uses: the one given in code, else etcd when `[registry.etcd]` is
/// configured (feature `etcd`; its keepalive reports into `health`), else none.
pub fn registrar_from(
    config: &RegistryConfig,
    given: Option<std::sync::Arc<dyn Registrar>>,
    health: &crate::Health,
) -> Option<std::sync::Arc<dyn Registrar>> {
    if given.is_some() {
        return given;
    }
    #[cfg(feature = "etcd")]
    if let Some(etcd) = &config.etcd {
        let registrar = etcd::EtcdRegistrar::new(etcd.clone()).with_health(health.clone());
        return Some(std::sync::Arc::new(registrar));
    }
    let _ = (config, health);
    None
}

/// The address to announce for a bound one: an unspecified IP (`0.0.0.0`, `::`) becomes
/// `registry.advertise_host`, or `127.0.0.1` when that is not set.
///
/// ```
/// use truss::registry::{RegistryConfig, advertise};
///
/// let bound = "0.0.0.0:8080".parse().unwrap();
/// assert_eq!(advertise(&RegistryConfig::default(), bound).to_string(), "127.0.0.1:8080");
/// ```
pub fn advertise(config: &RegistryConfig, mut bound: SocketAddr) -> SocketAddr {
    if bound.ip().is_unspecified() {
        let host = config.advertise_host;
        bound.set_ip(host.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])));
    }
    bound
}
