use std::fmt;
use std::net::SocketAddr;

use crate::config::{ConfigError, ValidationError};
use crate::transport::server::BindError;

/// Why an app could not start or run.
pub enum AppError {
    /// Configuration could not be loaded.
    Config(ConfigError),
    /// A listener could not be bound.
    Bind {
        /// `http`, `grpc` or `admin`.
        listener: &'static str,
        /// The address it tried.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    Signal(std::io::Error),
    /// A dependency the app needs before it can serve failed at start (its database's
    /// migrations, say).
    Dependency {
        /// Which one: `database`, ...
        name: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A declared HTTP route cannot be described in the OpenAPI document (see
    /// [`openapi`](crate::openapi)).
    OpenApi(crate::openapi::OpenApiError),
    /// The app's own task failed (a bug in truss).
    Internal(String),
}

impl From<ConfigError> for AppError {
    fn from(e: ConfigError) -> Self {
        AppError::Config(e)
    }
}

/// A value checked in code (a client built from config sections, say) that is not usable.
impl From<ValidationError> for AppError {
    fn from(e: ValidationError) -> Self {
        AppError::Config(ConfigError::one(e.field, "the service's code", e.message))
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Config(e) => e.fmt(f),
            AppError::Bind {
                listener,
                addr,
                source,
            } => write!(f, "cannot bind the {listener} listener on {addr}: {source}"),
            AppError::Signal(e) => write!(f, "cannot install signal handlers: {e}"),
            AppError::Dependency { name, message } => write!(f, "{name}: {message}"),
            AppError::OpenApi(e) => e.fmt(f),
            AppError::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

/// Shows the message, so `fn main() -> Result<(), AppError>` prints something readable.
impl fmt::Debug for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AppError::Config(e) => Some(e),
            AppError::Bind { source, .. } | AppError::Signal(source) => Some(source),
            AppError::OpenApi(e) => Some(e),
            AppError::Dependency { .. } | AppError::Internal(_) => None,
        }
    }
}

impl From<BindError> for AppError {
    fn from(e: BindError) -> Self {
        AppError::Bind {
            listener: e.listener,
            addr: e.addr,
            source: e.source,
        }
    }
}
