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
//!   ([`AdmissionConfig`](crate::resilience::AdmissionConfig)), `timeout`
//!   ([`TimeoutConfig`](crate::resilience::deadline::TimeoutConfig)), `breaker`
//!   ([`BreakerConfig`](crate::resilience::breaker::BreakerConfig)), `retry`
//!   ([`RetryConfig`](crate::resilience::retry::RetryConfig)), `trace`
//!   ([`TraceConfig`](crate::observe::otel::TraceConfig)), `registry`
//!   ([`RegistryConfig`](crate::registry::RegistryConfig)), `reload`
//!   ([`ReloadConfig`](crate::reload::ReloadConfig)) and `app`. The list lives in one
//!   place, `config/framework.rs`.
//! * **Strict**: an unknown key anywhere is an error, so a typo never passes silently. Every
//!   error names the key path and where the value came from.
//! * **Validation**: every section implements [`Section`]; so does the team's.
//! * **Live**: a running app reloads the config when its file changes, on SIGHUP and from
//!   an etcd source; [`Config::live_app`] gives the team's section as a [`Live`] handle. See
//!   [`reload`](crate::reload).
//!
//! ```
//! use serde::Deserialize;
//! use truss::config::{Config, ConfigLoader, Section, ValidationError};
//!
//! #[derive(Debug, Default, Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! struct Hello {
//!     greeting: String,
//! }
//!
//! impl Section for Hello {
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

pub use crate::section::duration;
mod error;
mod framework;
mod live;
mod loader;
pub(crate) mod origin;
mod sections;

pub use crate::section::{Section, ValidationError};
pub use error::ConfigError;
pub use framework::Config;
pub(crate) use framework::{ReadSection, SECTIONS};
pub use live::Live;
pub use loader::ConfigLoader;
#[cfg(feature = "etcd")]
pub(crate) use loader::insert as insert_path;
pub(crate) use loader::push_key;
pub use origin::ConfigOrigin;
pub use sections::{
    AdminConfig, GrpcConfig, HttpConfig, LogConfig, LogFormat, NoAppConfig, ShutdownConfig,
};

use serde::de::DeserializeOwned;

impl<T: DeserializeOwned + Section + Send + Sync + 'static> Config<T> {
    /// Loads from the process's command line (`--config`) and environment (`TRUSS_*`).
    ///
    /// Shorthand for `ConfigLoader::new().load()`.
    pub fn load() -> Result<Self, ConfigError> {
        ConfigLoader::new().load()
    }
}
