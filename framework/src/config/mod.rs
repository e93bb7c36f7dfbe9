//! Typed configuration: defaults < a file < environment variables.
//!
//! A config file holds the framework's sections (`[http]`, `[grpc]`, `[admin]`, `[shutdown]`,
//! `[log]`) and the team's own section `[app]`, typed by the team:
//!
//! ```toml
//! [http]
//! addr = "0.0.0.0:8080"
//!
//! [shutdown]
//! grace = "5s"
//!
//! [app]
//! greeting = "Hello"
//! ```
//!
//! * **File**: TOML, YAML or JSON by extension (`.toml`, `.yaml`/`.yml`, `.json`); its path
//!   comes from `--config <path>` (or `--config=<path>`) on the command line, else from the
//!   `TRUSS_CONFIG` environment variable. No file is read when neither is given; a file that is
//!   named but missing is an error.
//! * **Environment**: `TRUSS_` followed by the key path, `__` between levels:
//!   `TRUSS_HTTP__ADDR=0.0.0.0:80`, `TRUSS_APP__GREETING=Hi`. The prefix is set with
//!   [`ConfigLoader::env_prefix`].
//! * **Sections**: `http`, `grpc`, `admin`, `shutdown`, `log`, `admission`
//!   ([`AdmissionConfig`]), `timeout` ([`TimeoutConfig`]), `breaker` ([`BreakerConfig`]),
//!   `retry` ([`RetryConfig`]), `trace` ([`TraceConfig`]),
//!   `registry` ([`RegistryConfig`]) and `app`.
//! * **Strict**: an unknown key anywhere is an error, so a typo never passes silently. Every
//!   error names the key path and where the value came from.
//! * **Validation**: the team's section implements [`Validate`].
//!
//! ```
//! use serde::Deserialize;
//! use truss::config::{Config, ConfigLoader, Validate, ValidationError};
//!
//! #[derive(Debug, Default, Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct Hello {
//!     greeting: String,
//! }
//!
//! impl Validate for Hello {
//!     fn validate(&self) -> Result<(), ValidationError> {
//!         if self.greeting.is_empty() {
//!             return Err(ValidationError::new("greeting", "must not be empty"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let config: Config<Hello> = ConfigLoader::new()
//!     .args(["hello"])                                   // no --config
//!     .env_vars([("TRUSS_APP__GREETING", "Hi")])          // instead of the process env
//!     .load()
//!     .unwrap();
//! assert_eq!(config.app.greeting, "Hi");
//! assert_eq!(config.admin.addr.to_string(), "127.0.0.1:9091");
//! ```

pub mod duration;
mod error;
mod loader;
mod sections;

pub use error::{ConfigError, ValidationError};
pub use loader::ConfigLoader;
pub use sections::{
    AdminConfig, GrpcConfig, HttpConfig, LogConfig, LogFormat, NoAppConfig, ShutdownConfig,
};

use serde::de::DeserializeOwned;

use crate::observe::otel::TraceConfig;
use crate::registry::RegistryConfig;
use crate::resilience::AdmissionConfig;
use crate::resilience::breaker::BreakerConfig;
use crate::resilience::deadline::TimeoutConfig;
use crate::resilience::retry::RetryConfig;

/// The whole configuration of a truss app: the framework's sections and the team's `app`.
#[derive(Debug, Clone, Default)]
pub struct Config<T = NoAppConfig> {
    /// `[http]`
    pub http: HttpConfig,
    /// `[grpc]`
    pub grpc: GrpcConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[shutdown]`
    pub shutdown: ShutdownConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[admission]`: in-flight limit, rate limits, load shedding.
    pub admission: AdmissionConfig,
    /// `[timeout]`: request timeouts and deadline propagation.
    pub timeout: TimeoutConfig,
    /// `[breaker]`: circuit breakers.
    pub breaker: BreakerConfig,
    /// `[retry]`: client retries.
    pub retry: RetryConfig,
    /// `[trace]`: trace export.
    pub trace: TraceConfig,
    /// `[registry]`: registration and discovery.
    pub registry: RegistryConfig,
    /// `[app]`: the team's own section.
    pub app: T,
}

impl<T: DeserializeOwned + Validate> Config<T> {
    /// Loads from the process's command line (`--config`) and environment (`TRUSS_*`).
    ///
    /// Shorthand for `ConfigLoader::new().load()`.
    pub fn load() -> Result<Self, ConfigError> {
        ConfigLoader::new().load()
    }
}

/// Checks a config section after it has been decoded.
///
/// Return a [`ValidationError`] naming the field (relative to the section); the loader adds
/// the section and the source the value came from.
pub trait Validate {
    /// Returns `Ok(())` when the section is usable.
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

impl Validate for NoAppConfig {}

impl<T> Config<T> {
    /// Checks the framework sections, naming the failing key. The loader runs this (naming
    /// each value's source); the app runs it again at start for configs built in code.
    pub fn check_framework(&self) -> Result<(), ValidationError> {
        let within = |section: &str, e: ValidationError| {
            ValidationError::new(format!("{section}.{}", e.field), e.message)
        };
        self.admission
            .validate()
            .map_err(|e| within("admission", e))?;
        self.timeout.check().map_err(|e| within("timeout", e))?;
        self.breaker.check().map_err(|e| within("breaker", e))?;
        self.retry.check().map_err(|e| within("retry", e))?;
        self.trace.check().map_err(|e| within("trace", e))?;
        self.registry.check().map_err(|e| within("registry", e))
    }
}
