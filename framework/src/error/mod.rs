//! One error model for HTTP and gRPC.
//!
//! An [`Error`](struct@Error) is an HTTP-style status code, a machine-readable `reason` (`USER_NOT_FOUND`),
//! a human message and string metadata. Returned from an axum handler it becomes a JSON body;
//! returned from a tonic method it becomes a `Status` whose details carry a
//! `google.rpc.ErrorInfo` with the reason and metadata. Both convert back on the client side,
//! so a downstream error can be matched by reason and re-raised.
//!
//! ```
//! use truss::Error;
//!
//! let err = Error::not_found("USER_NOT_FOUND", "user 7 not found").with_metadata("id", "7");
//!
//! // Over gRPC: NOT_FOUND with the reason in the details, and back again.
//! let status = tonic::Status::from(err.clone());
//! assert_eq!(status.code(), tonic::Code::NotFound);
//! let back = Error::from(status);
//! assert!(back.is("USER_NOT_FOUND"));
//! assert_eq!(back.metadata()["id"], "7");
//! assert_eq!(back, err);
//! ```
//!
//! Usually a team declares its errors as an enum with
//! [`#[derive(truss::Error)]`](macro@crate::Error) instead of building them by hand.
//!
//! # The mapping
//!
//! | HTTP | gRPC                 | back to HTTP |
//! |------|----------------------|--------------|
//! | 400  | `INVALID_ARGUMENT`   | 400 |
//! | 401  | `UNAUTHENTICATED`    | 401 |
//! | 403  | `PERMISSION_DENIED`  | 403 |
//! | 404  | `NOT_FOUND`          | 404 |
//! | 409  | `ABORTED`            | 409 |
//! | 429  | `RESOURCE_EXHAUSTED` | 429 |
//! | 499  | `CANCELLED`          | 499 |
//! | 500  | `INTERNAL`           | 500 |
//! | 501  | `UNIMPLEMENTED`      | 501 |
//! | 503  | `UNAVAILABLE`        | 503 |
//! | 504  | `DEADLINE_EXCEEDED`  | 504 |
//! | other| `UNKNOWN`            | 500 |
//!
//! gRPC codes without a row of their own map to HTTP as `ALREADY_EXISTS` → 409,
//! `FAILED_PRECONDITION` and `OUT_OF_RANGE` → 400, `DATA_LOSS` and `UNKNOWN` → 500, `OK` → 200
//! (the same table as Kratos).
//!
//! # On the wire
//!
//! HTTP: the status line carries the code and the body is
//! `{"code":404,"reason":"USER_NOT_FOUND","message":"user 7 not found","metadata":{"id":"7"}}`
//! with `content-type: application/json`. gRPC: the status code from the table, the message,
//! and `grpc-status-details-bin` holding an `ErrorInfo { reason, domain: "truss", metadata }`;
//! a validation failure adds a `BadRequest` with one field violation per failing field.

mod codes;
mod http;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use tonic_types::{ErrorDetails, StatusExt};

pub use codes::{grpc_to_http, http_to_grpc};

use crate::validate::FieldErrors;

/// The reason of a request that failed validation; its metadata maps each field to what is
/// wrong with it.
pub const VALIDATION_FAILED: &str = "VALIDATION_FAILED";

/// The `ErrorInfo.domain` truss puts on the errors it sends.
pub const DOMAIN: &str = "truss";

/// An error with an HTTP-style code, a machine-readable reason, a message and metadata.
///
/// See the [module docs](self) for the wire format and the code mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: u16,
    reason: String,
    message: String,
    metadata: BTreeMap<String, String>,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident = $code:literal;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(reason: impl Into<String>, message: impl Into<String>) -> Self {
                Self::new($code, reason, message)
            }
        )*
    };
}

