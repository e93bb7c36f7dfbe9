//! Live configuration: a running app reloads its config without a restart.
//!
//! ```toml
//! [reload]                    # on by default for a config loaded from sources
//! poll = "500ms"              # the config file is checked this often
//!
//! [reload.etcd]               # optional, feature `etcd`: values above the file
//! key = "/config/user"        # a TOML document (see ReloadConfig for `prefix`, `format`)
//! ```
//!
//! * **Triggers.** The config file's content changing (an editor's temp-file-and-rename
//!   save, a Kubernetes ConfigMap's symlink swap: one reload, and none for a `touch`),
//!   SIGHUP (with [`AppBuilder::run`](crate::AppBuilder::run)), a change under the etcd key
//!   or prefix, and [`RunningApp::reload`](crate::app::RunningApp::reload). Changes within
//!   `debounce` make one reload.
//! * **Layers.** defaults < file < etcd < `TRUSS_*` environment: the environment stays
//!   the operator's final word. A lost etcd watch is re-established and the source read
//!   again, so a change made while etcd was down is picked up when it is back; while it is
//!   down the config in force stays.
//! * **Load → validate → apply, or keep the old.** A new config is loaded and validated
//!   exactly as at start; an invalid one is rejected whole with the same error naming the key
//!   and its source, logged at `error` and counted in
//!   `truss_config_reloads_total{result="rejected"}`, and the old config stays in force.
//! * **What applies live:** `log.level` (unless `RUST_LOG` is set), `log.format`,
//!   `log.access`, `trace.sample_ratio`, `[admission]`
//!   (in-flight limit, rate limits and their rules, shedding), `[breaker]`, `[timeout]`
//!   (per route too), `[auth]` (keys, JWKS URL, policies), `[retry]` (the policy and budget
//!   of every client made with
//!   [`ClientConfig::from_config`](crate::client::ClientConfig::from_config); a changed
//!   policy starts a fresh budget), and the team's `[app]` through
//!   [`Config::live_app`](crate::config::Config::live_app). The server stacks are rebuilt
//!   from the new config and swapped in at once, even on keep-alive connections; requests
//!   already running finish on the old one. Their state (rate-limit buckets, breaker
//!   windows, in-flight counts) starts afresh on the new stack.
//! * **What needs a restart:** listener addresses and settings (`[http]`, `[grpc]`,
//!   `[admin]`), `[shutdown]`, `[registry]` (the instance's identity), `[database]`,
//!   `[redis]`, the rest of `[trace]` and `[reload]` itself. A change to one is logged as "needs
//!   restart" and listed by `/config`; the rest of the reload applies.
//! * **Visible.** `GET /config` on the admin listener: the config in force (secrets
//!   redacted), the source of every key a source set, the revision, keys waiting for a
//!   restart and the last rejection. Metrics `truss_config_reloads_total{result}`
//!   (`applied`, `unchanged`, `rejected`) and `truss_config_revision`.
//!
//! Values set in code on a loaded [`Config`] (after
//! [`ConfigLoader::load`](crate::config::ConfigLoader::load)) hold until the first reload
//! that applies, which takes every live key from the sources again. A config built in code
//! (`Config::default()`) is never reloaded.
//!
//! Reading a live value costs nothing per request: the stack in force is one atomic load,
//! and [`Live::get`](crate::config::Live::get) another.

mod config;
mod diff;
pub(crate) mod engine;
#[cfg(feature = "etcd")]
mod etcd;
mod file;
mod redact;
mod status;

pub use config::{DocumentFormat, EtcdSource, ReloadConfig};
pub use engine::ReloadReport;
pub(crate) use engine::{Engine, LiveStack, Trigger};
pub(crate) use status::Status;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::origin::{Overlay, Shown};
use crate::config::{Config, ConfigError, NoAppConfig};

