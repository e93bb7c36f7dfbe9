use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::limiter::RateLimits;
use crate::resilience::counters::DecisionCounters;
use crate::wire::GuardedFuture;
use crate::wire::is_grpc;
use crate::wire::reject::reject;
use crate::wire::route_label;

/// Applies [`RateLimits`] to every request. Clones share state.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    counters: Arc<DecisionCounters>,
    limits: Arc<RateLimits>,
}

impl RateLimitLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: RateLimits) -> Self {
        Self {
            counters: Arc::new(DecisionCounters::new("ratelimit")),
            limits: Arc::new(limits),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            counters: self.counters.clone(),
            limits: self.limits.clone(),
        }
    }
}

/// The service built by [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    counters: Arc<DecisionCounters>,
    limits: Arc<RateLimits>,
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = GuardedFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = route_label(&req);
        match self.limits.check(route, &req) {
            Ok(()) => {
                self.counters.record(route, true);
                GuardedFuture::admitted(self.inner.call(req), ())
            }
            Err(wait) => {
                self.counters.record(route, false);
                GuardedFuture::rejected(reject(
                    is_grpc(req.headers()),
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    "rate limit exceeded",
                    Some(wait),
                ))
            }
        }
    }
}
