//! Timeouts with deadlines that follow a request across hops.
//!
//! On the way in, [`DeadlineLayer`] gives every request a deadline: the earlier of its route's
//! timeout (`[timeout]`) and the caller's `grpc-timeout` header (accepted on HTTP too). The
//! handler (and every inner layer) sees it as [`Deadline::current()`], and when it
//! passes, the caller gets HTTP 504 or gRPC `DEADLINE_EXCEEDED` at once, whether or not the
//! handler has finished.
//!
//! On the way out, [`PropagateDeadlineLayer`] on a client sends what is left of the current
//! deadline, minus a small margin, as `grpc-timeout`, and gives up locally when it passes, so
//! a deadline set at the edge holds across every hop.
//!
//! A malformed `grpc-timeout` (not 1–8 digits and one of `H M S m u n`) is refused with HTTP
//! 400 / gRPC `INVALID_ARGUMENT`: guessing a deadline the caller did not mean is worse than
//! telling it.
//!
//! ```
//! use std::time::Duration;
//! use truss::resilience::deadline::{Deadline, DeadlineLayer, TimeoutConfig};
//!
//! let config = TimeoutConfig { default: Duration::from_secs(2), ..TimeoutConfig::default() };
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async {
//!         let left = Deadline::current().map(|d| d.remaining());
//!         format!("{left:?} left")
//!     }))
//!     .layer(DeadlineLayer::new(config));
//! # let _ = app;
//! ```

pub mod grpc_timeout;
mod propagate;
mod scope;
mod server;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::section::duration::{self, HumanDuration};
use crate::section::{Section, ValidationError};

pub use propagate::{PropagateDeadline, PropagateDeadlineLayer};
pub use scope::DeadlineScope;
pub use server::{DeadlineLayer, DeadlineService};

thread_local! {
    /// The deadline of the request being served: set around its `call` and each poll.
    static CURRENT: Cell<Option<Deadline>> = const { Cell::new(None) };
}

/// The moment by which a request must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Deadline(Instant::now() + timeout)
    }

    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// When it is.
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// Time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn is_expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The deadline of the request being served by this task, if any.
    ///
    /// Set for the handler's own task; a task it spawns does not inherit it (wrap the
    /// spawned future in [`Deadline::scope`] to pass it on).
    pub fn current() -> Option<Deadline> {
        crate::local::get(&CURRENT)
    }

    /// Runs `f` (synchronously) with this as the [`current`](Self::current) deadline.
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        crate::local::enter(&CURRENT, self, f)
    }

    /// Runs `fut` with this as its [`current`](Self::current) deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use truss::resilience::deadline::Deadline;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let deadline = Deadline::after(Duration::from_secs(1));
    /// let seen = deadline.scope(async { Deadline::current() }).await;
    /// assert_eq!(seen, Some(deadline));
    /// assert_eq!(Deadline::current(), None);
    /// # });
    /// ```
    pub fn scope<F: Future>(self, fut: F) -> DeadlineScope<F> {
        DeadlineScope::new(self, fut)
    }
}

/// `[timeout]`: request timeouts per route, and the margin kept when propagating.
///
/// ```toml
/// [timeout]
/// default = "30s"          # every route; "0" for none
/// margin = "5ms"           # subtracted from the budget sent downstream
///
/// [timeout.routes]
/// "/reports/{id}" = "2m"   # route template, or /package.Service/Method
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// Timeout of every route without its own; zero for none. Default `30s`.
    #[serde(with = "duration")]
    pub default: Duration,
    /// Timeouts per route label; zero for none.
    pub routes: BTreeMap<String, HumanDuration>,
    /// Kept back from the remaining budget sent downstream, for the time the answer takes to
    /// come back. Default `5ms`.
    #[serde(with = "duration")]
    pub margin: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(30),
            routes: BTreeMap::new(),
            margin: Duration::from_millis(5),
        }
    }
}

impl TimeoutConfig {
    /// The timeout for a route label (`None`: no timeout).
    pub fn for_route(&self, route: &str) -> Option<Duration> {
        let t = self.routes.get(route).map_or(self.default, |d| d.0);
        (!t.is_zero()).then_some(t)
    }
}

impl Section for TimeoutConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.margin > Duration::from_secs(10) {
            return Err(ValidationError::new("margin", "must be at most 10s"));
        }
        Ok(())
    }
}
