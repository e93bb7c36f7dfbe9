//! The shutdown sequence, run as one task once the app serves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::{Hook, Phase};
use crate::config::{Config, NoAppConfig};
use crate::observe::health::Health;
use crate::registry::Registrar;
use crate::shutdown::{Level, ShutdownHandle};

/// What shutdown needs, run as one task once the app is serving.
pub(super) struct Lifecycle {
    pub(super) config: Config<NoAppConfig>,
    pub(super) health: Health,
    pub(super) handle: ShutdownHandle,
    pub(super) registrar: Option<Arc<dyn Registrar>>,
    pub(super) before_stop: Vec<Hook>,
    pub(super) after_stop: Vec<Hook>,
    pub(super) stop_tx: watch::Sender<bool>,
    pub(super) admin_stop_tx: watch::Sender<bool>,
    pub(super) closed: Vec<oneshot::Receiver<()>>,
    pub(super) tasks: Vec<JoinHandle<()>>,
    pub(super) admin_task: JoinHandle<()>,
    pub(super) phase_tx: watch::Sender<Phase>,
    pub(super) grpc_health: Option<(tonic_health::server::HealthReporter, Vec<&'static str>)>,
}

impl Lifecycle {
    pub(super) async fn run(self) {
        self.handle.reached(Level::Graceful).await;
        let hook_timeout = self.config.shutdown.hook_timeout;
        let _ = self.phase_tx.send(Phase::Draining);
        self.health.set_ready(false);
        if let Some((reporter, names)) = &self.grpc_health {
            for name in names.iter().copied().chain([""]) {
                reporter
                    .set_service_status(name, tonic_health::ServingStatus::NotServing)
                    .await;
            }
        }
        tracing::info!("shutdown: not ready, running before-stop hooks");

        if let Some(registrar) = self.registrar.clone() {
            let deregister = async move { registrar.deregister().await };
            match contained(&self.handle, "deregister", hook_timeout, deregister).await {
                Some(Err(error)) => tracing::error!(%error, "deregistration failed"),
                Some(Ok(())) => tracing::info!("deregistered"),
                None => {}
            }
        }
        for hook in self.before_stop {
            contained(&self.handle, "before-stop hook", hook_timeout, hook()).await;
        }
        drain_delay(&self.handle, self.config.shutdown.drain_delay).await;

        let _ = self.stop_tx.send(true);
        for closed in self.closed {
            let _ = closed.await;
        }
        let _ = self.phase_tx.send(Phase::Stopping);
        tracing::info!(grace = ?self.config.shutdown.grace, "shutdown: listeners closed, draining requests");
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "server task failed");
            }
        }
        let _ = self.admin_stop_tx.send(true);
        if let Err(error) = self.admin_task.await {
            tracing::error!(%error, "admin server task failed");
        }

        for hook in self.after_stop {
            contained(&self.handle, "after-stop hook", hook_timeout, hook()).await;
        }
        let _ = self.phase_tx.send(Phase::Stopped);
        tracing::info!("shutdown complete");
    }
}

/// Runs the team's `fut` (a hook, a deregistration) in a task of its own, [`bounded_by`]
/// `limit`: one that panics is logged and shutdown goes on (a panic in the lifecycle task
/// would stop the admin listener at once, skip the after-stop hooks and return while
/// requests still drain); one that runs out of time is cancelled.
async fn contained<T: Send + 'static>(
    handle: &ShutdownHandle,
    what: &'static str,
    limit: Duration,
    fut: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let task = tokio::spawn(fut);
    let abort = task.abort_handle();
    match bounded_by(handle, what, limit, task).await {
        Some(Ok(out)) => Some(out),
        Some(Err(error)) => {
            tracing::error!(%error, "{what} failed");
            None
        }
        None => {
            abort.abort();
            None
        }
    }
}

/// Runs `fut` for at most `limit`, or until shutdown is forced.
async fn bounded_by<T>(
    handle: &ShutdownHandle,
    what: &'static str,
    limit: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        out = tokio::time::timeout(limit, fut) => match out {
            Ok(out) => Some(out),
            Err(_) => {
                tracing::warn!(?limit, "{what} timed out");
                None
            }
        },
        _ = handle.forced() => None,
    }
}

/// Waits out the drain delay, or until shutdown is forced.
async fn drain_delay(handle: &ShutdownHandle, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = handle.forced() => {}
    }
}
