use http::{HeaderMap, StatusCode};

use crate::wire::grpc_status;

/// Decides whether a response counts as a failure for a breaker.
pub trait Classify: Send + Sync + 'static {
    /// `true` when the response (status and headers) is a failure.
    fn is_failure(&self, status: StatusCode, headers: &HeaderMap) -> bool;

    /// [`is_failure`](Self::is_failure) for a plain HTTP response of an HTTP route (an axum
    /// route template, not a gRPC method, and a content type other than gRPC), which the
    /// server breaker knows from the route and the response: [`DefaultClassifier`] does not
    /// look for a `grpc-status` there. By default the same as `is_failure`.
    fn is_http_failure(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        self.is_failure(status, headers)
    }
}

/// HTTP 5xx, and the gRPC statuses that say the server (not the request) is in trouble:
/// `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `DATA_LOSS`, `UNIMPLEMENTED`,
/// `RESOURCE_EXHAUSTED`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl Classify for DefaultClassifier {
    #[inline]
    fn is_http_failure(&self, status: StatusCode, _: &HeaderMap) -> bool {
        status.is_server_error()
    }

    fn is_failure(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        if status.is_server_error() {
            return true;
        }
        use tonic::Code;
        matches!(
            grpc_status(headers),
            Some(
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Internal
                    | Code::DataLoss
                    | Code::Unimplemented
                    | Code::ResourceExhausted
            )
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_status_fails_a_grpc_response_only() {
        let mut unavailable = HeaderMap::new();
        unavailable.insert(crate::wire::headers::GRPC_STATUS, "14".parse().unwrap());
        let c = DefaultClassifier;
        assert!(c.is_failure(StatusCode::OK, &unavailable));
        assert!(!c.is_http_failure(StatusCode::OK, &unavailable));
        assert!(c.is_http_failure(StatusCode::BAD_GATEWAY, &HeaderMap::new()));
        assert!(!c.is_failure(StatusCode::NOT_FOUND, &HeaderMap::new()));
    }
}
