//! Registration and discovery on etcd (feature `etcd`).
//!
//! Key layout: `<prefix>/<service>/<instance-id>`, value: the [`Instance`] as JSON, attached to
//! a lease of `ttl` kept alive in the background. The registrar never gives up: when the
//! keep-alive stream ends, the lease expires, the key is deleted by someone else, or etcd is
//! unreachable, it registers again as soon as etcd answers, retrying with capped exponential
//! backoff for ever. Deregistration revokes the lease.
//!
//! Discovery lists the prefix, then watches from the next revision; on compaction or a broken
//! watch it lists again, and while etcd is unreachable it keeps the last known instances.
//!
//! ```no_run
//! # async fn demo() -> Result<(), truss::AppError> {
//! use truss::registry::etcd::{EtcdConfig, EtcdRegistrar};
//!
//! let config = EtcdConfig { endpoints: vec!["http://127.0.0.1:2379".into()], ..EtcdConfig::default() };
//! let app = truss::App::builder("user");
//! let registrar = EtcdRegistrar::new(config).with_health(app.health());
//! app.registrar(registrar).run().await
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use super::EtcdConfig;
use super::{BoxFuture, Discovery, Instance, Registrar};
use crate::BoxError;
use crate::observe::health::Health;

impl EtcdConfig {
    fn key(&self, service: &str, id: &str) -> String {
        format!("{}/{service}/{id}", self.prefix.trim_end_matches('/'))
    }

    fn service_prefix(&self, service: &str) -> String {
        format!("{}/{service}/", self.prefix.trim_end_matches('/'))
    }

    pub(crate) async fn connect(&self) -> Result<Client, BoxError> {
        // HTTP/2 pings on idle connections too: a watch on a connection whose peer vanished
        // without a FIN (a partition, a dead host) errors within seconds instead of waiting
        // for ever, so discovery and the config source re-list rather than go stale.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_timeout(self.timeout)
            .with_keep_alive(Duration::from_secs(10), self.timeout)
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &self.tls {
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
            };
            let mut config = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca_file)?));
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                config = config.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
            }
            if let Some(domain) = &tls.domain {
                config = config.domain_name(domain.clone());
            }
            options = options.with_tls(config);
        }
        let client = tokio::time::timeout(
            self.timeout,
            Client::connect(&self.endpoints, Some(options)),
        )
        .await
        .map_err(|_| "timed out connecting to etcd")??;
        Ok(client)
    }

    fn ttl_secs(&self) -> i64 {
        (self.ttl.as_secs_f64().ceil() as i64).max(2)
    }
}

/// Registers one instance in etcd and keeps it registered until deregistered.
pub struct EtcdRegistrar {
    config: EtcdConfig,
    health: Option<Health>,
    running: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for EtcdRegistrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistrar")
            .field("endpoints", &self.config.endpoints)
            .finish_non_exhaustive()
    }
}

/// The readiness check the registrar holds while not registered.
pub const HEALTH_CHECK: &str = "registry";

impl EtcdRegistrar {
    /// A registrar for `config`.
    pub fn new(config: EtcdConfig) -> Self {
        Self {
            config,
            health: None,
            running: Mutex::new(None),
        }
    }

    /// Holds `/readyz` down (check `registry`) while the instance is not registered.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Stops keeping the registration alive without revoking it, as a crashed process
    /// would: the key disappears when its lease expires. For tests and drills.
    pub fn abandon(&self) {
        if let Some((_, task)) = self.take() {
            task.abort();
        }
    }

