use std::sync::Arc;

use tokio::time::MissedTickBehavior;

use super::Database;
use crate::Health;

/// The readiness check's name in `/readyz`.
pub const CHECK: &str = "database";

impl Database {
    /// Keeps the `database` check of `health` current when `[database] required` is on (the
    /// default): a background task pings the primary every `health_interval` (first at once;
    /// the check reads false until a ping succeeds) and refreshes the pool gauges. The task
    /// ends, removing the check, once every clone of this `Database` is dropped. Call it
    /// inside the tokio runtime, with the app builder's health:
    ///
    /// ```no_run
    /// # async fn demo(db: truss::sql::Database) {
    /// let app = truss::App::builder("user");
    /// db.readiness(&app.health());
    /// # }
    /// ```
    ///
    /// With `required = false` it does nothing: the service stays ready while the database
    /// is down, and its calls fail with `DATABASE_UNAVAILABLE`.
    pub fn readiness(&self, health: &Health) {
        if !self.inner.config.required {
            return;
        }
        health.set_check(CHECK, false);
        let every = self.inner.config.health_interval;
        let inner = Arc::downgrade(&self.inner);
        let health = health.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut was = None;
            loop {
                ticker.tick().await;
                let Some(inner) = inner.upgrade() else { break };
                let db = Database { inner };
                let ping = db.ping().await;
                db.update_gauges();
                drop(db);
                let ok = ping.is_ok();
                health.set_check(CHECK, ok);
                match ping {
                    Err(e) if was != Some(false) => {
                        tracing::warn!(error = %e, "database: not ready");
                    }
                    Ok(()) if was == Some(false) => tracing::info!("database: ready again"),
                    _ => {}
                }
                was = Some(ok);
            }
            health.remove_check(CHECK);
        });
    }
}
