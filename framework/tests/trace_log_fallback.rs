//! With no `tracing` subscriber ever set, the trace layer's span and access line go to the
//! `log` crate's logger (`tracing`'s `log` fallback, which sqlx turns on in apps) when it
//! takes `INFO`, and are not made when it does not; the trace itself works either way.
//!
//! One test in its own binary: the logger and "no dispatcher yet" are process-wide.

use std::convert::Infallible;
use std::sync::Mutex;

use axum::body::Body;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};
use truss::observe::trace::{TraceContext, TraceLayer};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Every record the logger took: target and text.
static RECORDS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = (record.target().to_owned(), record.args().to_string());
        RECORDS.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

/// Serves one request with a caller's `traceparent`: the `x-trace-id` it answered with and
/// the trace id its handler saw.
async fn serve_one() -> (String, String) {
    let handler = tower::service_fn(|_req: Request<Body>| async {
        let seen = TraceContext::current()
            .map(|t| t.trace_id_hex())
            .unwrap_or_default();
        Ok::<_, Infallible>(Response::new(Body::from(seen)))
    });
    let request = Request::builder()
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .body(Body::empty())
        .unwrap();
    let mut service = TraceLayer::new(true).layer(handler);
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let header = response.headers()["x-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    (header, String::from_utf8(body.to_bytes().to_vec()).unwrap())
}

#[tokio::test]
async fn without_a_subscriber_lines_go_to_log_only_when_it_takes_them() {
    assert!(!tracing::dispatcher::has_been_set());
    log::set_logger(&Capture).unwrap();

    log::set_max_level(log::LevelFilter::Info);
    assert_eq!(
        serve_one().await,
        (TRACE_ID.to_owned(), TRACE_ID.to_owned())
    );
    let records = std::mem::take(&mut *RECORDS.lock().unwrap());
    assert!(
        records
            .iter()
            .any(|(target, text)| target == "truss::access" && text.contains("status=200")),
        "{records:?}"
    );
    assert!(
        records.iter().any(|(_, text)| text.contains(TRACE_ID)),
        "the span's fields reach the logger: {records:?}"
    );

    log::set_max_level(log::LevelFilter::Warn);
    assert_eq!(
        serve_one().await,
        (TRACE_ID.to_owned(), TRACE_ID.to_owned())
    );
    let records = RECORDS.lock().unwrap().clone();
    assert!(records.is_empty(), "{records:?}");
}
