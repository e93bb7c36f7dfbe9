//! One pool (the primary or a replica) with its breaker and saturation gauges.

use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool};
use tokio::time::Instant;

use super::SqlError;
use super::config::DatabaseConfig;
use crate::resilience::breaker::Breaker;

/// A pool, the breaker in front of it and its gauges.
pub(crate) struct Pool {
    pub(crate) pool: AnyPool,
    pub(crate) breaker: Option<Breaker>,
    waiting: AtomicI64,
    gauges: Gauges,
}

struct Gauges {
    in_use: metrics::Gauge,
    idle: metrics::Gauge,
    waiting: metrics::Gauge,
}

impl Pool {
    /// Wraps `pool`, called `name` in the gauges (`primary`, `replica-1`, …); its breaker is
    /// `database` for the primary, `database/<name>` for a replica.
    pub(crate) fn new(pool: AnyPool, name: &str, config: &DatabaseConfig) -> Self {
        let breaker_name = match name {
            "primary" => "database".to_owned(),
            replica => format!("database/{replica}"),
        };
        let breaker = (config.breaker.enabled && !config.breaker.skip.contains(&breaker_name))
            .then(|| Breaker::new(breaker_name, &config.breaker));
        let state = |state: &'static str| metrics::gauge!("truss_sql_pool_connections", "pool" => name.to_owned(), "state" => state);
        let gauges = Gauges {
            in_use: state("in_use"),
            idle: state("idle"),
            waiting: metrics::gauge!("truss_sql_pool_waiting", "pool" => name.to_owned()),
        };
        Self {
            pool,
            breaker,
            waiting: AtomicI64::new(0),
            gauges,
        }
    }

    /// Whether the breaker lets a call through (always, without one).
    pub(crate) fn allow(&self) -> bool {
        self.breaker.as_ref().is_none_or(Breaker::allow)
    }

    /// Tells the breaker how an admitted call went.
    pub(crate) fn record(&self, success: bool) {
        if let Some(breaker) = &self.breaker {
            breaker.record(success);
        }
    }

    /// A connection by `deadline`: `DeadlineExceeded` when the deadline passes first,
    /// `Unavailable` when the pool's own `acquire_timeout` does (or connecting fails).
    pub(crate) async fn acquire(&self, deadline: Instant) -> Result<Lease<'_>, SqlError> {
        let waiting = Waiting::new(self);
        let acquired = tokio::time::timeout_at(deadline, self.pool.acquire()).await;
        drop(waiting);
        let conn = match acquired {
            Err(_elapsed) => return Err(SqlError::DeadlineExceeded),
            Ok(conn) => conn.map_err(SqlError::from)?,
        };
        self.update_gauges();
        Ok(Lease {
            pool: self,
            conn: Some(conn),
        })
    }

    /// Sets the connection gauges from the pool's counts.
    pub(crate) fn update_gauges(&self) {
        let idle = self.pool.num_idle() as u32;
        let size = self.pool.size();
        self.gauges.idle.set(f64::from(idle));
        self.gauges.in_use.set(f64::from(size.saturating_sub(idle)));
    }
}

/// Counts one caller waiting for a connection, until dropped (also when cancelled).
struct Waiting<'a>(&'a Pool);

impl<'a> Waiting<'a> {
    fn new(pool: &'a Pool) -> Self {
        let now = pool.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        pool.gauges.waiting.set(now as f64);
        Self(pool)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let now = self.0.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0.gauges.waiting.set(now as f64);
    }
}

/// A pooled connection that goes back to its pool when dropped, or is closed instead by
/// [`discard`](Self::discard) when it was left in an unknown state.
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<PoolConnection<Any>>,
}

impl Lease<'_> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    /// Takes the connection out of the pool and drops it (a statement may still be running
    /// on it): PostgreSQL sees the socket close, and the pool opens a fresh connection.
    pub(crate) fn discard(mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        drop(self.conn.take());
        self.pool.update_gauges();
    }
}
