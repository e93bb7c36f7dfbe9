//! The reloader: load → validate → apply, or keep the old config whole.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::{mpsc, oneshot};

use super::diff::Change;
use super::status::Status;
use crate::app::AppError;
use crate::app::stack::{StackShared, build};
use crate::config::origin::{Origin, Overlay, Shown};
use crate::config::{Config, ConfigError, NoAppConfig};
use crate::observe::log::LogControl;
use crate::transport::server::RouterSlot;
use crate::wire::Transport;

/// What asks for a reload.
pub(crate) enum Trigger {
    /// The config file's content changed.
    File,
    /// SIGHUP.
    Signal,
    /// The etcd source was read again.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    Etcd(Result<Option<Overlay>, ConfigError>),
    /// [`RunningApp::reload`](crate::app::RunningApp::reload), waiting for the outcome.
    Asked(oneshot::Sender<Result<ReloadReport, ConfigError>>),
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The revision in force after it (unchanged when nothing applied).
    pub revision: u64,
    /// Keys whose new values apply now, as dotted paths (`admission.max_in_flight`).
    pub applied: Vec<String>,
    /// Keys whose new values wait for a restart; their old values stay in force.
    pub needs_restart: Vec<String>,
}

/// A listener's router before the server stack, and where its protected router is served.
pub(crate) struct LiveStack {
    pub(crate) transport: Transport,
    pub(crate) base: Router,
    pub(crate) slot: RouterSlot,
}

/// The sections whose change rebuilds the server stacks.
const STACK_KEYS: &[&str] = &[
    "admission",
    "timeout",
    "breaker",
    "auth",
    "log.access",
    "trace.sample_ratio",
];

/// Owns the config in force and applies new ones.
pub(crate) struct Engine {
    pub(crate) origin: Arc<Origin>,
    pub(crate) current: Config<NoAppConfig>,
    pub(crate) shown: Shown,
    pub(crate) overlay: Option<Overlay>,
    pub(crate) stacks: Vec<LiveStack>,
    pub(crate) shared: StackShared,
    pub(crate) log: Option<LogControl>,
    pub(crate) status: Status,
}

impl Engine {
    /// Reloads on every trigger, once per burst: triggers closer together than `debounce`
    /// make one reload.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Trigger>, debounce: Duration) {
        while let Some(first) = rx.recv().await {
            let mut waiting = Vec::new();
            let mut broken = None;
            self.absorb(first, &mut waiting, &mut broken);
            let quiet = tokio::time::sleep(debounce);
            tokio::pin!(quiet);
            loop {
                tokio::select! {
                    _ = &mut quiet => break,
                    next = rx.recv() => match next {
                        Some(t) => self.absorb(t, &mut waiting, &mut broken),
                        None => break,
                    },
                }
            }
            let outcome = match broken {
                Some(error) => Err(self.reject(error)),
                None => self.reload().await,
            };
            for tx in waiting {
                let _ = tx.send(outcome.clone());
            }
        }
    }

    fn absorb(
        &mut self,
        trigger: Trigger,
        waiting: &mut Vec<oneshot::Sender<Result<ReloadReport, ConfigError>>>,
        broken: &mut Option<ConfigError>,
    ) {
        match trigger {
            Trigger::File | Trigger::Signal => {}
            Trigger::Etcd(Ok(overlay)) => {
                self.overlay = overlay;
                *broken = None;
            }
            Trigger::Etcd(Err(error)) => *broken = Some(error),
            Trigger::Asked(tx) => waiting.push(tx),
        }
    }

    /// Loads from every source; applies what may change live, or keeps the old config.
    pub(crate) async fn reload(&mut self) -> Result<ReloadReport, ConfigError> {
        let loaded = self
            .origin
            .load(self.overlay.as_ref())
            .map_err(|e| self.reject(e))?;
        let change = Change::between(&self.current, loaded.config);
        if !change.needs_restart.is_empty() {
            tracing::warn!(keys = ?change.needs_restart,
                "config keys changed that need a restart; their old values stay in force");
        }
        let app_changed = loaded.shown.app != self.shown.app;
        if change.applied.is_empty() && !app_changed {
            self.status.unchanged(&change.needs_restart);
            return Ok(self.report(&change));
        }
        self.apply(&change).await.map_err(|e| self.reject(e))?;
        if app_changed {
            self.origin.publish(&loaded.app);
        }
        self.status
            .applied(&change.effective, &loaded.shown, &change.needs_restart);
        let mut applied = change.applied.clone();
        if app_changed {
            applied.push("app".to_owned());
        }
        tracing::info!(revision = self.status.revision(), keys = ?applied, "config reloaded");
        self.shown = loaded.shown;
        let report = ReloadReport {
            applied,
            ..self.report(&change)
        };
        self.current = change.effective;
        Ok(report)
    }

    /// Builds every new stack first and swaps them only when all built: a reload applies
    /// whole or not at all.
    async fn apply(&mut self, change: &Change) -> Result<(), ConfigError> {
        let config = &change.effective;
        if STACK_KEYS.iter().any(|key| change.touches(key)) {
            let shared = self
                .shared
                .renew(config, change.touches("auth"))
                .await
                .map_err(into_config_error)?;
            let mut routers = Vec::with_capacity(self.stacks.len());
            for stack in &self.stacks {
                let router = build(stack.base.clone(), stack.transport, config, &shared)
                    .map_err(into_config_error)?;
                routers.push(router);
            }
            for (stack, router) in self.stacks.iter().zip(routers) {
                stack.slot.store(Arc::new(router));
            }
            self.shared = shared;
        }
        if change.touches("retry") {
            self.origin.publish_config(config);
        }
        if change.touches("log.level") || change.touches("log.format") {
            self.apply_log(config)?;
        }
        Ok(())
    }

    /// `log.level` and `log.format`, on the subscriber the app installed.
    fn apply_log(&self, config: &Config<NoAppConfig>) -> Result<(), ConfigError> {
        let Some(log) = &self.log else {
            tracing::warn!(
                "[log] changed but does not apply: the app did not install its subscriber \
                 (AppBuilder::start rather than run)"
            );
            return Ok(());
        };
        log.apply(&config.log, "the reloaded config")
    }

    fn reject(&self, error: ConfigError) -> ConfigError {
        tracing::error!(%error, "config reload rejected; the config in force stays");
        self.status.rejected(error.to_string());
        error
    }

    fn report(&self, change: &Change) -> ReloadReport {
        ReloadReport {
            revision: self.status.revision(),
            applied: Vec::new(),
            needs_restart: change.needs_restart.clone(),
        }
    }
}

fn into_config_error(error: AppError) -> ConfigError {
    match error {
        AppError::Config(e) => e,
        other => ConfigError::one("", "the reloaded config", other.to_string()),
    }
}
