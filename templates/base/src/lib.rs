//! The `{{name}}` service.
//!
//! ```text
{{#if grpc}}
//! api         gRPC + HTTP/JSON (#[truss::grpc] with #[http] routes)
{{else}}
//! handler     HTTP routes (#[truss::route]): decode, validate, call, encode
{{/if}}
//!   service   the use cases
//!     repository   storage behind a trait: SQL, with the schema in migrations/
//! ```

use std::sync::Arc;

use serde::Deserialize;
use truss::config::{Section, ValidationError};
use truss::sql::{Database, SqlError};
use truss::{App, AppBuilder, AppError, Config};

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
    // serde in the proto3 JSON mapping, by pbjson-build.
    include!(concat!(env!("OUT_DIR"), "/{{name_snake}}.v1.serde.rs"));

    /// The encoded `FileDescriptorSet` of `proto/{{name_snake}}.proto` (written by
    /// `build.rs`), served through gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/{{name_snake}}_descriptor.bin"));
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

/// The app, ready to `run` (or `start`, in tests), its database connected and migrated
/// first: `[database]` in `config.toml`, a SQLite file in `data_dir` unless `url` names a
/// PostgreSQL server.
pub async fn app(config: &Config<AppConfig>) -> Result<AppBuilder, AppError> {
    // Connections open lazily: a database that is down at start makes calls fail with 503
    // (and `/readyz` say not ready) instead of stopping the process.
    let db = Database::connect(&config.database, "{{name}}")
        .await
        .map_err(database)?;
    // Before the service turns ready, so it only ever serves the current schema
    // (`[database] migrate = false` skips it).
    db.migrate(&repository::migrator(db.backend()))
        .await
        .map_err(database)?;
    let service = Arc::new(service::ItemService::new(
        repository::SqlItems::new(db.clone()),
        config.app.max_name_len,
    ));
{{#if grpc}}
    let api = Arc::new(api::Api::new(service));
{{/if}}
    let app = App::builder("{{name}}")
        .version(env!("CARGO_PKG_VERSION"))
        // `/openapi.json` lists the routes declared in this crate only (tests link several).
        .openapi_crate(env!("CARGO_CRATE_NAME"))
        .config(config)
{{#if grpc}}
        .http(api.clone().http_routes())
        .grpc(pb::{{name_snake}}_server::{{Name}}Server::from_arc(api))
        // Reflection (`[grpc] reflection`): grpcurl & co. list and describe the service.
        .file_descriptor_set(pb::FILE_DESCRIPTOR_SET);
{{else}}
        .http(handler::routes(service));
{{/if}}
    // `/readyz` includes a `database` check, pinged every `health_interval` (`[database]
    // required = false` leaves it out).
    db.readiness(&app.health());
    Ok(app)
}

/// A database that cannot be set up at start (a bad `[database]` config, a failed
/// migration) stops the process with this error.
fn database(e: SqlError) -> AppError {
    AppError::Dependency {
        name: "database",
        message: e.to_string(),
    }
}
