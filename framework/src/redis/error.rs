use std::fmt;

use ::redis::{ErrorKind, ServerErrorKind};

/// Why a governed Redis call failed, in three kinds a caller can act on; `?` turns it into
/// an [`Error`](struct@crate::Error) with the right status.
///
/// | kind | [`crate::Error`](struct@crate::Error) | breaker |
/// | --- | --- | --- |
/// | `Unavailable` (breaker open, connection refused or lost, server loading, read-only replica) | 503 `REDIS_UNAVAILABLE` | failure (a breaker rejection is not recorded) |
/// | `DeadlineExceeded` (request deadline, `command_timeout` or the call's budget) | 504 `DEADLINE_EXCEEDED` | failure, unless the request's deadline ended the call first (not recorded) |
/// | `Command` (an error reply such as `WRONGTYPE`, a reply of the wrong type, a bad config) | 500 `REDIS_ERROR` | success: Redis answered |
///
/// The message sent to callers never holds Redis's own text; `Display` does, for logs.
///
/// ```
/// use truss::redis::RedisError;
///
/// let err = truss::Error::from(RedisError::Unavailable("connection refused".into()));
/// assert_eq!(err.code(), 503);
/// assert!(err.is("REDIS_UNAVAILABLE"));
/// assert_eq!(truss::Error::from(RedisError::DeadlineExceeded).code(), 504);
/// assert_eq!(truss::Error::from(RedisError::Command("WRONGTYPE".into())).code(), 500);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    /// Redis cannot be used now: the breaker is open, the connection was refused or lost,
    /// or the server cannot serve (loading, read-only). The string says which, for logs.
    Unavailable(String),
    /// The request's deadline, `command_timeout` or the call's own budget passed first.
    DeadlineExceeded,
    /// Redis answered with an error (`WRONGTYPE …`), or the reply did not convert to the
    /// type asked for; also an invalid url or config at connect. For logs only.
    Command(String),
}

impl RedisError {
    /// The kind as a metric label: `unavailable`, `deadline_exceeded` or `command`.
    pub fn kind(&self) -> &'static str {
        match self {
            RedisError::Unavailable(_) => "unavailable",
            RedisError::DeadlineExceeded => "deadline_exceeded",
            RedisError::Command(_) => "command",
        }
    }

    /// Whether Redis answered: a `Command` error is a success for the breaker.
    pub fn redis_answered(&self) -> bool {
        matches!(self, RedisError::Command(_))
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Unavailable(why) => write!(f, "redis unavailable: {why}"),
            RedisError::DeadlineExceeded => f.write_str("redis call exceeded its deadline"),
            RedisError::Command(message) => write!(f, "redis error: {message}"),
        }
    }
}

impl std::error::Error for RedisError {}

impl From<RedisError> for crate::Error {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Unavailable(_) => {
                crate::Error::unavailable("REDIS_UNAVAILABLE", "redis is unavailable")
            }
            RedisError::DeadlineExceeded => crate::Error::deadline_exceeded(
                "DEADLINE_EXCEEDED",
                "the redis call exceeded the deadline",
            ),
            RedisError::Command(_) => crate::Error::internal("REDIS_ERROR", "redis error"),
        }
    }
}

impl From<::redis::RedisError> for RedisError {
    fn from(e: ::redis::RedisError) -> Self {
        if e.is_timeout() {
            // The client's own response timeout (set to `command_timeout`).
            return RedisError::DeadlineExceeded;
        }
        match e.kind() {
            ErrorKind::Io
            | ErrorKind::AuthenticationFailed
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ReadOnly,
            ) => RedisError::Unavailable(e.to_string()),
            _ => RedisError::Command(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_statuses_without_leaking_messages() {
        for (e, code) in [
            (RedisError::Unavailable("10.0.0.7:6379 refused".into()), 503),
            (RedisError::DeadlineExceeded, 504),
            (RedisError::Command("WRONGTYPE secret".into()), 500),
        ] {
            let err = crate::Error::from(e.clone());
            assert_eq!(err.code(), code, "{e}");
            assert!(!err.message().contains("secret") && !err.message().contains("10.0.0.7"));
        }
        assert!(RedisError::Command(String::new()).redis_answered());
        assert!(!RedisError::DeadlineExceeded.redis_answered());
    }

    #[test]
    fn driver_errors_are_classified() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            RedisError::from(::redis::RedisError::from(refused)).kind(),
            "unavailable"
        );
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(
            RedisError::from(::redis::RedisError::from(timed_out)),
            RedisError::DeadlineExceeded
        );
        let reply = ::redis::RedisError::from((ErrorKind::UnexpectedReturnType, "not a number"));
        assert_eq!(RedisError::from(reply).kind(), "command");
    }
}
