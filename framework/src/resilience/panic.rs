//! A handler that panics answers `500` (`INTERNAL` on gRPC), and the connection and the
//! process live on.
//!
//! Without it a panic unwinds out of the connection's task: an HTTP/1.1 client gets an
//! empty reply, an HTTP/2 stream is reset, and the layers outside never see a response
//! (metrics and the access line count a client that went away, the breaker no failure).
//! The app puts [`CatchPanicLayer`] innermost, inside the deadline, so everything outside
//! sees the `500` as the handler's answer. The panic is logged at `ERROR` inside the
//! request's span (with its `trace_id` and route) and counted in `truss_panics_total`;
//! the request metrics count the `500` by route.
//!
//! ```
//! use axum::{Router, routing::get};
//! use truss::resilience::panic::CatchPanicLayer;
//!
//! async fn boom() -> &'static str {
//!     panic!("a bug")
//! }
//!
//! // `GET /boom` answers 500 with the `INTERNAL` error body.
//! let app: Router = Router::new().route("/boom", get(boom)).layer(CatchPanicLayer);
//! ```
//!
//! Catching needs the default `panic = "unwind"`; with `panic = "abort"` the process ends,
//! as it would anyway.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response, StatusCode, Version};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::wire::is_grpc;
use crate::wire::reject::reject;

/// Turns a panic of the inner service, while called or polled, into a `500` response; see
/// the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// The service built by [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CatchPanic<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // gRPC is HTTP/2 only: an HTTP/1.1 request skips the header lookup.
        let grpc = req.version() == Version::HTTP_2 && is_grpc(req.headers());
        let inner = match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(inner) => Some(inner),
            Err(payload) => {
                report(payload.as_ref());
                None
            }
        };
        CatchPanicFuture { inner, grpc }
    }
}

/// The response future of [`CatchPanic`].
#[pin_project]
pub struct CatchPanicFuture<F> {
    /// `None` once it panicked (when called, or polled).
    #[pin]
    inner: Option<F>,
    grpc: bool,
}

impl<F, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Ok(internal(*this.grpc)));
        };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                report(payload.as_ref());
                // A future that panicked is never polled again.
                this.inner.set(None);
                Poll::Ready(Ok(internal(*this.grpc)))
            }
        }
    }
}

/// Logs and counts a panic (the log line is in the request's span, with its route and
/// trace id; the request metrics count the `500` by route).
fn report(payload: &(dyn Any + Send)) {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)");
    tracing::error!(panic = message, "the handler panicked: answered 500");
    metrics::describe_counter!("truss_panics_total", "Handler panics answered 500.");
    metrics::counter!("truss_panics_total").increment(1);
}

/// The answer to a request whose handler panicked.
fn internal(grpc: bool) -> Response<Body> {
    reject(
        grpc,
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "the handler failed",
        None,
    )
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        panic!("a bug")
    }

    fn app() -> Router {
        Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(CatchPanicLayer)
    }

    async fn send(app: Router, req: Request<Body>) -> (Response<()>, String) {
        let response = app.oneshot(req).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            Response::from_parts(parts, ()),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_service_lives_on() {
        let app = app();
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        let (response, body) = send(app.clone(), get("/boom")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("\"INTERNAL\""), "{body}");
        let (response, body) = send(app, get("/fine")).await;
        assert_eq!((response.status(), body.as_str()), (StatusCode::OK, "fine"));
    }

    #[tokio::test]
    async fn a_grpc_caller_gets_internal() {
        let req = Request::get("/boom")
            .version(Version::HTTP_2)
            .header("content-type", "application/grpc")
            .body(Body::empty())
            .unwrap();
        let (response, _) = send(app(), req).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "13");
    }

    #[tokio::test]
    async fn a_panic_when_called_is_caught_too() {
        let svc = tower::service_fn(|_: Request<Body>| -> std::future::Ready<Result<Response<Body>, std::convert::Infallible>> {
            panic!("in call")
        });
        let response = CatchPanicLayer
            .layer(svc)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
