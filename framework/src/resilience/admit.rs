//! The one admission layer: label the request, ask a [`Policy`], count the decision, then
//! reject in the caller's protocol or call the inner service holding the policy's guard.
//! In-flight limit, rate limits, load shedding and the server breaker are policies of it.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::counters::{DecisionCounters, Pair};
use crate::labels::FirstLabel;
use crate::wire::reject::reject;
use crate::wire::{Completion, GuardedFuture, is_grpc, route_label};

/// Decides whether a request may go on.
pub trait Policy: Send + Sync + 'static {
    /// Held by an admitted request until its response is ready (or it is dropped).
    type Guard: Completion;

    /// The `layer` label of `truss_admission_total`; `None`: decisions are not counted there
    /// (the breaker reports through its own metrics).
    const COUNTED_AS: Option<&'static str>;

    /// Admits the request to `route` with a guard, or rejects it.
    fn admit<B>(self: &Arc<Self>, route: &str, req: &Request<B>) -> Result<Self::Guard, Rejection>;
}

/// Why a policy turned a request away, written in the caller's protocol by the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status (the gRPC code follows from the error table).
    pub status: StatusCode,
    /// The machine-readable reason, e.g. `RATE_LIMITED`.
    pub reason: &'static str,
    /// A short message for people.
    pub message: &'static str,
    /// When to try again (`Retry-After`), if known.
    pub retry_after: Option<Duration>,
}

impl Rejection {
    /// A rejection with no retry hint.
    pub const fn new(status: StatusCode, reason: &'static str, message: &'static str) -> Self {
        Self {
            status,
            reason,
            message,
            retry_after: None,
        }
    }
}

/// Applies a [`Policy`] to every request of the wrapped service.
#[derive(Debug)]
pub struct AdmitLayer<P> {
    pub(crate) policy: Arc<P>,
    counters: Option<Arc<DecisionCounters>>,
}

impl<P> Clone for AdmitLayer<P> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<P: Policy> AdmitLayer<P> {
    /// A layer deciding with `policy`.
    pub fn from_policy(policy: Arc<P>) -> Self {
        Self {
            policy,
            counters: P::COUNTED_AS.map(|layer| Arc::new(DecisionCounters::new(layer))),
        }
    }

    /// The policy, to inspect it.
    pub fn policy(&self) -> &Arc<P> {
        &self.policy
    }
}

impl<S, P> Layer<S> for AdmitLayer<P> {
    type Service = Admit<S, P>;

    fn layer(&self, inner: S) -> Admit<S, P> {
        Admit {
            inner,
            policy: self.policy.clone(),
            counters: self.counters.clone(),
            pair: FirstLabel::default(),
        }
    }
}

/// The service built by [`AdmitLayer`].
#[derive(Debug)]
pub struct Admit<S, P> {
    inner: S,
    policy: Arc<P>,
    counters: Option<Arc<DecisionCounters>>,
    /// This route's decision counters, resolved on its first request.
    pair: FirstLabel<Arc<Pair>>,
}

impl<S: Clone, P> Clone for Admit<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            counters: self.counters.clone(),
            pair: self.pair.clone(),
        }
    }
}

impl<S, P, B> Service<Request<B>> for Admit<S, P>
where
    S: Service<Request<B>, Response = Response<Body>>,
    P: Policy,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = GuardedFuture<S::Future, P::Guard>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = route_label(&req);
        let decision = self.policy.admit(route, &req);
        if let Some(counters) = &self.counters {
            counters.record(&self.pair, route, decision.is_ok());
        }
        match decision {
            Ok(guard) => GuardedFuture::admitted(self.inner.call(req), guard),
            Err(r) => GuardedFuture::rejected(reject(
                is_grpc(req.headers()),
                r.status,
                r.reason,
                r.message,
                r.retry_after,
            )),
        }
    }
}
