//! The admin router: `/healthz`, `/readyz` and `/metrics`, plus whatever the app adds.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use http::header;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::observe::health::Health;

pub(crate) fn router(health: Health, prometheus: PrometheusHandle) -> Router {
    let metrics = get(move || {
        let prometheus = prometheus.clone();
        async move {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                crate::observe::metrics::render(&prometheus),
            )
        }
    });
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(health)
        .route("/metrics", metrics)
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    let ready = health.is_ready();
    let body = serde_json::json!({
        "ready": ready,
        "checks": health.checks_snapshot(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}
