use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use metrics::{Counter, Gauge, Histogram};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::labels::{BoundedMap, FirstLabel};
use crate::wire::headers::is_grpc_response;
use crate::wire::{Completion, GuardedFuture};
use crate::wire::{Transport, grpc_status, is_http_route, route_label};

/// Counts and times every request of one listener (rejections by inner layers included).
/// Clones share state.
#[derive(Clone)]
pub struct MetricsLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("transport", &self.shared.transport)
            .finish()
    }
}

struct Shared {
    transport: Transport,
    in_flight: Gauge,
    routes: BoundedMap<Arc<RouteMeters>>,
}

struct RouteMeters {
    transport: Transport,
    /// Whether these are an HTTP route's meters, whose responses are read for a
    /// `grpc-status` only when their content type is gRPC (see `is_grpc_response`).
    http: bool,
    route: String,
    duration: Histogram,
    /// The first code counted, the one a route answers nearly always: counted without a
    /// lock or a lookup.
    first: OnceLock<(u16, Counter)>,
    codes: RwLock<HashMap<u16, Counter>>,
}

impl RouteMeters {
    #[inline]
    fn count(&self, code: u16) {
        let (first, counter) = self.first.get_or_init(|| (code, self.counter(code)));
        if *first == code {
            counter.increment(1);
        } else {
            self.count_other(code);
        }
    }

    fn counter(&self, code: u16) -> Counter {
        metrics::counter!(
            "truss_server_requests_total",
            "transport" => self.transport.as_str(),
            "route" => self.route.clone(),
            "code" => code.to_string()
        )
    }

    fn count_other(&self, code: u16) {
        if let Some(c) = self
            .codes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&code)
        {
            return c.increment(1);
        }
        let mut codes = self.codes.write().unwrap_or_else(PoisonError::into_inner);
        codes
            .entry(code)
            .or_insert_with(|| self.counter(code))
            .increment(1);
    }
}

impl MetricsLayer {
    /// Metrics for a listener serving `transport` (`http` or `grpc`).
    pub fn new(transport: Transport) -> Self {
        metrics::describe_counter!(
            "truss_server_requests_total",
            "Requests served, by transport, route and status code."
        );
        metrics::describe_histogram!(
            "truss_server_request_duration_seconds",
            metrics::Unit::Seconds,
            "Time to the response head, by transport and route."
        );
        metrics::describe_gauge!("truss_server_requests_in_flight", "Requests being served.");
        Self {
            shared: Arc::new(Shared {
                transport,
                in_flight: metrics::gauge!("truss_server_requests_in_flight", "transport" => transport.as_str()),
                routes: BoundedMap::default(),
            }),
        }
    }

    /// The meters of `label`; `http`: it is an HTTP route's (see [`is_http_route`]).
    fn route(&self, label: &str, http: bool) -> Arc<RouteMeters> {
        let transport = self.shared.transport;
        let make = |label: &str| {
            Arc::new(RouteMeters {
                transport,
                // `other` is shared by labels past the bound, gRPC methods among them.
                http: http && transport != Transport::Grpc && label != "other",
                route: label.to_owned(),
                duration: metrics::histogram!(
                    "truss_server_request_duration_seconds",
                    "transport" => transport.as_str(),
                    "route" => label.to_owned()
                ),
                first: OnceLock::new(),
                codes: RwLock::new(HashMap::new()),
            })
        };
        self.shared.routes.with(label, make, Arc::clone)
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            layer: self.clone(),
            meters: FirstLabel::default(),
        }
    }
}

/// The service built by [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    layer: MetricsLayer,
    /// This route's meters, resolved on its first request.
    meters: FirstLabel<Arc<RouteMeters>>,
}

/// One request being measured.
pub struct Observation {
    meters: Arc<RouteMeters>,
    in_flight: Gauge,
    start: Instant,
    done: bool,
}

impl Completion for Observation {
    fn completed(&mut self, response: &Response<Body>) {
        let headers = response.headers();
        let grpc = is_grpc_response(self.meters.http, headers).then(|| grpc_status(headers));
        let code = match grpc.flatten() {
            Some(code) => code as u16,
            None if self.meters.transport == Transport::Grpc && response.status().is_success() => 0,
            None => response.status().as_u16(),
        };
        self.meters.count(code);
        self.meters
            .duration
            .record(self.start.elapsed().as_secs_f64());
        self.done = true;
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        self.in_flight.decrement(1.0);
        if !self.done {
            // The caller went away before the response: nginx's 499, "client closed request".
            self.meters.count(499);
        }
    }
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = GuardedFuture<S::Future, Observation>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let label = route_label(&req);
        let meters = self
            .meters
            .get_or(label, || self.layer.route(label, is_http_route(&req)));
        let in_flight = self.layer.shared.in_flight.clone();
        in_flight.increment(1.0);
        let observation = Observation {
            meters,
            in_flight,
            start: Instant::now(),
            done: false,
        };
        GuardedFuture::admitted(self.inner.call(req), observation)
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use http::StatusCode;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tower::ServiceExt;

    use super::*;

    /// `truss_server_requests_total` by (route, code).
    fn counts(recorder: &DebuggingRecorder) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for (key, _, _, value) in recorder.snapshotter().snapshot().into_vec() {
            let key = key.key();
            if key.name() != "truss_server_requests_total" {
                continue;
            }
            let label = |name: &str| {
                key.labels()
                    .find(|l| l.key() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            if let DebugValue::Counter(n) = value {
                out.push((label("route"), label("code"), n));
            }
        }
        out.sort();
        out
    }

    fn app() -> Router {
        let grpc = tower::service_fn(|_: Request<Body>| async {
            let response = Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "14")
                .body(Body::empty())
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        });
        Router::new()
            .route(
                "/users/{id}",
                get(
                    |axum::extract::Path(id): axum::extract::Path<String>| async move {
                        if id == "missing" {
                            StatusCode::NOT_FOUND
                        } else {
                            StatusCode::OK
                        }
                    },
                ),
            )
            // An HTTP route whose response happens to carry the header: counted by its status.
            .route(
                "/says-grpc",
                get(|| async { ([("grpc-status", "14")], "") }),
            )
            .route_service("/pkg.Svc/{*rest}", grpc)
            // An HTTP route answering in gRPC (a proxy, a layer answering a gRPC caller).
            .route_service("/proxy/{name}", grpc)
            .layer(MetricsLayer::new(Transport::Http))
            // As the app's gRPC stack does: `/pkg.Svc/{*rest}` is a tonic mount.
            .layer(crate::wire::GrpcRoutesLayer::new())
    }

    #[test]
    fn every_code_is_counted_the_first_one_and_the_others_and_grpc_status_only_on_grpc_routes() {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let app = app();
                for path in [
                    "/users/1",
                    "/users/missing",
                    "/users/2",
                    "/users/missing",
                    "/users/3",
                    "/says-grpc",
                    "/pkg.Svc/Get",
                    "/proxy/x",
                ] {
                    let req = Request::get(path).body(Body::empty()).unwrap();
                    app.clone().oneshot(req).await.unwrap();
                }
            });
        });
        let expected = [
            ("/pkg.Svc/Get", "14", 1),
            ("/proxy/{name}", "14", 1),
            ("/says-grpc", "200", 1),
            ("/users/{id}", "200", 3),
            ("/users/{id}", "404", 2),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(r, c, n)| (r.to_string(), c.to_string(), *n))
            .collect();
        assert_eq!(counts(&recorder), expected);
    }
}
