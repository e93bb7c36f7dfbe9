use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode};
use pin_project::{pin_project, pinned_drop};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

use super::access::Access;
use super::context::TraceContext;
use super::current::{Current, TraceScope};
use crate::wire::headers::{TRACEPARENT, TRACESTATE, X_TRACE_ID};
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
        let trace_id = Hex::of(&ctx.trace_id.0);
        let span = request_span(&req, &ctx, &trace_id);
        #[cfg(feature = "otlp")]
        crate::observe::otel::link(&span, &ctx);
        let header = HeaderValue::from_bytes(trace_id.as_bytes()).ok();
        let access = (self.access_log && writes_access_lines()).then(|| Access::of(&req));
        // The context is the task's (not a request extension: one map insert, and often a
        // map growth, less per request); inner layers see it already while building their
        // futures.
        let mut current = Current::new(ctx);
        let inner = current.enter(|| self.inner.call(req));
        TraceFuture {
            inner: TraceScope::new(current, inner),
            span,
            header,
            access,
        }
    }
}

/// The request's span, carrying its ids, method and route.
///
/// The ids are hex once, shared with the response header. Fields are `&str`: truss's
/// formatter writes them as they are, where `%` would cost a `fmt` call each (about 150
/// instructions); a formatter of `tracing-subscriber`'s own quotes them. The values are
/// evaluated only when the span is enabled.
fn request_span<B>(req: &Request<B>, ctx: &TraceContext, trace_id: &Hex<16>) -> Span {
    if !tracing::dispatcher::has_been_set() && !log_takes_info() {
        // Nothing could see it: `tracing`'s `log` fallback (which sqlx turns on) would
        // still evaluate its fields, for about 250 instructions.
        return Span::none();
    }
    tracing::info_span!(
        "request",
        trace_id = trace_id.as_str(),
        span_id = Hex::of(&ctx.span_id.0).as_str(),
        method = req.method().as_str(),
        route = route_label(req),
        subject = tracing::field::Empty,
    )
}

/// Whether an access line may be written: always once a `tracing` subscriber has been set
/// (asking it per request would cost as much as collecting), and while none has, only when
/// the `log` crate's logger takes `INFO` (where `tracing`'s `log` fallback sends the line).
/// When not, nothing is collected for it: no route label, peer or clock read.
fn writes_access_lines() -> bool {
    tracing::dispatcher::has_been_set() || log_takes_info()
}

/// Whether the `log` crate's logger takes `INFO` records.
fn log_takes_info() -> bool {
    log::max_level() >= log::LevelFilter::Info
}

/// The response future of [`TraceService`]: the inner future, polled (and dropped) in the
/// request's span and with its trace context as the task's.
#[pin_project(PinnedDrop)]
pub struct TraceFuture<F: Future> {
    /// Drops the inner future as soon as it completes (in `poll`, inside the span), or,
    /// when cut short, in the `PinnedDrop` impl.
    #[pin]
    inner: TraceScope<F>,
    span: Span,
    header: Option<HeaderValue>,
    access: Option<Access>,
}

impl<F, E> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut out = {
            let _entered = this.span.enter();
            // A completed inner future is dropped in there, while the span is entered:
            // `drop` need not enter the span a second time.
            std::task::ready!(this.inner.poll(cx))
        };
        match &mut out {
            Ok(response) => {
                if let Some(id) = this.header.take() {
                    response.headers_mut().insert(X_TRACE_ID, id);
                }
                if let Some(access) = this.access.take() {
                    // The request is served: the span is the access line's now (a gRPC body
                    // still streaming keeps it open), not cloned.
                    access.finish(std::mem::replace(this.span, Span::none()), response);
                }
            }
            Err(_) => {
                if let Some(access) = this.access.take() {
                    access.unanswered(this.span, StatusCode::INTERNAL_SERVER_ERROR);
                }
            }
        }
        Poll::Ready(out)
    }
}

/// A request cut short (the client went away, a timeout) drops its handler's future inside
/// the span, so what its `Drop` code logs still carries the trace id, and still gets its
/// access line. (A completed request's was dropped in `poll` already: no second enter.)
#[pinned_drop]
impl<F: Future> PinnedDrop for TraceFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if this.inner.is_running() {
            let _entered = this.span.enter();
            this.inner.cancel();
        }
        if let Some(access) = this.access.take() {
            access.unanswered(this.span, CLIENT_CLOSED_REQUEST);
        }
    }
}

