use http::{HeaderMap, StatusCode};

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
        let Some(code) = headers.get("grpc-status") else {
            return false;
        };
        matches!(code.as_bytes(), b"14" | b"4" | b"13" | b"15" | b"12" | b"8")
    }
}