impl Error {
    /// An error with any code. A code outside 100–599 is sent as 500.
    pub fn new(code: u16, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            metadata: BTreeMap::new(),
        }
    }

    constructors! {
        /// 400 / `INVALID_ARGUMENT`.
        bad_request = 400;
        /// 401 / `UNAUTHENTICATED`.
        unauthorized = 401;
        /// 403 / `PERMISSION_DENIED`.
        forbidden = 403;
        /// 404 / `NOT_FOUND`.
        not_found = 404;
        /// 409 / `ABORTED`.
        conflict = 409;
        /// 429 / `RESOURCE_EXHAUSTED`.
        too_many_requests = 429;
        /// 500 / `INTERNAL`.
        internal = 500;
        /// 503 / `UNAVAILABLE`.
        unavailable = 503;
        /// 504 / `DEADLINE_EXCEEDED`.
        deadline_exceeded = 504;
    }

    /// 400 / `INVALID_ARGUMENT` with reason [`VALIDATION_FAILED`], one metadata entry per
    /// failing field.
    ///
    /// ```
    /// use truss::validate::FieldErrors;
    ///
    /// let mut fields = FieldErrors::new();
    /// fields.add("email", "must contain @");
    /// let err = truss::Error::invalid(fields);
    /// assert_eq!(err.code(), 400);
    /// assert_eq!(err.metadata()["email"], "must contain @");
    /// assert_eq!(err.message(), "invalid request: email must contain @");
    /// ```
    pub fn invalid(fields: FieldErrors) -> Self {
        let message = format!("invalid request: {fields}");
        Self {
            code: 400,
            reason: VALIDATION_FAILED.to_owned(),
            message,
            metadata: fields.into_map(),
        }
    }

    /// Adds a metadata entry.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The HTTP-style code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The HTTP status sent: the code, or 500 when it is not a valid status.
    pub fn http_status(&self) -> ::http::StatusCode {
        match ::http::StatusCode::from_u16(self.code) {
            Ok(s) if (100..600).contains(&self.code) => s,
            _ => ::http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code sent (see the mapping table).
    pub fn grpc_code(&self) -> tonic::Code {
        http_to_grpc(self.code)
    }

    /// The machine-readable reason, e.g. `USER_NOT_FOUND` (empty when the peer sent none).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Whether this error has `reason`.
    pub fn is(&self, reason: &str) -> bool {
        self.reason == reason
    }

    /// The gRPC status for this error, with an `ErrorInfo` (and a `BadRequest` for a
    /// validation failure) in its details.
    pub fn to_status(&self) -> tonic::Status {
        let mut details = ErrorDetails::new();
        if !self.reason.is_empty() || !self.metadata.is_empty() {
            let metadata: HashMap<String, String> = self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            details.set_error_info(self.reason.clone(), DOMAIN, metadata);
        }
        if self.reason == VALIDATION_FAILED {
            for (field, problem) in &self.metadata {
                details.add_bad_request_violation(field.clone(), problem.clone());
            }
        }
        tonic::Status::with_error_details(self.grpc_code(), self.message.clone(), details)
    }

    /// Reads an error back from a gRPC status: the code through the table, reason and
    /// metadata from its `ErrorInfo` when it has one.
    pub fn from_status(status: &tonic::Status) -> Self {
        let mut err = Self::new(grpc_to_http(status.code()), "", status.message());
        if let Some(info) = status.get_details_error_info() {
            err.reason = info.reason;
            err.metadata = info.metadata.into_iter().collect();
        }
        err
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (false, false) => write!(f, "{} ({}): {}", self.reason, self.code, self.message),
            (false, true) => write!(f, "{} ({})", self.reason, self.code),
            (true, _) => write!(f, "error {}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        err.to_status()
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

impl From<FieldErrors> for Error {
    fn from(fields: FieldErrors) -> Self {
        Self::invalid(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_reason_and_metadata() {
        let err =
            Error::conflict("EMAIL_TAKEN", "email a@b.c is taken").with_metadata("email", "a@b.c");
        let status = err.to_status();
        assert_eq!(status.code(), tonic::Code::Aborted);
        assert_eq!(status.message(), "email a@b.c is taken");
        assert_eq!(Error::from_status(&status), err);
    }

    #[test]
    fn plain_status_keeps_code_and_message() {
        let err = Error::from(tonic::Status::unavailable("down"));
        assert_eq!(err.code(), 503);
        assert_eq!(err.reason(), "");
        assert_eq!(err.message(), "down");
    }

    #[test]
    fn validation_failure_carries_field_violations() {
        let mut fields = FieldErrors::new();
        fields.add("name", "must not be empty");
        fields.add("age", "must be at most 150");
        let status = Error::invalid(fields).to_status();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("bad request").field_violations;
        let names: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(names, ["age", "name"]);
    }

    #[test]
    fn invalid_codes_are_sent_as_500() {
        assert_eq!(Error::new(42, "X", "y").http_status(), 500);
        assert_eq!(Error::new(42, "X", "y").grpc_code(), tonic::Code::Unknown);
        assert_eq!(Error::new(418, "X", "y").http_status(), 418);
    }
}
