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

    /// What the policy resolves once per route and the layer keeps for the route's later
    /// requests (the breaker: the route's breaker), so deciding costs no lookup by name.
    /// `()` for a policy that treats every route alike.
    type Route: Send + Sync + 'static;

    /// The `layer` label of `truss_admission_total`; `None`: decisions are not counted there
    /// (the breaker reports through its own metrics).
    const COUNTED_AS: Option<&'static str>;

    /// Resolves [`Route`](Self::Route) for `route`. The layer's service for one route keeps
    /// what it resolved for the first label it saw and asks again for any other label (the
    /// methods of a mounted gRPC service but its first): keep it cheap and idempotent.
    /// `req` is the request that asked, for what its route is (an HTTP template or a gRPC
    /// method), never for anything particular to it.
    fn route<B>(self: &Arc<Self>, route: &str, req: &Request<B>) -> Self::Route;

    /// Admits the request to `route` (resolved as `state`) with a guard, or rejects it.
    fn admit<B>(
        self: &Arc<Self>,
        route: &str,
        state: &Self::Route,
        req: &Request<B>,
    ) -> Result<Self::Guard, Rejection>;
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

    /// What `route`'s requests are decided and counted with, on its first request `req`.
    pub(crate) fn resolve<B>(&self, route: &str, req: &Request<B>) -> Resolved<P::Route> {
        Resolved {
            pair: self.counters.as_ref().map(|c| c.pair(route)),
            state: self.policy.route(route, req),
        }
    }

    /// Asks the policy about `req` to `route` (resolved as `resolved`) and counts the
    /// decision.
    #[inline]
    pub(crate) fn decide<B>(
        &self,
        route: &str,
        resolved: &Resolved<P::Route>,
        req: &Request<B>,
    ) -> Result<P::Guard, Rejection> {
        let decision = self.policy.admit(route, &resolved.state, req);
        if let Some(pair) = &resolved.pair {
            pair.record(decision.is_ok());
        }
        decision
    }
}

impl<S, P: Policy> Layer<S> for AdmitLayer<P> {
    type Service = Admit<S, P>;

    fn layer(&self, inner: S) -> Admit<S, P> {
        Admit {
            inner,
            layer: self.clone(),
            route: FirstLabel::default(),
        }
    }
}

/// The service built by [`AdmitLayer`].
#[derive(Debug)]
pub struct Admit<S, P: Policy> {
    inner: S,
    layer: AdmitLayer<P>,
    /// What this route's requests are decided and counted with, resolved on its first.
    route: FirstLabel<Resolved<P::Route>>,
}

/// A route's decision counters and a policy's [`Route`](Policy::Route) state for it, as
/// an admission layer keeps them (a [`Chain`](super::Chain) keeps one per policy).
pub struct Resolved<R> {
    pair: Option<Arc<Pair>>,
    state: R,
}

impl<R: std::fmt::Debug> std::fmt::Debug for Resolved<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("counted", &self.pair.is_some())
            .field("state", &self.state)
            .finish()
    }
}

impl<S: Clone, P: Policy> Clone for Admit<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
            route: self.route.clone(),
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
        let layer = &self.layer;
        let decision = self.route.with(
            route,
            || layer.resolve(route, &req),
            |resolved| layer.decide(route, resolved, &req),
        );
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
