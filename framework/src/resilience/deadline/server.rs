use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use pin_project::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use super::{Deadline, DeadlineScope, TimeoutConfig, grpc_timeout};
use crate::wire::RouteLabel;
use crate::wire::headers::GRPC_TIMEOUT;
use crate::wire::is_grpc;
use crate::wire::reject::reject;
use crate::wire::route_label;

/// Gives every request a deadline; answers 504 / `DEADLINE_EXCEEDED` when it passes.
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    config: Arc<TimeoutConfig>,
}

impl DeadlineLayer {
    /// A layer applying `config`.
    pub fn new(config: TimeoutConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> DeadlineService<S> {
        DeadlineService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service built by [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    config: Arc<TimeoutConfig>,
}

impl<S, B> Service<Request<B>> for DeadlineService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let grpc = is_grpc(req.headers());
        let caller = match req.headers().get(GRPC_TIMEOUT) {
            None => None,
            Some(v) => match grpc_timeout::parse(v.as_bytes()) {
                Ok(t) => Some(t),
                Err(_) => {
                    let response = reject(
                        grpc,
                        StatusCode::BAD_REQUEST,
                        "INVALID_TIMEOUT",
                        "malformed grpc-timeout: expected 1 to 8 digits and a unit (H, M, S, m, u, n)",
                        None,
                    );
                    return DeadlineFuture {
                        inner: Inner::Rejected {
                            response: Some(response),
                        },
                        at: None,
                        sleep: None,
                        grpc,
                        route: None,
                    };
                }
            },
        };
        let route_timeout = self.config.for_route(route_label(&req));
        let timeout = match (route_timeout, caller) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // An outer deadline (the app's, when this is a route's own layer) still holds.
        let outer = Deadline::current();
        let deadline = match (timeout.map(Deadline::after), outer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Kept (a reference-count increment) to label a timeout.
        let route = deadline.map(|_| RouteLabel::of(&req));
        match deadline {
            // The deadline is the task's (no request extension), from the inner layers'
            // `call` on.
            Some(d) => DeadlineFuture {
                inner: Inner::Scoped {
                    future: d.scope(d.sync_scope(|| self.inner.call(req))),
                },
                at: Some(d),
                sleep: None,
                grpc,
                route,
            },
            None => DeadlineFuture {
                inner: Inner::Plain {
                    future: self.inner.call(req),
                },
                at: None,
                sleep: None,
                grpc,
                route,
            },
        }
    }
}

#[pin_project(project = InnerProj)]
enum Inner<F: Future> {
    Scoped {
        #[pin]
        future: DeadlineScope<F>,
    },
    Plain {
        #[pin]
        future: F,
    },
    /// Refused before reaching the inner service (a malformed `grpc-timeout`); the
    /// response is taken on the first poll.
    Rejected { response: Option<Response<Body>> },
}

/// The response future of [`DeadlineService`].
#[pin_project]
pub struct DeadlineFuture<F: Future> {
    #[pin]
    inner: Inner<F>,
    /// The deadline, if the request has one.
    at: Option<Deadline>,
    /// Its timer, set up the first time the inner future is not ready: a request answered
    /// in its first poll never makes one.
    #[pin]
    sleep: Option<Sleep>,
    grpc: bool,
    route: Option<RouteLabel>,
}

impl<F, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = match this.inner.project() {
            InnerProj::Scoped { future } => future.poll(cx),
            InnerProj::Plain { future } => future.poll(cx),
            InnerProj::Rejected { response } => match response.take() {
                Some(response) => return Poll::Ready(Ok(response)),
                None => panic!("DeadlineFuture polled after completion"),
            },
        };
        if let Poll::Ready(out) = polled {
            return Poll::Ready(out);
        }
        if this.sleep.as_mut().as_pin_mut().is_none() {
            let Some(at) = this.at else {
                return Poll::Pending;
            };
            this.sleep.set(Some(tokio::time::sleep_until(at.instant())));
        }
        if let Some(sleep) = this.sleep.as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            let route = this
                .route
                .as_ref()
                .map_or_else(String::new, |r| r.as_str().to_owned());
            metrics::counter!(
                "truss_deadline_exceeded_total",
                "side" => "server",
                "route" => route
            )
            .increment(1);
            return Poll::Ready(Ok(reject(
                *this.grpc,
                StatusCode::GATEWAY_TIMEOUT,
                "DEADLINE_EXCEEDED",
                "deadline exceeded",
                None,
            )));
        }
        Poll::Pending
    }
}
