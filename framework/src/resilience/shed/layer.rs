use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::shedder::{Permit, Shedder};
use crate::resilience::counters::DecisionCounters;
use crate::wire::GuardedFuture;
use crate::wire::is_grpc;
use crate::wire::reject::reject;
use crate::wire::route_label;

/// Sheds load with a shared [`Shedder`]: HTTP 503, gRPC `UNAVAILABLE`.
#[derive(Debug, Clone)]
pub struct ShedLayer {
    counters: Arc<DecisionCounters>,
    shedder: Arc<Shedder>,
}

impl ShedLayer {
    /// A layer deciding with `shedder`.
    pub fn new(shedder: Arc<Shedder>) -> Self {
        Self {
            counters: Arc::new(DecisionCounters::new("shed")),
            shedder,
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            counters: self.counters.clone(),
            shedder: self.shedder.clone(),
        }
    }
}

/// The service built by [`ShedLayer`].
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    counters: Arc<DecisionCounters>,
    shedder: Arc<Shedder>,
}

impl<S, B> Service<Request<B>> for Shed<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = GuardedFuture<S::Future, Permit>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = route_label(&req);
        match self.shedder.try_acquire() {
            Some(permit) => {
                self.counters.record(route, true);
                GuardedFuture::admitted(self.inner.call(req), permit)
            }
            None => {
                self.counters.record(route, false);
                GuardedFuture::rejected(reject(
                    is_grpc(req.headers()),
                    StatusCode::SERVICE_UNAVAILABLE,
                    "OVERLOADED",
                    "overloaded: request shed",
                    None,
                ))
            }
        }
    }
}
