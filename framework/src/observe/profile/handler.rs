//! The two HTTP handlers and how their errors look to a client.

use axum::extract::RawQuery;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message as _;

use super::encode::to_profile;
use super::flame;
use super::params::Params;
use super::session::{self, ProfileError};

/// `GET /debug/pprof/profile?seconds=N&frequency=F`: a CPU profile, pprof protobuf.
pub(super) async fn profile(RawQuery(query): RawQuery) -> Response {
    let report = match take(query.as_deref()).await {
        Ok(report) => report,
        Err(response) => return response,
    };
    match blocking(move || Ok(to_profile(&report).encode_to_vec())).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile.pb\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

/// `GET /debug/pprof/flamegraph?seconds=N&frequency=F`: the same profile as an SVG.
pub(super) async fn flamegraph(RawQuery(query): RawQuery) -> Response {
    let report = match take(query.as_deref()).await {
        Ok(report) => report,
        Err(response) => return response,
    };
    match blocking(move || flame::svg(&report)).await {
        Ok(body) => ([(header::CONTENT_TYPE, "image/svg+xml")], body).into_response(),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, &message),
    }
}

/// Checks the query and takes the profile; a ready error response otherwise.
async fn take(query: Option<&str>) -> Result<pprof::Report, Response> {
    let params = Params::parse(query).map_err(|m| error(StatusCode::BAD_REQUEST, &m))?;
    session::record(params).await.map_err(|e| match e {
        ProfileError::Busy => error(
            StatusCode::CONFLICT,
            "a CPU profile is already being taken in this process (the profiler is \
             process-global); retry when it has finished",
        ),
        ProfileError::Failed(m) => error(StatusCode::INTERNAL_SERVER_ERROR, &m),
    })
}

/// Runs CPU-bound encoding on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("encoding the profile did not finish: {e}"))?
}

/// A plain-text error. `X-Go-Pprof: 1` makes `go tool pprof` print the body rather than only
/// the status line.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response();
    response
        .headers_mut()
        .insert("x-go-pprof", HeaderValue::from_static("1"));
    response
}
