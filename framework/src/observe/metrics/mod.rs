//! Prometheus metrics: the recorder every `metrics` call in truss (and in your code) reports
//! to, the `/metrics` endpoint on the admin listener, and the server request metrics layer.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `truss_server_requests_total` | counter | `transport` (`http`/`grpc`), `route`, `code` |
//! | `truss_server_request_duration_seconds` | histogram | `transport`, `route` |
//! | `truss_server_requests_in_flight` | gauge | `transport` |
//! | `truss_client_requests_total` | counter | `transport` (`http`/`grpc`/`sql`/`redis`), `target`, `operation`, `code` ([`ClientMetricsLayer`]) |
//! | `truss_client_request_duration_seconds` | histogram | `transport`, `target`, `operation` |
//! | `truss_sql_pool_connections` | gauge | `pool`, `state` (`in_use`/`idle`) (feature `sql`) |
//! | `truss_sql_pool_waiting` | gauge | `pool`: calls waiting for a connection |
//! | `truss_cache_requests_total` | counter | `cache`, `result` (`hit_l1`/`hit`/`negative_hit`/`miss`/`bypass`) (feature `redis`) |
//! | `truss_cache_loads_total` | counter | `cache`, `result` (`ok`/`error`): loader calls |
//! | `truss_admission_total` | counter | `layer`, `route`, `decision` |
//! | `truss_ratelimit_decisions_total` | counter | `rule` (`global` or route), `backend` (`redis`/`local_fallback`), `decision`: rate limits kept in Redis (feature `redis`) |
//! | `truss_breaker_*`, `truss_retry_decisions_total`, `truss_deadline_exceeded_total` | | see [`resilience`](crate::resilience) |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds` | | |
//!
//! `route` is the route template or gRPC method, never the raw path; requests no route
//! matched share `unmatched`. `code` is the HTTP status, or for gRPC the `grpc-status` sent in
//! the response head (`0` when the status only comes in trailers, as it does for successful
//! calls). Histograms use fixed buckets, so their memory does not grow with traffic; the
//! exporter's upkeep runs every few seconds to drain its sample buffers.

mod client;
mod layer;
mod process;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub(crate) use client::Operation as ClientOperation;
pub use client::{ClientMetrics, ClientMetricsFuture, ClientMetricsLayer};
pub use layer::{MetricsLayer, MetricsService};

/// Latency buckets, in seconds: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the global `metrics` recorder (once per process) and
/// returns its handle. If another global recorder was installed first, the handle renders
/// only what reaches it, which is nothing: truss logs a warning.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = builder
                .set_buckets(LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a global metrics recorder was already installed: /metrics will be empty"
                );
            }
            process::describe();
            describe();
            handle
        })
        .clone()
}

/// Renders the metrics in the Prometheus text format, process metrics refreshed first.
pub fn render(handle: &PrometheusHandle) -> String {
    process::refresh();
    handle.render()
}

/// Runs the exporter's upkeep every `every` until the returned task is aborted.
pub(crate) fn spawn_upkeep(
    handle: PrometheusHandle,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            handle.run_upkeep();
        }
    })
}

/// Help text for every metric truss emits (promtool and Grafana want it).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    client::describe();
    describe_gauge!(
        "truss_sql_pool_connections",
        "Connections of a SQL pool, by pool (primary, replica-N) and state (in_use, idle)."
    );
    describe_gauge!(
        "truss_sql_pool_waiting",
        "Calls waiting for a connection from a SQL pool, by pool."
    );
    describe_counter!(
        "truss_cache_requests_total",
        "Cache lookups, by cache and where the answer came from (hit_l1, hit, negative_hit, miss, bypass)."
    );
    describe_counter!(
        "truss_cache_loads_total",
        "Loader calls of a cache on a miss, by cache and result (ok, error)."
    );
    describe_counter!(
        "truss_client_ejections_total",
        "Client endpoints taken out of balancing because they refused a connection."
    );
    describe_counter!(
        "truss_admission_total",
        "Admission decisions, by layer (inflight, ratelimit, shed), route and decision."
    );
    describe_counter!(
        "truss_ratelimit_decisions_total",
        "Decisions of rate limits kept in Redis, by rule, the backend that decided (redis, local_fallback) and decision."
    );
    describe_counter!(
        "truss_breaker_requests_total",
        "Circuit breaker decisions (admitted, rejected), by breaker."
    );
    describe_counter!(
        "truss_breaker_outcomes_total",
        "Outcomes (success, failure) of calls a circuit breaker let through."
    );
    describe_gauge!(
        "truss_breaker_drop_ratio",
        "Current rejection probability of an adaptive breaker."
    );
    describe_gauge!(
        "truss_breaker_state",
        "State of a state-machine breaker: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        "truss_breaker_transitions_total",
        "State changes of state-machine breakers, by target state."
    );
    describe_counter!(
        "truss_retry_decisions_total",
        "Retry decisions for failed calls, by target and decision."
    );
    describe_counter!(
        "truss_deadline_exceeded_total",
        "Requests (server) and calls (client) that ran out of deadline."
    );
    describe_gauge!(
        "truss_registry_registered",
        "1 while this instance is registered in the registry, else 0."
    );
    describe_gauge!(
        "truss_registry_endpoints",
        "Instances discovery currently knows, by target service."
    );
    describe_counter!(
        "truss_auth_total",
        "Authentication decisions (ok, public, missing, expired, invalid, forbidden, unavailable), by route."
    );
    describe_counter!(
        "truss_auth_jwks_refresh_total",
        "JWKS fetches, by trigger (scheduled, unknown_kid) and result (ok, error)."
    );
    describe_gauge!(
        "truss_cpu_usage_ratio",
        Unit::Percent,
        "Smoothed CPU usage of the container's quota, 0 to 1, as the load shedder sees it."
    );
}