    fn take(&self) -> Option<(oneshot::Sender<()>, JoinHandle<()>)> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Registrar for EtcdRegistrar {
    fn register<'a>(&'a self, instance: &'a Instance) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let value = serde_json::to_string(instance)?;
            let key = self.config.key(&instance.name, &instance.id);
            let (stop_tx, stop_rx) = oneshot::channel();
            let (first_tx, first_rx) = oneshot::channel();
            if let Some(health) = &self.health {
                health.set_check(HEALTH_CHECK, false);
            }
            let task = tokio::spawn(maintain(
                self.config.clone(),
                key,
                value,
                self.health.clone(),
                stop_rx,
                first_tx,
            ));
            *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some((stop_tx, task));
            // Wait for the first registration a little; after that it goes on in the
            // background, for ever if need be.
            match tokio::time::timeout(self.config.timeout * 2, first_rx).await {
                Ok(Ok(())) => Ok(()),
                _ => Err("etcd unreachable: registration goes on in the background".into()),
            }
        })
    }

    fn deregister(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            if let Some((stop, task)) = self.take() {
                let _ = stop.send(());
                task.await?;
            }
            if let Some(health) = &self.health {
                health.remove_check(HEALTH_CHECK);
            }
            Ok(())
        })
    }
}

/// Registers, keeps alive, and registers again whenever the registration is lost.
async fn maintain(
    config: EtcdConfig,
    key: String,
    value: String,
    health: Option<Health>,
    mut stop: oneshot::Receiver<()>,
    first: oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(100);
    // The lease being held, so a stop request can revoke it after cancelling `hold`.
    let held: Mutex<Option<(Client, i64)>> = Mutex::new(None);
    loop {
        let outcome = tokio::select! {
            outcome = hold(&config, &key, &value, &health, &mut first, &held) => outcome,
            _ = &mut stop => Lost::Stopped(held.lock().unwrap_or_else(PoisonError::into_inner).take().map(Box::new)),
        };
        held.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(h) = &health {
            h.set_check(HEALTH_CHECK, false);
        }
        metrics::gauge!("truss_registry_registered").set(0.0);
        match outcome {
            Lost::Stopped(lease) => {
                // Revoke so clients see the instance go at once, not after the TTL.
                if let Some((mut client, lease)) = lease.map(|b| *b) {
                    let _ = tokio::time::timeout(config.timeout, client.lease_revoke(lease)).await;
                }
                return;
            }
            Lost::Registration(reason) => {
                tracing::warn!(%key, %reason, "registration lost: registering again");
                backoff = Duration::from_millis(100);
            }
            Lost::Etcd(error) => {
                tracing::warn!(%key, %error, ?backoff, "etcd unreachable: retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => return,
                }
                backoff = (backoff * 2).min(config.retry_max);
            }
        }
    }
}

enum Lost {
    /// Deregistration requested; the lease to revoke, if one is held.
    Stopped(Option<Box<(Client, i64)>>),
    /// The lease expired or the key was deleted.
    Registration(String),
    /// etcd could not be reached or failed.
    Etcd(BoxError),
}

/// One registration: grant, put, then keep alive and watch the key until something breaks.
/// A stop request arriving while registered revokes the lease (see [`maintain`]).
async fn hold(
    config: &EtcdConfig,
    key: &str,
    value: &str,
    health: &Option<Health>,
    first: &mut Option<oneshot::Sender<()>>,
    held: &Mutex<Option<(Client, i64)>>,
) -> Lost {
    let attempt = async {
        let mut client = config.connect().await?;
        let lease = client.lease_grant(config.ttl_secs(), None).await?.id();
        client
            .put(key, value, Some(PutOptions::new().with_lease(lease)))
            .await?;
        let (keeper, stream) = client.lease_keep_alive(lease).await?;
        let watch = client.watch(key, None).await?;
        Ok::<_, BoxError>((client, lease, keeper, stream, watch))
    };
    let (client, lease, mut keeper, mut stream, mut watch) = match attempt.await {
        Ok(parts) => parts,
        Err(e) => return Lost::Etcd(e),
    };
    tracing::info!(%key, lease, "registered in etcd");
    if let Some(h) = health {
        h.set_check(HEALTH_CHECK, true);
    }
    metrics::gauge!("truss_registry_registered").set(1.0);
    if let Some(first) = first.take() {
        let _ = first.send(());
    }
    *held.lock().unwrap_or_else(PoisonError::into_inner) = Some((client, lease));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(
        (config.ttl_secs() as f64 / 3.0).max(0.5),
    ));
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(e) = keeper.keep_alive().await {
                    return Lost::Etcd(e.into());
                }
            }
            reply = stream.message() => match reply {
                Ok(Some(r)) if r.ttl() > 0 => {}
                Ok(Some(_)) => return Lost::Registration("lease expired".into()),
                Ok(None) => return Lost::Etcd("keep-alive stream ended".into()),
                Err(e) => return Lost::Etcd(e.into()),
            },
            event = watch.message() => match event {
                Ok(Some(resp)) => {
                    if resp.events().iter().any(|e| e.event_type() == EventType::Delete) {
                        return Lost::Registration("key deleted".into());
                    }
                }
                Ok(None) => return Lost::Etcd("watch ended".into()),
                Err(e) => return Lost::Etcd(e.into()),
            },
        }
    }
}

