use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use pin_project::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use super::{Deadline, grpc_timeout};
use crate::BoxError;
use crate::wire::headers::GRPC_TIMEOUT;

/// Client side: sends the remaining budget of the current deadline, minus `margin`, as
/// `grpc-timeout`, and fails the call with `DEADLINE_EXCEEDED` locally when it passes.
///
/// The deadline is the request's `Deadline` extension if set, else [`Deadline::current()`].
/// A request that already carries a smaller `grpc-timeout` keeps it. Errors are a boxed
/// `tonic::Status`, which tonic clients surface as that status.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use truss::resilience::deadline::PropagateDeadlineLayer;
///
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9090").connect_lazy();
/// let channel = ServiceBuilder::new()
///     .layer(PropagateDeadlineLayer::new(Duration::from_millis(5)))
///     .service(channel);
/// // MyClient::new(channel) now forwards every call's remaining budget.
/// # let _ = channel; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PropagateDeadlineLayer {
    margin: Duration,
}

impl PropagateDeadlineLayer {
    /// Keeps `margin` back from the budget sent downstream.
    pub fn new(margin: Duration) -> Self {
        Self { margin }
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> PropagateDeadline<S> {
        PropagateDeadline {
            inner,
            margin: self.margin,
        }
    }
}

/// The service built by [`PropagateDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
    margin: Duration,
}

fn expired() -> BoxError {
    Box::new(tonic::Status::deadline_exceeded(
        "deadline exceeded before the call completed",
    ))
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = PropagateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let deadline = req
            .extensions()
            .get::<Deadline>()
            .copied()
            .or_else(Deadline::current);
        let Some(deadline) = deadline else {
            return PropagateFuture::Plain {
                future: self.inner.call(req),
            };
        };
        let budget = deadline.remaining().saturating_sub(self.margin);
        if budget.is_zero() {
            metrics::counter!("truss_deadline_exceeded_total", "side" => "client", "route" => "")
                .increment(1);
            return PropagateFuture::Expired;
        }
        let existing = req
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|v| grpc_timeout::parse(v.as_bytes()).ok());
        if existing.is_none_or(|e| e > budget) {
            req.headers_mut()
                .insert(GRPC_TIMEOUT, grpc_timeout::format(budget));
        }
        PropagateFuture::Limited {
            future: self.inner.call(req),
            sleep: tokio::time::sleep(budget),
        }
    }
}

/// The response future of [`PropagateDeadline`].
#[pin_project(project = Proj)]
pub enum PropagateFuture<F> {
    /// No deadline.
    Plain {
        /// The call.
        #[pin]
        future: F,
    },
    /// A deadline.
    Limited {
        /// The call.
        #[pin]
        future: F,
        /// When to give up.
        #[pin]
        sleep: Sleep,
    },
    /// Already past the deadline: not sent.
    Expired,
}

impl<F, T, E> Future for PropagateFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Plain { future } => future.poll(cx).map_err(Into::into),
            Proj::Limited { future, sleep } => {
                if let Poll::Ready(out) = future.poll(cx) {
                    return Poll::Ready(out.map_err(Into::into));
                }
                match sleep.poll(cx) {
                    Poll::Ready(()) => {
                        metrics::counter!(
                            "truss_deadline_exceeded_total",
                            "side" => "client",
                            "route" => ""
                        )
                        .increment(1);
                        Poll::Ready(Err(expired()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            Proj::Expired => Poll::Ready(Err(expired())),
        }
    }
}