/// The status an access line gives a request dropped before its response (nginx's "client
/// closed request"): the client went away, or shutdown cut the request off.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

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

/// An id (`N` bytes) as `2N` lowercase hex digits, on the stack.
struct Hex<const N: usize> {
    digits: [[u8; 2]; N],
}

impl<const N: usize> Hex<N> {
    fn of(id: &[u8; N]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [[0u8; 2]; N];
        for (pair, b) in digits.iter_mut().zip(id) {
            *pair = [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]];
        }
        Hex { digits }
    }

    fn as_bytes(&self) -> &[u8] {
        self.digits.as_flattened()
    }

    /// The digits as text (validated: only for the span, whose values are evaluated only
    /// when it is enabled).
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hex() {
        let ctx = TraceContext::from_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        )
        .unwrap();
        assert_eq!(
            Hex::of(&ctx.trace_id.0).as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(Hex::of(&ctx.span_id.0).as_str(), ctx.span_id.to_string());
    }

    /// A handler's future that logs when it is dropped: it finishes at once, or never.
    struct LogsOnDrop {
        finishes: bool,
    }

    impl Future for LogsOnDrop {
        type Output = Result<Response<Body>, std::convert::Infallible>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            if self.finishes {
                Poll::Ready(Ok(Response::new(Body::empty())))
            } else {
                Poll::Pending
            }
        }
    }

    impl Drop for LogsOnDrop {
        fn drop(&mut self) {
            tracing::info!("handler dropped");
        }
    }

    /// The lines logged when a request whose handler `finishes` (or not) is polled once and
    /// then dropped.
    fn drop_lines(finishes: bool) -> Vec<String> {
        let buf = crate::observe::log::Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let inner = tower::service_fn(move |_req: Request<Body>| LogsOnDrop { finishes });
                let mut svc = TraceLayer::new(true).layer(inner);
                let req = Request::builder()
                    .header(
                        TRACEPARENT,
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    )
                    .body(Body::empty())
                    .unwrap();
                let mut fut = std::pin::pin!(svc.call(req));
                let waker = std::task::Waker::noop();
                let polled = fut.as_mut().poll(&mut Context::from_waker(waker));
                assert_eq!(polled.is_ready(), finishes);
            });
        });
        buf.text().lines().map(str::to_owned).collect()
    }

    /// The handler (one that `finishes`, or not) is dropped exactly once, inside the span.
    /// and the request gets one access line with `status`.
    fn assert_dropped_once_inside_the_span(finishes: bool, status: &str) {
        let lines = drop_lines(finishes);
        let dropped: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("handler dropped"))
            .collect();
        assert_eq!(dropped.len(), 1, "{lines:?}");
        assert!(
            dropped[0].contains("4bf92f3577b34da6a3ce929d0e0e4736"),
            "{lines:?}"
        );
        let access: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("truss::access"))
            .collect();
        assert_eq!(access.len(), 1, "{lines:?}");
        assert!(
            access[0].contains(&format!(" status={status} ")),
            "{lines:?}"
        );
        assert!(
            access[0].contains("4bf92f3577b34da6a3ce929d0e0e4736"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_handler_cut_short_is_dropped_inside_the_request_span_and_logged_as_499() {
        assert_dropped_once_inside_the_span(false, "499");
    }

    #[test]
    fn a_request_served_in_one_poll_enters_its_span_once() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tracing_subscriber::layer::SubscriberExt;

        struct CountEnters(Arc<AtomicUsize>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountEnters {
            fn on_enter(
                &self,
                _: &tracing::span::Id,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let enters = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(CountEnters(enters.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let inner = tower::service_fn(|_req: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
            });
            let mut svc = TraceLayer::new(false).layer(inner);
            let mut fut = Box::pin(svc.call(Request::new(Body::empty())));
            let waker = std::task::Waker::noop();
            assert!(
                fut.as_mut()
                    .poll(&mut Context::from_waker(waker))
                    .is_ready()
            );
            drop(fut);
        });
        assert_eq!(enters.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_finished_handler_is_dropped_once_inside_the_request_span() {
        assert_dropped_once_inside_the_span(true, "200");
    }
}
