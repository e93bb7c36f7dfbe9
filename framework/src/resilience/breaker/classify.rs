use http::{HeaderMap, StatusCode};

use crate::wire::grpc_status;

/// Decides whether a response counts as a failure for a breaker.
pub trait Classify: Send + Sync + 'static {
    /// `true` when the response (status and headers) is a failure.
    fn is_failure(&self, status: StatusCode, headers: &HeaderMap) -> bool;
}

/// HTTP 5xx, and the gRPC statuses that say the server (not the request) is in trouble:
/// `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `DATA_LOSS`, `UNIMPLEMENTED`,
/// `RESOURCE_EXHAUSTED`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl Classify for DefaultClassifier {
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
