use std::sync::Arc;

use http::{Request, StatusCode};

use super::limiter::RateLimits;
use crate::resilience::admit::{Admit, AdmitLayer, Policy, Rejection};

/// Applies [`RateLimits`] to every request (429, gRPC `RESOURCE_EXHAUSTED`, with
/// `Retry-After`). Clones share state.
pub type RateLimitLayer = AdmitLayer<RateLimits>;

/// The service built by [`RateLimitLayer`].
pub type RateLimit<S> = Admit<S, RateLimits>;

impl AdmitLayer<RateLimits> {
    /// A layer enforcing `limits`.
    pub fn new(limits: RateLimits) -> Self {
        Self::from_policy(Arc::new(limits))
    }
}

impl Policy for RateLimits {
    type Guard = ();
    type Route = ();
    const COUNTED_AS: Option<&'static str> = Some("ratelimit");

    #[inline]
    fn route<B>(self: &Arc<Self>, _route: &str, _req: &Request<B>) {}

    #[inline]
    fn admit<B>(self: &Arc<Self>, route: &str, _: &(), req: &Request<B>) -> Result<(), Rejection> {
        self.check(route, req).map_err(limited)
    }
}

/// The rejection of every rate limit, whatever its backend: 429 `RATE_LIMITED` (gRPC
/// `RESOURCE_EXHAUSTED`), retry after `wait`.
#[inline]
pub(crate) fn limited(wait: std::time::Duration) -> Rejection {
    Rejection {
        retry_after: Some(wait),
        ..Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "rate limit exceeded",
        )
    }
}
