use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Breaker, Breakers};
use crate::BoxError;
use crate::resilience::admit::{Admit, AdmitLayer, Policy, Rejection};
use crate::wire::headers::{is_grpc_response, is_not_sent, not_sent};
use crate::wire::{Completion, is_grpc, is_http_route};

/// Server side: one breaker per route label; rejects with 503 / `UNAVAILABLE`.
pub type BreakerLayer = AdmitLayer<Breakers>;

/// The service built by [`BreakerLayer`].
pub type BreakerService<S> = Admit<S, Breakers>;

impl AdmitLayer<Breakers> {
    /// A layer using `breakers`.
    pub fn new(breakers: Breakers) -> Self {
        Self::from_policy(Arc::new(breakers))
    }

    /// The breakers, to inspect them.
    pub fn breakers(&self) -> &Arc<Breakers> {
        self.policy()
    }
}

/// Marks a response the server's circuit breaker must not count (`breaker = false` on a
/// route).
#[derive(Debug, Clone, Copy)]
pub struct BreakerExempt;

/// Records an admitted call's outcome when it completes (nothing if it is cancelled).
pub struct Ticket {
    breaker: Arc<Breaker>,
    breakers: Arc<Breakers>,
    http: bool,
}

/// A route's breaker as [`BreakerLayer`] keeps it: none for a route in `skip` (or with the
/// breakers off), and whether the route is an HTTP one, whose responses (unless their
/// content type is gRPC) are classified without looking for a gRPC status
/// ([`Classify::is_http_failure`](super::Classify::is_http_failure)).
#[derive(Debug)]
pub struct RouteBreaker {
    breaker: Option<Arc<Breaker>>,
    http: bool,
}

impl Completion for Ticket {
    fn completed(&mut self, response: &Response<Body>) {
        if response.extensions().get::<BreakerExempt>().is_some() {
            // `breaker = false` on the route: its outcomes do not move the breaker.
            self.breaker.record(true);
            return;
        }
        let classify = self.breakers.classifier();
        let (status, headers) = (response.status(), response.headers());
        let failed = if is_grpc_response(self.http, headers) {
            classify.is_failure(status, headers)
        } else {
            classify.is_http_failure(status, headers)
        };
        self.breaker.record(!failed);
    }

    fn rejected(&mut self, status: StatusCode) {
        let failed = self
            .breakers
            .classifier()
            .is_http_failure(status, &http::HeaderMap::new());
        self.breaker.record(!failed);
    }
}

impl Policy for Breakers {
    type Guard = Option<Ticket>;
    type Route = RouteBreaker;
    const COUNTED_AS: Option<&'static str> = None;

    fn route<B>(self: &Arc<Self>, route: &str, req: &Request<B>) -> RouteBreaker {
        RouteBreaker {
            breaker: self.get(route),
            http: is_http_route(req),
        }
    }

    #[inline]
    fn admit<B>(
        self: &Arc<Self>,
        _: &str,
        state: &RouteBreaker,
        _: &Request<B>,
    ) -> Result<Option<Ticket>, Rejection> {
        let Some(breaker) = &state.breaker else {
            return Ok(None);
        };
        if !breaker.allow() {
            return Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "CIRCUIT_OPEN",
                "circuit breaker open",
            ));
        }
        Ok(Some(Ticket {
            breaker: breaker.clone(),
            breakers: self.clone(),
            http: state.http,
        }))
    }
}

/// Client side: one breaker per `target` and gRPC method (`user/pkg.Users/Get`), or per
/// `target` and HTTP method for plain HTTP calls (`user GET`: never the raw path, whose
/// ids would make a breaker per resource, none reaching its threshold, and unbounded
/// series); a rejected call fails with a boxed `tonic::Status::unavailable` without being
/// sent (its metadata carries `truss-not-sent`, and the retry layer does not retry it).
/// Transport errors count as failures.
///
/// ```no_run
/// use std::sync::Arc;
/// use tower::ServiceBuilder;
/// use truss::resilience::breaker::{BreakerConfig, Breakers, ClientBreakerLayer, DefaultClassifier};
///
/// let breakers = Breakers::new(BreakerConfig::default(), Arc::new(DefaultClassifier)).unwrap();
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9090").connect_lazy();
/// let channel = ServiceBuilder::new()
///     .layer(ClientBreakerLayer::new("user", breakers))
///     .service(channel);
/// # let _ = channel;
/// ```
#[derive(Debug, Clone)]
pub struct ClientBreakerLayer {
    target: Arc<str>,
    breakers: Arc<Breakers>,
}

impl ClientBreakerLayer {
    /// Breakers for calls to `target` (a service name).
    pub fn new(target: impl Into<Arc<str>>, breakers: Breakers) -> Self {
        Self {
            target: target.into(),
            breakers: Arc::new(breakers),
        }
    }
}

impl<S> Layer<S> for ClientBreakerLayer {
    type Service = ClientBreaker<S>;

    fn layer(&self, inner: S) -> ClientBreaker<S> {
        ClientBreaker {
            inner,
            target: self.target.clone(),
            breakers: self.breakers.clone(),
        }
    }
}

/// The service built by [`ClientBreakerLayer`].
#[derive(Debug, Clone)]
pub struct ClientBreaker<S> {
    inner: S,
    target: Arc<str>,
    breakers: Arc<Breakers>,
}

impl<S, B, R> Service<Request<B>> for ClientBreaker<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = ClientBreakerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let name = if is_grpc(req.headers()) {
            format!("{}{}", self.target, req.uri().path())
        } else {
            format!("{} {}", self.target, req.method())
        };
        let breaker = self.breakers.get(&name);
        if let Some(b) = &breaker
            && !b.allow()
        {
            return ClientBreakerFuture {
                inner: None,
                breaker: None,
                breakers: self.breakers.clone(),
            };
        }
        ClientBreakerFuture {
            inner: Some(self.inner.call(req)),
            breaker,
            breakers: self.breakers.clone(),
        }
    }
}

/// A client call refused by an open breaker: `UNAVAILABLE`, marked as not sent (the retry
/// layer does not retry it: the breaker would refuse it again, and each refusal counts).
fn breaker_open() -> tonic::Status {
    not_sent(
        tonic::Status::unavailable("circuit breaker open"),
        "breaker-open",
    )
}

/// The response future of [`ClientBreaker`].
#[pin_project]
pub struct ClientBreakerFuture<F> {
    #[pin]
    inner: Option<F>,
    breaker: Option<Arc<Breaker>>,
    breakers: Arc<Breakers>,
}

impl<F, R, E> Future for ClientBreakerFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(Box::new(breaker_open())));
        };
        let out = std::task::ready!(inner.poll(cx)).map_err(Into::into);
        if let Some(breaker) = this.breaker.take() {
            let failed = match &out {
                Ok(resp) => Some(
                    this.breakers
                        .classifier()
                        .is_failure(resp.status(), resp.headers()),
                ),
                // Refused below before being sent (no instance to send it to): says nothing
                // about how the target answers.
                Err(e) if e.downcast_ref().is_some_and(is_not_sent) => None,
                Err(_) => Some(true),
            };
            if let Some(failed) = failed {
                breaker.record(!failed);
            }
        }
        Poll::Ready(out)
    }
}
