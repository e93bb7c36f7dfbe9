use std::time::Duration;

use axum::body::Body;
use axum::response::IntoResponse;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

/// Whether a request or response is gRPC, by its content type (so a rejection must be a
/// gRPC status).
#[inline]
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A rejection in the caller's protocol, in the error model of [`crate::Error`]: on HTTP the
/// JSON error body with `reason`, on gRPC the status's code (from the HTTP↔gRPC table) with an
/// `ErrorInfo` carrying it.
pub(crate) fn reject(
    grpc: bool,
    status: StatusCode,
    reason: &'static str,
    message: &'static str,
    retry_after: Option<Duration>,
) -> Response<Body> {
    let error = crate::Error::new(status.as_u16(), reason, message);
    let mut response = if grpc {
        let (parts, ()) = error.to_status().into_http::<()>().into_parts();
        Response::from_parts(parts, Body::empty())
    } else {
        error.into_response()
    };
    if let Some(wait) = retry_after {
        // Whole seconds, rounded up: "retry now" would only be rejected again.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}
