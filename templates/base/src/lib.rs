//! The `{{name}}` service.
//!
//! ```text
{{#if grpc}}
//! api         gRPC + HTTP/JSON (#[truss::grpc] with #[http] routes)
{{else}}
//! handler     HTTP routes (#[truss::route]): decode, validate, call, encode
{{/if}}
//!   service   the use cases
//!     repository   storage behind a trait (in memory here)
//! ```

use std::sync::Arc;

use serde::Deserialize;
use truss::config::{Section, ValidationError};
use truss::{App, AppBuilder, Config};

{{#if grpc}}
pub mod api;
{{else}}
pub mod handler;
{{/if}}
pub mod repository;
pub mod service;

{{#if grpc}}
/// Generated from `proto/{{name_snake}}.proto`.
pub mod pb {
    tonic::include_proto!("{{name_snake}}.v1");
}

{{/if}}
/// The embedded defaults (`config.toml`).
pub const DEFAULTS: &str = include_str!("../config.toml");

/// The `[app]` section: this service's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Longest item name accepted.
    pub max_name_len: usize,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self { max_name_len: 100 }
    }
}

impl Section for AppConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.max_name_len == 0 {
            return Err(ValidationError::new("max_name_len", "must be at least 1"));
        }
        Ok(())
    }
}

/// The app, ready to `run` (or `start`, in tests).
pub fn app(config: &Config<AppConfig>) -> AppBuilder {
    let service = Arc::new(service::ItemService::new(
        repository::InMemoryItems::default(),
        config.app.max_name_len,
    ));
{{#if grpc}}
    let api = Arc::new(api::Api::new(service));
{{/if}}
    App::builder("{{name}}")
        .version(env!("CARGO_PKG_VERSION"))
        .config(config)
{{#if grpc}}
        .http(api.clone().http_routes())
        .grpc(pb::{{name_snake}}_server::{{Name}}Server::from_arc(api))
{{else}}
        .http(handler::routes(service))
{{/if}}
}
