use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use metrics::{Counter, Gauge, Histogram};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::labels::{BoundedMap, FirstLabel};
use crate::wire::{Completion, GuardedFuture};
use crate::wire::{Transport, grpc_status, route_label};

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
    route: String,
    duration: Histogram,
    codes: RwLock<HashMap<u16, Counter>>,
}

impl RouteMeters {
    fn count(&self, code: u16) {
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
            .or_insert_with(|| {
                metrics::counter!(
                    "truss_server_requests_total",
                    "transport" => self.transport.as_str(),
                    "route" => self.route.clone(),
                    "code" => code.to_string()
                )
            })
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

    fn route(&self, label: &str) -> Arc<RouteMeters> {
        let transport = self.shared.transport;
        let make = |label: &str| {
            Arc::new(RouteMeters {
                transport,
                route: label.to_owned(),
                duration: metrics::histogram!(
                    "truss_server_request_duration_seconds",
                    "transport" => transport.as_str(),
                    "route" => label.to_owned()
                ),
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
        let code = match grpc_status(response.headers()) {
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
        let meters = self.meters.get_or(label, || self.layer.route(label));
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
