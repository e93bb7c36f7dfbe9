//! A started app: its addresses, its phase and its shutdown.

use std::net::SocketAddr;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::AppError;
use crate::observe::health::Health;
use crate::registry::Instance;
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
