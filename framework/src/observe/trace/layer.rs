use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::MatchedPath;
use http::{HeaderValue, Method, Request, Response, Uri};
use pin_project::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use super::context::{CURRENT, TraceContext};
use crate::wire::headers::{GRPC_STATUS, TRACEPARENT, TRACESTATE, X_TRACE_ID};
use crate::wire::label_of;
use crate::wire::route_label;

/// Server side: extracts or starts the trace, runs the request in a `tracing` span carrying
/// `trace_id` and `span_id`, returns `x-trace-id`, and (optionally) writes one access-log
/// line per request at target `truss::access`.
#[derive(Debug, Clone, Copy)]
pub struct TraceLayer {
    access_log: bool,
    sample_ratio: f64,
}

impl TraceLayer {
    /// A layer; `access_log` switches the per-request access line.
    pub fn new(access_log: bool) -> Self {
        Self {
            access_log,
            sample_ratio: 1.0,
        }
    }

    /// The share of new traces (no caller's `traceparent`) marked sampled. Default 1.
    pub fn sample_ratio(mut self, ratio: f64) -> Self {
        self.sample_ratio = ratio.clamp(0.0, 1.0);
        self
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> TraceService<S> {
        TraceService {
            inner,
            access_log: self.access_log,
            sample_ratio: self.sample_ratio,
        }
    }
}

/// The service built by [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct TraceService<S> {
    inner: S,
    access_log: bool,
    sample_ratio: f64,
}

impl<S, B> Service<Request<B>> for TraceService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = TraceFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ctx = req
            .headers()
            .get(TRACEPARENT)
            .and_then(|tp| {
                let state = req.headers().get(TRACESTATE).cloned();
                TraceContext::from_traceparent(tp.as_bytes(), state)
            })
            .unwrap_or_else(|| TraceContext::new_root_sampled(self.sample_ratio));
        let span = tracing::info_span!(
            "request",
            trace_id = %ctx.trace_id,
            span_id = %ctx.span_id,
            method = %req.method(),
            route = %route_label(&req),
            subject = tracing::field::Empty,
        );
        #[cfg(feature = "otlp")]
        crate::observe::otel::link(&span, &ctx);
        let header = trace_id_header(&ctx);
        let access = self.access_log.then(|| Access {
            method: req.method().clone(),
            matched: req.extensions().get::<MatchedPath>().cloned(),
            uri: req.uri().clone(),
            start: Instant::now(),
        });
        // The context is the task's (not a request extension: one map insert, and often a
        // map growth, less per request); inner layers see it already while building their
        // futures.
        let inner = CURRENT.sync_scope(ctx.clone(), || self.inner.call(req));
        let future = CURRENT.scope(ctx, inner).instrument(span);
        TraceFuture {
            inner: future,
            header,
            access,
        }
    }
}

struct Access {
    method: Method,
    matched: Option<MatchedPath>,
    uri: Uri,
    start: Instant,
}

/// The response future of [`TraceService`].
#[pin_project]
pub struct TraceFuture<F: Future> {
    #[pin]
    inner: Instrumented<TaskLocalFuture<TraceContext, F>>,
    header: Option<HeaderValue>,
    access: Option<Access>,
}

impl<F, E> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut out = std::task::ready!(this.inner.as_mut().poll(cx));
        if let Ok(response) = &mut out {
            if let Some(id) = this.header.take() {
                response.headers_mut().insert(X_TRACE_ID, id);
            }
            if let Some(access) = this.access.take() {
                let span = this.inner.as_ref().get_ref().span();
                let status = response.status().as_u16();
                let grpc_status = response
                    .headers()
                    .get(GRPC_STATUS)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info!(
                    target: "truss::access",
                    parent: span,
                    method = %access.method,
                    route = %label_of(access.matched.as_ref(), &access.uri),
                    status,
                    grpc_status = %grpc_status,
                    duration_us = access.start.elapsed().as_micros() as u64,
                    "access"
                );
            }
        }
        Poll::Ready(out)
    }
}

/// Client side: sends the current trace onward as `traceparent` (a new child span of it) and
/// `tracestate`. The trace is the request's `TraceContext` extension if set, else
/// [`TraceContext::current`]. A request that already has a `traceparent` keeps it.
#[derive(Debug, Clone, Copy, Default)]
pub struct InjectTraceLayer;

impl<S> Layer<S> for InjectTraceLayer {
    type Service = InjectTrace<S>;

    fn layer(&self, inner: S) -> InjectTrace<S> {
        InjectTrace { inner }
    }
}

/// The service built by [`InjectTraceLayer`].
#[derive(Debug, Clone)]
pub struct InjectTrace<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for InjectTrace<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !req.headers().contains_key(TRACEPARENT) {
            let ctx = req
                .extensions()
                .get::<TraceContext>()
                .cloned()
                .or_else(TraceContext::current);
            if let Some(ctx) = ctx {
                req.headers_mut()
                    .insert(TRACEPARENT, ctx.child_traceparent());
                if let Some(state) = ctx.tracestate {
                    req.headers_mut().insert(TRACESTATE, state);
                }
            }
        }
        self.inner.call(req)
    }
}

/// The trace id as a header value, hex-encoded on the stack (one allocation: the value).
fn trace_id_header(ctx: &TraceContext) -> Option<HeaderValue> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, b) in ctx.trace_id.0.iter().enumerate() {
        buf[2 * i] = HEX[usize::from(b >> 4)];
        buf[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    HeaderValue::from_bytes(&buf).ok()
}
