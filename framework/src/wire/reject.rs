use std::time::Duration;

use axum::body::Body;
use axum::response::IntoResponse;
use http::{HeaderValue, Response, StatusCode, header};

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
