//! A started app: its addresses, its phase and its shutdown.

use std::net::SocketAddr;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::AppError;
use crate::config::ConfigError;
use crate::observe::health::Health;
use crate::registry::Instance;
use crate::reload::{ReloadReport, Trigger};
use crate::shutdown::ShutdownHandle;

/// The addresses the app bound.
#[derive(Debug, Clone, Copy)]
pub(super) struct Addrs {
    pub(super) http: Option<SocketAddr>,
    pub(super) grpc: Option<SocketAddr>,
    pub(super) admin: SocketAddr,
}

/// Where a running app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Listeners bound, ready.
    Serving,
    /// Shutdown began: not ready, hooks and the drain delay run, listeners still accept.
    Draining,
    /// Listeners closed (new connections are refused); in-flight requests finish.
    Stopping,
    /// Everything closed, after-stop hooks done.
    Stopped,
}

/// A started app. Dropping it does not stop the app; call [`wait`](Self::wait) or
/// [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct RunningApp {
    pub(super) name: String,
    pub(super) addrs: Addrs,
    pub(super) instance: Instance,
    pub(super) handle: ShutdownHandle,
    pub(super) health: Health,
    pub(super) phase: watch::Receiver<Phase>,
    pub(super) task: JoinHandle<()>,
    /// Asks the reloader (absent when the config is not reloadable).
    pub(super) reload: Option<tokio::sync::mpsc::Sender<Trigger>>,
}

impl RunningApp {
    /// The bound HTTP address, when the app serves HTTP.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.addrs.http
    }

    /// The bound gRPC address, when the app serves gRPC.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.addrs.grpc
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.addrs.admin
    }

    /// What was (or would be) announced to the registry.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// A handle that starts (or forces) shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// The app's readiness state.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Completes once the app has reached `phase` (or a later one).
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.clone();
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    /// Reloads the config from its sources now, as a file change or SIGHUP would, and waits
    /// for the outcome: what applied, what needs a restart, or why the new config was
    /// rejected (the old one stays in force). See [`reload`](crate::reload).
    ///
    /// An error too when the app does not reload: its config was built in code rather than
    /// loaded, or `[reload] enabled = false`.
    pub async fn reload(&self) -> Result<ReloadReport, ConfigError> {
        let not_reloading = || {
            ConfigError::one(
                "reload",
                "the running app",
                "this app does not reload: its config was built in code, or [reload] is off",
            )
        };
        let tx = self.reload.as_ref().ok_or_else(not_reloading)?;
        let (done, outcome) = tokio::sync::oneshot::channel();
        tx.send(Trigger::Asked(done))
            .await
            .map_err(|_| not_reloading())?;
        outcome.await.map_err(|_| not_reloading())?
    }

    /// Waits until the app has shut down.
    pub async fn wait(self) -> Result<(), AppError> {
        self.task
            .await
            .map_err(|e| AppError::Internal(e.to_string()))
    }

    /// Starts graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) -> Result<(), AppError> {
        self.handle.shutdown();
        self.wait().await
    }
}
