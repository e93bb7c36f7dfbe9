//! What `/config` on the admin listener shows, and the reload metrics.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;

use super::redact::redact;
use crate::config::origin::Shown;
use crate::config::{Config, NoAppConfig};

/// The config in force, for `GET /config`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    /// Counts the reloads applied since start (0: the config read at start).
    revision: u64,
    /// Every framework section as in force, secrets redacted.
    config: Value,
    /// The team's `[app]` section as its sources wrote it, secrets redacted.
    app: Value,
    /// Where each key a source set came from; keys not listed have their default.
    sources: BTreeMap<String, String>,
    /// Keys changed in a source that wait for a restart.
    needs_restart: Vec<String>,
    /// Why the last reload was rejected, if it was (cleared by the next applied one).
    last_error: Option<String>,
}

/// Shared between the reloader and the `/config` route.
#[derive(Debug, Clone)]
pub(crate) struct Status(Arc<ArcSwap<Snapshot>>);

impl Status {
    /// The status of the config an app starts with.
    pub(crate) fn new(config: &Config<NoAppConfig>, shown: &Shown) -> Self {
        describe();
        metrics::gauge!("truss_config_revision").set(0.0);
        let snapshot = Snapshot {
            revision: 0,
            config: redacted(config.sections_json()),
            app: redacted(shown.app.clone()),
            sources: shown.sources.clone(),
            needs_restart: Vec::new(),
            last_error: None,
        };
        Self(Arc::new(ArcSwap::from_pointee(snapshot)))
    }

    pub(crate) fn revision(&self) -> u64 {
        self.0.load().revision
    }

    /// A reload was applied.
    pub(crate) fn applied(&self, config: &Config<NoAppConfig>, shown: &Shown, restart: &[String]) {
        let revision = self.revision() + 1;
        self.0.store(Arc::new(Snapshot {
            revision,
            config: redacted(config.sections_json()),
            app: redacted(shown.app.clone()),
            sources: shown.sources.clone(),
            needs_restart: restart.to_vec(),
            last_error: None,
        }));
        metrics::counter!("truss_config_reloads_total", "result" => "applied").increment(1);
        metrics::gauge!("truss_config_revision").set(revision as f64);
    }

    /// A reload found nothing that applies now (maybe keys that need a restart).
    pub(crate) fn unchanged(&self, restart: &[String]) {
        self.update(|s| s.needs_restart = restart.to_vec());
        metrics::counter!("truss_config_reloads_total", "result" => "unchanged").increment(1);
    }

    /// A reload was rejected; the config in force stays.
    pub(crate) fn rejected(&self, why: String) {
        self.update(|s| s.last_error = Some(why.clone()));
        metrics::counter!("truss_config_reloads_total", "result" => "rejected").increment(1);
    }

    fn update(&self, change: impl Fn(&mut Snapshot)) {
        self.0.rcu(|old| {
            let mut new = Snapshot::clone(old);
            change(&mut new);
            new
        });
    }

    /// `GET /config` on the admin listener.
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/config", get(show))
            .with_state(self.clone())
    }
}

async fn show(State(status): State<Status>) -> axum::Json<Snapshot> {
    axum::Json(Snapshot::clone(&status.0.load()))
}

fn redacted(mut value: Value) -> Value {
    redact(&mut value);
    value
}

fn describe() {
    metrics::describe_counter!(
        "truss_config_reloads_total",
        "Config reloads by result: applied, unchanged or rejected (the old config stays)."
    );
    metrics::describe_gauge!(
        "truss_config_revision",
        "Config reloads applied since the process started."
    );
}
