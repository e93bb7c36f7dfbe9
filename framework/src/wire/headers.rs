//! The header names truss reads and writes, and the two questions every layer asks of them.
//!
//! ```
//! use http::HeaderMap;
//! use truss::wire::{grpc_status, headers};
//!
//! let mut h = HeaderMap::new();
//! h.insert(headers::GRPC_STATUS, "14".parse().unwrap());
//! assert_eq!(grpc_status(&h), Some(tonic::Code::Unavailable));
//! ```

use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderName};

/// `grpc-status`: the status code of a gRPC response (head or trailers).
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-timeout`: the caller's remaining budget (`250m` = 250 ms).
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// `traceparent`: the W3C trace context.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`: vendor trace state, passed on as received.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `x-trace-id`: the request's trace id, set on every response.
pub const X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");
/// `truss-not-sent`: metadata of a client-side `tonic::Status` for a call a local layer
/// refused before sending it (an open client breaker, no instance to send it to): the retry
/// layer does not retry it and the client breaker does not count it.
pub const TRUSS_NOT_SENT: &str = "truss-not-sent";

/// `status`, marked [`TRUSS_NOT_SENT`] with `why` (`breaker-open`, `no-instance`).
pub(crate) fn not_sent(mut status: tonic::Status, why: &'static str) -> tonic::Status {
    status.metadata_mut().insert(
        TRUSS_NOT_SENT,
        tonic::metadata::MetadataValue::from_static(why),
    );
    status
}

/// Whether `status` is a call a local layer refused before sending it ([`not_sent`]).
pub(crate) fn is_not_sent(status: &tonic::Status) -> bool {
    status.metadata().contains_key(TRUSS_NOT_SENT)
}

/// The `grpc-status` in `headers`, when there is one and it is a number. Unknown numbers
/// become [`tonic::Code::Unknown`], as tonic reads them.
#[inline]
pub fn grpc_status(headers: &HeaderMap) -> Option<tonic::Code> {
    let value = headers.get(GRPC_STATUS)?.as_bytes();
    let code = std::str::from_utf8(value).ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from_i32(code))
}

/// Whether a request or response is gRPC, by its content type (so a rejection must be a
/// gRPC status).
#[inline]
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Whether a response may carry a `grpc-status` worth reading: any response of a route that
/// is not an HTTP one, and on an HTTP route one whose content type says gRPC (a gRPC caller
/// answered in gRPC form by a layer, a proxied call).
#[inline]
pub(crate) fn is_grpc_response(http_route: bool, headers: &HeaderMap) -> bool {
    !http_route || is_grpc(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_status(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(GRPC_STATUS, http::HeaderValue::from_bytes(value).unwrap());
        h
    }

    #[test]
    fn grpc_status_reads_numbers_only() {
        assert_eq!(grpc_status(&with_status(b"0")), Some(tonic::Code::Ok));
        assert_eq!(
            grpc_status(&with_status(b"4")),
            Some(tonic::Code::DeadlineExceeded)
        );
        assert_eq!(grpc_status(&with_status(b"99")), Some(tonic::Code::Unknown));
        assert_eq!(grpc_status(&with_status(b"x")), None);
        assert_eq!(grpc_status(&HeaderMap::new()), None);
    }

    #[test]
    fn grpc_by_content_type() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(CONTENT_TYPE, "application/grpc+proto".parse().unwrap());
        assert!(is_grpc(&h));
    }
}
