use std::time::Duration;

use axum::body::Body;
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
/// JSON error body with `reason`, on gRPC the status code with an `ErrorInfo` carrying it.
pub(crate) fn reject(
    grpc: bool,
    status: StatusCode,
    code: tonic::Code,
    reason: &'static str,
    message: &'static str,
    retry_after: Option<Duration>,
) -> Response<Body> {
    let error = crate::Error::new(status.as_u16(), reason, message);
    let mut response = if grpc {
        let mut grpc_status = error.to_status();
        if grpc_status.code() != code {
            grpc_status =
                tonic::Status::with_details(code, message, grpc_status.details().to_vec().into());
        }
        let (parts, ()) = grpc_status.into_http::<()>().into_parts();
        Response::from_parts(parts, Body::empty())
    } else {
        let mut r = Response::new(Body::from(error.to_json()));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
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
