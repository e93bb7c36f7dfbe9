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
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::counters::DecisionCounters;
use crate::wire::is_grpc;
use crate::wire::reject::reject;
use crate::wire::route_label;
use crate::wire::{Completion, GuardedFuture};

#[derive(Debug)]
struct State {
    max: usize,
    in_flight: AtomicUsize,
    counters: DecisionCounters,
}

/// Rejects requests beyond `max` in flight (HTTP 503, gRPC `UNAVAILABLE`). Clones of the
/// layer, and every service it builds, share one count: apply it once per listener.
#[derive(Debug, Clone)]
pub struct InFlightLimitLayer {
    state: Arc<State>,
}

impl InFlightLimitLayer {
    /// At most `max` requests in flight.
    pub fn new(max: usize) -> Self {
        Self {
            state: Arc::new(State {
                max,
                in_flight: AtomicUsize::new(0),
                counters: DecisionCounters::new("inflight"),
            }),
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> InFlightLimit<S> {
        InFlightLimit {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service built by [`InFlightLimitLayer`].
#[derive(Debug, Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    state: Arc<State>,
}

/// Holds one in-flight slot; released on drop.
#[derive(Debug)]
pub struct Slot(Arc<State>);

impl Completion for Slot {}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl<S, B> Service<Request<B>> for InFlightLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = GuardedFuture<S::Future, Slot>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let before = self.state.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.state.clone());
        let route = route_label(&req);
        if before >= self.state.max {
            drop(slot);
            self.state.counters.record(route, false);
            return GuardedFuture::rejected(reject(
                is_grpc(req.headers()),
                StatusCode::SERVICE_UNAVAILABLE,
                "TOO_MANY_IN_FLIGHT",
                "too many requests in flight",
                None,
            ));
        }
        self.state.counters.record(route, true);
        GuardedFuture::admitted(self.inner.call(req), slot)
    }
}
