use std::sync::Arc;

use http::{Request, StatusCode};

use super::shedder::{Permit, Shedder};
use crate::resilience::admit::{Admit, AdmitLayer, Policy, Rejection};

/// Sheds load with a shared [`Shedder`]: HTTP 503, gRPC `UNAVAILABLE`.
pub type ShedLayer = AdmitLayer<Shedder>;

/// The service built by [`ShedLayer`].
pub type Shed<S> = Admit<S, Shedder>;

impl AdmitLayer<Shedder> {
    /// A layer deciding with `shedder`.
    pub fn new(shedder: Arc<Shedder>) -> Self {
        Self::from_policy(shedder)
    }
}

impl Policy for Shedder {
    type Guard = Permit;
    type Route = ();
    const COUNTED_AS: Option<&'static str> = Some("shed");

    #[inline]
    fn route<B>(self: &Arc<Self>, _route: &str, _req: &Request<B>) {}

    #[inline]
    fn admit<B>(self: &Arc<Self>, _: &str, _: &(), _: &Request<B>) -> Result<Permit, Rejection> {
        self.try_acquire().ok_or(Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "OVERLOADED",
            "overloaded: request shed",
        ))
    }
}
