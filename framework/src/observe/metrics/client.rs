use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use http::{Request, Response};
use metrics::{Counter, Histogram};
use pin_project::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::labels::BoundedMap;
use crate::wire::headers::GRPC_STATUS;
use crate::wire::is_grpc;

/// Counts and times calls to another service:
/// `truss_client_requests_total{transport, target, operation, code}` and
/// `truss_client_request_duration_seconds{transport, target, operation}`.
///
/// `transport` is `grpc` for gRPC calls and `http` for anything else (the SQL pool reports
/// `sql` and the Redis client `redis` to the same metrics). `operation` is the gRPC method path (`/pkg.Service/Method`)
/// for gRPC calls and the HTTP method for anything else (a raw path would make the label set
/// unbounded). `code` is the HTTP status, the `grpc-status` of the response head (`0` when
/// it only comes in trailers), or `error` when the call failed without a response.
///
/// ```
/// use tower::ServiceBuilder;
/// use truss::observe::metrics::ClientMetricsLayer;
///
/// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<http_body_util::Empty<bytes::Bytes>>();
/// let client = ServiceBuilder::new().layer(ClientMetricsLayer::new("user")).service(client);
/// # let _ = client;
/// ```
#[derive(Clone)]
pub struct ClientMetricsLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ClientMetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetricsLayer")
            .field("target", &self.shared.target)
            .finish()
    }
}

struct Shared {
    target: String,
    operations: BoundedMap<Arc<Operation>>,
}

/// The client metric handles of one operation on one target over one transport: what every
/// governed client (HTTP, gRPC, SQL) records its calls with.
pub(crate) struct Operation {
    transport: &'static str,
    target: String,
    name: String,
    duration: Histogram,
    /// `truss_client_requests_total` handles of the codes seen so far: a call then costs a
    /// short scan instead of a registry lookup with four labels (about 4 k instructions).
    codes: RwLock<Vec<(Box<str>, Counter)>>,
}

/// How many codes an operation keeps handles for; calls with further codes (a service
/// answering with many statuses) still count, through the registry.
const KEPT_CODES: usize = 16;

impl Operation {
    /// Handles for `operation` on `target` over `transport` (`http`, `grpc`, `sql`, `redis`).
    pub(crate) fn new(transport: &'static str, target: &str, operation: &str) -> Self {
        Self {
            duration: metrics::histogram!(
                "truss_client_request_duration_seconds",
                "transport" => transport,
                "target" => target.to_owned(),
                "operation" => operation.to_owned()
            ),
            transport,
            target: target.to_owned(),
            name: operation.to_owned(),
            codes: RwLock::new(Vec::new()),
        }
    }

    /// Counts one call that ended with `code`.
    pub(crate) fn count(&self, code: &str) {
        if let Ok(codes) = self.codes.read()
            && let Some((_, counter)) = codes.iter().find(|(kept, _)| **kept == *code)
        {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(
            "truss_client_requests_total",
            "transport" => self.transport,
            "target" => self.target.clone(),
            "operation" => self.name.clone(),
            "code" => code.to_owned()
        );
        counter.increment(1);
        if let Ok(mut codes) = self.codes.write()
            && codes.len() < KEPT_CODES
            && !codes.iter().any(|(kept, _)| **kept == *code)
        {
            codes.push((code.into(), counter));
        }
    }

    /// Records how long one call took.
    pub(crate) fn time(&self, elapsed: std::time::Duration) {
        self.duration.record(elapsed.as_secs_f64());
    }
}

impl ClientMetricsLayer {
    /// Metrics for calls to `target` (a service name).
    pub fn new(target: impl Into<String>) -> Self {
        describe();
        Self {
            shared: Arc::new(Shared {
                target: target.into(),
                operations: BoundedMap::default(),
            }),
        }
    }

    fn operation<B>(&self, req: &Request<B>) -> Arc<Operation> {
        // gRPC names start with `/`, HTTP methods never do: the name alone is a unique key.
        let (transport, name) = if is_grpc(req.headers()) {
            ("grpc", req.uri().path())
        } else {
            ("http", req.method().as_str())
        };
        let make = |name: &str| Arc::new(Operation::new(transport, &self.shared.target, name));
        self.shared.operations.with(name, make, Arc::clone)
    }
}

impl<S> Layer<S> for ClientMetricsLayer {
    type Service = ClientMetrics<S>;

    fn layer(&self, inner: S) -> ClientMetrics<S> {
        ClientMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`ClientMetricsLayer`].
#[derive(Clone, Debug)]
pub struct ClientMetrics<S> {
    inner: S,
    layer: ClientMetricsLayer,
}

impl<S, B, R> Service<Request<B>> for ClientMetrics<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = ClientMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let op = self.layer.operation(&req);
        ClientMetricsFuture {
            inner: self.inner.call(req),
            op,
            start: Instant::now(),
        }
    }
}

/// The response future of [`ClientMetrics`].
#[pin_project]
pub struct ClientMetricsFuture<F> {
    #[pin]
    inner: F,
    op: Arc<Operation>,
    start: Instant,
}

impl<F, R, E> Future for ClientMetricsFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        this.op.time(this.start.elapsed());
        match &out {
            Ok(resp) => {
                let grpc = resp.headers().get(GRPC_STATUS);
                let status = resp.status();
                let code = match grpc.map(|v| v.as_bytes()) {
                    Some(code) => grpc_code_label(code),
                    None if is_grpc(resp.headers()) => "0",
                    None => status.as_str(),
                };
                this.op.count(code);
            }
            Err(_) => this.op.count("error"),
        }
        Poll::Ready(out)
    }
}

/// Help text of the client metrics (promtool wants it for every metric).
pub(crate) fn describe() {
    metrics::describe_counter!(
        "truss_client_requests_total",
        "Calls to other services and databases, by transport, target, operation and status code."
    );
    metrics::describe_histogram!(
        "truss_client_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to the response head (databases: to the result) of calls, by transport, target and operation."
    );
}

/// The `code` label of a `grpc-status` value from the remote: one of the 17 codes, or
/// `other` for anything else, so a misbehaving server cannot grow the label set.
fn grpc_code_label(value: &[u8]) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .and_then(|n| CODES.get(n).copied())
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::grpc_code_label;

    #[test]
    fn grpc_codes_are_a_bounded_label() {
        assert_eq!(grpc_code_label(b"0"), "0");
        assert_eq!(grpc_code_label(b"14"), "14");
        assert_eq!(grpc_code_label(b"16"), "16");
        for odd in [
            &b"17"[..],
            b"-1",
            b"abc",
            b"",
            b"\xff",
            b"99999999999999999999999",
        ] {
            assert_eq!(grpc_code_label(odd), "other");
        }
    }
}
