use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::Redis;
use crate::Health;

/// The readiness check's name in `/readyz`.
pub const CHECK: &str = "redis";

/// How often the readiness check pings Redis.
const EVERY: Duration = Duration::from_secs(1);

impl Redis {
    /// Keeps the `redis` check of `health` current when `[redis] required` is on: a
    /// background task pings Redis (governed, operation `ping`) every second, first at once;
    /// the check reads false until a ping succeeds. The task ends, removing the check, once
    /// every clone of this client is dropped. Call it inside the tokio runtime, with the app
    /// builder's health:
    ///
    /// ```no_run
    /// # async fn demo(redis: truss::redis::Redis) {
    /// let app = truss::App::builder("user");
    /// redis.readiness(&app.health());
    /// # }
    /// ```
    ///
    /// With `required = false` (the default) it does nothing: the service stays ready while
    /// Redis is down, its calls fail with `REDIS_UNAVAILABLE` and caches bypass Redis.
    pub fn readiness(&self, health: &Health) {
        if !self.inner.config.required {
            return;
        }
        health.set_check(CHECK, false);
        let inner = Arc::downgrade(&self.inner);
        let health = health.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(EVERY);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut was = None;
            loop {
                ticker.tick().await;
                let Some(inner) = inner.upgrade() else { break };
                let ping = Redis { inner }.ping().await;
                let ok = ping.is_ok();
                health.set_check(CHECK, ok);
                match ping {
                    Err(e) if was != Some(false) => tracing::warn!(error = %e, "redis: not ready"),
                    Ok(()) if was == Some(false) => tracing::info!("redis: ready again"),
                    _ => {}
                }
                was = Some(ok);
            }
            health.remove_check(CHECK);
        });
    }
}
