//! A cap on requests in flight that rejects instead of queueing (tower's
//! `ConcurrencyLimit` waits for a slot; under overload waiting only adds latency).
//!
//! ```
//! use truss::resilience::InFlightLimitLayer;
//!
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "ok" }))
//!     .layer(InFlightLimitLayer::new(10_000));
//! # let _ = app;
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, StatusCode};

use super::admit::{Admit, AdmitLayer, Policy, Rejection};
use crate::wire::Completion;

/// Rejects requests beyond `max` in flight (HTTP 503, gRPC `UNAVAILABLE`). Clones of the
/// layer, and every service it builds, share one count: apply it once per listener.
pub type InFlightLimitLayer = AdmitLayer<InFlight>;

/// The service built by [`InFlightLimitLayer`].
pub type InFlightLimit<S> = Admit<S, InFlight>;

/// The in-flight limit as an admission [`Policy`].
#[derive(Debug)]
pub struct InFlight {
    max: usize,
    in_flight: AtomicUsize,
}

impl AdmitLayer<InFlight> {
    /// At most `max` requests in flight.
    pub fn new(max: usize) -> Self {
        Self::from_policy(Arc::new(InFlight {
            max,
            in_flight: AtomicUsize::new(0),
        }))
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.policy.in_flight.load(Ordering::Relaxed)
    }
}

/// A place among the requests in flight, given back when the request completes.
#[derive(Debug)]
pub struct Slot(Arc<InFlight>);

impl Completion for Slot {}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl Policy for InFlight {
    type Guard = Slot;
    type Route = ();
    const COUNTED_AS: Option<&'static str> = Some("inflight");

    #[inline]
    fn route<B>(self: &Arc<Self>, _route: &str, _req: &Request<B>) {}

    #[inline]
    fn admit<B>(self: &Arc<Self>, _: &str, _: &(), _: &Request<B>) -> Result<Slot, Rejection> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.clone());
        if before >= self.max {
            drop(slot);
            return Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TOO_MANY_IN_FLIGHT",
                "too many requests in flight",
            ));
        }
        Ok(slot)
    }
}
