//! Per-route options of [`#[truss::route]`](macro@crate::route) handlers, and the
//! [`routes!`](crate::routes) collector.
//!
//! ```
//! #[truss::route(get, "/ping", timeout = "100ms", rate_limit = 5)]
//! async fn ping() -> Result<&'static str, truss::Error> {
//!     Ok("pong")
//! }
//!
//! // One router holding every handler, each with its own layers.
//! let router: axum::Router = truss::routes![ping];
//! ```
//!
//! Authorization is declared in the same attribute, `auth = "public"`, `auth = "required"`
//! or `scope = "users:write"` (see [`crate::auth`]); `auth.routes."<METHOD> <template>"` in
//! config overrides it, and it overrides `auth.default`.

use std::time::Duration;

use axum::response::Response;
use axum::routing::MethodRouter;
use http::StatusCode;

use crate::resilience::deadline::{DeadlineLayer, TimeoutConfig};
use crate::resilience::{RateLimitLayer, RateLimitRule, RateLimits};

/// Options one route declares in its attribute; applied as layers on that route only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteOptions {
    timeout: Option<Duration>,
    rate_limit: Option<(f64, Option<u32>)>,
    breaker: Option<bool>,
    status: Option<u16>,
}

pub use crate::resilience::breaker::BreakerExempt;

impl RouteOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// The request's deadline is at most `timeout` from its arrival.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// At most `rps` requests per second on this route (a token bucket of `burst`).
    #[must_use]
    pub fn rate_limit(mut self, rps: f64, burst: Option<u32>) -> Self {
        self.rate_limit = Some((rps, burst));
        self
    }

    /// `false`: the server's breaker never counts nor rejects this route.
    #[must_use]
    pub fn breaker(mut self, on: bool) -> Self {
        self.breaker = Some(on);
        self
    }

    /// The success status code (default 200).
    #[must_use]
    pub fn status(mut self, code: u16) -> Self {
        self.status = Some(code);
        self
    }

    /// The success status code.
    pub fn success_status(&self) -> StatusCode {
        self.status
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::OK)
    }

    /// Wraps one route's method router in the declared layers.
    ///
    /// # Panics
    ///
    /// When the rate limit is not a positive number — the macro rejects that at compile time.
    pub fn apply<S>(&self, mut route: MethodRouter<S>) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        if let Some((rps, burst)) = self.rate_limit {
            let rule = RateLimitRule {
                rps,
                burst,
                ..RateLimitRule::default()
            };
            match RateLimits::new(Some(&rule), &Default::default()) {
                Ok(limits) => route = route.layer(RateLimitLayer::new(limits)),
                Err(e) => panic!("invalid route rate limit: {} {}", e.field, e.message),
            }
        }
        if let Some(timeout) = self.timeout {
            route = route.layer(DeadlineLayer::new(TimeoutConfig {
                default: timeout,
                ..TimeoutConfig::default()
            }));
        }
        if self.breaker == Some(false) {
            route = route.layer(axum::middleware::map_response(exempt));
        }
        route
    }
}

async fn exempt(mut response: Response) -> Response {
    response.extensions_mut().insert(BreakerExempt);
    response
}

/// Collects [`#[truss::route]`](macro@crate::route) handlers into an axum `Router`, each with
/// its per-route layers.
///
/// ```
/// # use serde::Serialize;
/// # #[derive(Serialize, schemars::JsonSchema)] struct User { id: u64 }
/// #[truss::route(get, "/users/{id}")]
/// async fn get_user(#[path] id: u64) -> Result<User, truss::Error> {
///     Ok(User { id })
/// }
///
/// #[truss::route(delete, "/users/{id}", status = 204)]
/// async fn delete_user(#[path] id: u64) -> Result<(), truss::Error> {
///     Ok(())
/// }
///
/// let router: axum::Router = truss::routes![get_user, delete_user];
/// ```
///
/// Handlers taking `#[state]` make a `Router<S>`: finish it with `.with_state(state)`.
#[macro_export]
macro_rules! routes {
    ($($($handler:ident)::+),* $(,)?) => {{
        let router = $crate::deps::axum::Router::new();
        $(
            $crate::__private::doc_mount($($handler)::+::METHOD_NAME, $($handler)::+::PATH);
            let router = router.route(
                $($handler)::+::PATH,
                $($handler)::+::options().apply($crate::deps::axum::routing::on(
                    $($handler)::+::METHOD,
                    $($handler)::+::handler,
                )),
            );
        )*
        router
    }};
}