/// Watches one service's instances in etcd.
///
/// The receiver always holds the last known set; it never empties because etcd went away.
pub fn discover(
    config: EtcdConfig,
    service: &str,
) -> (watch::Receiver<Vec<Instance>>, JoinHandle<()>) {
    // The gauge below may be set before the app installs its recorder (clients are often
    // built first); a value recorded before that would be lost for good.
    let _ = crate::observe::metrics::install();
    let (tx, rx) = watch::channel(Vec::new());
    let prefix = config.service_prefix(service);
    let service = service.to_owned();
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let followed = tokio::select! {
                followed = follow(&config, &prefix, &service, &tx) => followed,
                _ = tx.closed() => return,
            };
            match followed {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(%prefix, %error, "discovery: etcd unavailable, keeping last known instances");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.retry_max);
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    (rx, task)
}

/// Lists, then watches until the watch breaks or is compacted (Ok: list again).
async fn follow(
    config: &EtcdConfig,
    prefix: &str,
    service: &str,
    tx: &watch::Sender<Vec<Instance>>,
) -> Result<(), BoxError> {
    let mut client = config.connect().await?;
    let listed = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let mut known: BTreeMap<Vec<u8>, Instance> = BTreeMap::new();
    for kv in listed.kvs() {
        if let Ok(instance) = serde_json::from_slice::<Instance>(kv.value()) {
            known.insert(kv.key().to_vec(), instance);
        }
    }
    // A listing is an answer even when unchanged or empty: clients then know the service
    // has no instance (and fail fast) rather than wait for a first report.
    publish(tx, service, &known, true);
    let mut watch = client
        .watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await?;
    loop {
        let Some(resp) = watch.message().await? else {
            return Err("watch ended".into());
        };
        if resp.compact_revision() > 0 || resp.canceled() {
            tracing::info!(%prefix, "discovery: watch compacted or cancelled, listing again");
            return Ok(());
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => {
                    if let Ok(instance) = serde_json::from_slice::<Instance>(kv.value()) {
                        known.insert(kv.key().to_vec(), instance);
                    }
                }
                EventType::Delete => {
                    known.remove(kv.key());
                }
            }
        }
        publish(tx, service, &known, false);
    }
}

/// Sends the known instances to the watchers: when they changed, or always after a
/// `listing`.
fn publish(
    tx: &watch::Sender<Vec<Instance>>,
    service: &str,
    known: &BTreeMap<Vec<u8>, Instance>,
    listing: bool,
) {
    let instances: Vec<Instance> = known.values().cloned().collect();
    metrics::gauge!("truss_registry_endpoints", "target" => service.to_owned())
        .set(instances.len() as f64);
    tx.send_if_modified(|current| {
        let changed = *current != instances;
        if changed {
            *current = instances;
        }
        changed || listing
    });
}

/// [`Discovery`] on etcd: one [`discover`] task per watched service.
#[derive(Debug, Clone)]
pub struct EtcdDiscovery {
    config: EtcdConfig,
}

impl EtcdDiscovery {
    /// Discovery reading `config`'s prefix.
    pub fn new(config: EtcdConfig) -> Self {
        Self { config }
    }
}

impl Discovery for EtcdDiscovery {
    fn watch(&self, service: &str) -> watch::Receiver<Vec<Instance>> {
        // The task ends when every receiver is gone.
        discover(self.config.clone(), service).0
    }
}
