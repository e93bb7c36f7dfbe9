//! The HTTP ↔ gRPC code table (see the module docs of [`crate::error`]).

use tonic::Code;

/// The gRPC code for an HTTP-style code.
///
/// ```
/// assert_eq!(truss::error::http_to_grpc(404), tonic::Code::NotFound);
/// assert_eq!(truss::error::http_to_grpc(418), tonic::Code::Unknown);
/// ```
pub fn http_to_grpc(code: u16) -> Code {
    match code {
        200..=299 => Code::Ok,
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        500 => Code::Internal,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

/// The HTTP-style code for a gRPC code.
///
/// ```
/// assert_eq!(truss::error::grpc_to_http(tonic::Code::AlreadyExists), 409);
/// ```
pub fn grpc_to_http(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unauthenticated => 401,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_http_code_comes_back() {
        for code in [400, 401, 403, 404, 409, 429, 499, 500, 501, 503, 504] {
            assert_eq!(grpc_to_http(http_to_grpc(code)), code, "{code}");
        }
    }
}