/// The config an app starts with, its etcd layer included.
pub(crate) struct Initial {
    pub(crate) config: Config<NoAppConfig>,
    pub(crate) shown: Shown,
    pub(crate) overlay: Option<Overlay>,
    /// The etcd revision the source was read at (0: not read).
    pub(crate) revision: i64,
}

/// Layers the etcd source (when configured) over `config`; an unreachable or invalid source
/// is logged and the app starts on the rest, watching for it.
pub(crate) async fn initial(config: Config<NoAppConfig>) -> Result<Initial, ConfigError> {
    if config.reload.etcd.is_some() && config.registry.etcd.is_none() {
        return Err(ConfigError::one(
            "reload.etcd",
            "the configuration given to the app builder",
            "needs [registry.etcd]: the etcd source uses its connection settings",
        ));
    }
    let mut initial = Initial {
        shown: Shown::default(),
        overlay: None,
        revision: 0,
        config,
    };
    let Some(origin) = initial.config.origin.0.clone() else {
        return Ok(initial);
    };
    #[cfg(feature = "etcd")]
    if let (true, Some(source), Some(conn)) = (
        initial.config.reload.enabled,
        initial.config.reload.etcd.clone(),
        initial.config.registry.etcd.clone(),
    ) {
        match etcd::read_once(&conn, &source).await {
            Ok(read) => {
                initial.revision = read.revision;
                match read.overlay {
                    Ok(overlay) => initial.overlay = overlay,
                    Err(error) => tracing::error!(%error,
                        "config source rejected at start; starting without it"),
                }
            }
            Err(error) => tracing::warn!(source = %etcd::name(&source), %error,
                "config source unavailable at start; starting without it, watching for it"),
        }
    }
    match origin.load(initial.overlay.as_ref()) {
        Ok(loaded) => {
            if initial.overlay.is_some() {
                // Nothing is bound yet: every key etcd sets applies, listener addresses
                // and `[shutdown]` included (defaults < file < etcd < environment).
                let mut config = loaded.config;
                config.origin = initial.config.origin.clone();
                initial.config = config;
                origin.publish(&loaded.app);
            }
            initial.shown = loaded.shown;
        }
        Err(error) => {
            tracing::error!(%error, "config with its etcd source is invalid; starting without it");
            initial.overlay = None;
        }
    }
    Ok(initial)
}

/// The reloader's tasks, and how to ask it for a reload.
#[derive(Default)]
pub(crate) struct Reloading {
    pub(crate) tx: Option<mpsc::Sender<Trigger>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Reloading {
    /// Starts the reloader and its triggers: the file watch, SIGHUP when `sighup`, the etcd
    /// watch. Nothing when the config was not loaded from sources or `[reload]` is off.
    pub(crate) fn spawn(engine: Engine, etcd_revision: i64, sighup: bool) -> Self {
        let config = engine.current.reload.clone();
        if !config.enabled {
            return Self::default();
        }
        let (tx, rx) = mpsc::channel(16);
        let mut tasks = Vec::new();
        if let Some(path) = engine.origin.file.clone() {
            let loaded = engine.origin.file_hash;
            tasks.push(file::watch(path, loaded, config.poll, tx.clone()));
        }
        if sighup {
            match file::on_sighup(tx.clone()) {
                Ok(task) => tasks.push(task),
                Err(error) => tracing::warn!(%error, "cannot listen for SIGHUP"),
            }
        }
        #[cfg(feature = "etcd")]
        if let (Some(source), Some(conn)) = (&config.etcd, &engine.current.registry.etcd) {
            let (source, conn) = (source.clone(), conn.clone());
            tasks.push(etcd::watch(conn, source, etcd_revision, tx.clone()));
        }
        #[cfg(not(feature = "etcd"))]
        let _ = etcd_revision;
        tasks.push(tokio::spawn(engine.run(rx, config.debounce)));
        Self {
            tx: Some(tx),
            tasks,
        }
    }

    /// Stops watching.
    pub(crate) fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
