//! The `order` example service: placing an order checks the user with the `user` service
//! over gRPC, found through discovery (`[registry.static]` or etcd), with a deadline,
//! budgeted retries and a circuit breaker on that client. When the user service is down or
//! slow the caller gets a clear 503 / 504 and nothing is written.
//!
//! ```text
//! transport   (gRPC + HTTP/JSON from one #[truss::grpc] impl)
//!   service   (create: check user, then store; get)
//!     repository (OrderRepository; InMemoryOrders)   users (UserDirectory; GrpcUsers)
//!       domain   (Order, NewOrder, OrderError)
//! ```
//!
//! ```text
//! POST /v1/orders       {"user_id":1,"item":"tea","quantity":2}
//! GET  /v1/orders/{id}
//! gRPC order.v1.Orders/{CreateOrder,GetOrder}
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use truss::client::{ClientConfig, grpc_client};
use truss::config::duration::HumanDuration;
use truss::config::{ConfigLoader, Section, ValidationError};
use truss::{App, AppError, Config};

pub mod domain;
pub mod repository;
pub mod service;
pub mod transport;
pub mod users;

/// Generated gRPC types for `proto/order.proto`.
pub mod pb {
    tonic::include_proto!("order.v1");
    // serde in the proto3 JSON mapping, by pbjson-build.
    include!(concat!(env!("OUT_DIR"), "/order.v1.serde.rs"));

    /// The encoded `FileDescriptorSet` of `proto/order.proto` (written by `build.rs`), served
    /// through gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/order_descriptor.bin"));
}

/// The user service's client, generated from its published `user.proto`.
pub mod userpb {
    tonic::include_proto!("user.v1");
}

use repository::SqlOrders;
use service::OrderService;
use transport::OrdersApi;
use truss::sql::Database;
use users::GrpcUsers;

/// The embedded defaults: `order.toml`.
pub const DEFAULTS: &str = include_str!("../order.toml");

/// The `[app]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderConfig {
    /// The name the user service registers under. Default `user`.
    pub user_service: String,
    /// Longest a user check may take. Default `1s`.
    pub user_timeout: HumanDuration,
}

impl Default for OrderConfig {
    fn default() -> Self {
        Self {
            user_service: "user".to_owned(),
            user_timeout: HumanDuration(Duration::from_secs(1)),
        }
    }
}

impl Section for OrderConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.user_service.trim().is_empty() {
            return Err(ValidationError::new("user_service", "must not be empty"));
        }
        if self.user_timeout.0.is_zero() {
            return Err(ValidationError::new("user_timeout", "must be more than 0"));
        }
        Ok(())
    }
}

/// The app, ready to `run` or `start`: its database connected and migrated (a SQLite file
/// in `database.data_dir` unless `database.url` names another).
pub async fn app(config: &Config<OrderConfig>) -> Result<truss::AppBuilder, AppError> {
    let db = Database::connect(&config.database, "order")
        .await
        .map_err(startup)?;
    if config.database.migrate {
        db.migrate(&repository::migrator(db.backend()))
            .await
            .map_err(startup)?;
    }
    let discovery = truss::registry::discovery_from(&config.registry);
    let instances = discovery.watch(&config.app.user_service);
    #[cfg_attr(not(feature = "auth"), allow(unused_mut))]
    let mut client = ClientConfig::from_config(config);
    // Calls to `user` carry the caller's token: `user` sees who asked.
    #[cfg(feature = "auth")]
    {
        client.auth = truss::auth::ClientAuth::Forward;
    }
    let channel = grpc_client(&config.app.user_service, instances, &client)?;
    let users = GrpcUsers::new(channel, config.app.user_timeout.0);
    let service = Arc::new(OrderService::new(SqlOrders::new(db.clone()), users));
    let api = Arc::new(OrdersApi::new(service));
    let app = App::builder("order")
        .version(env!("CARGO_PKG_VERSION"))
        // `/openapi.json` lists the routes declared in this crate only (tests link several).
        .openapi_crate(env!("CARGO_CRATE_NAME"))
        .config(config)
        .http(api.clone().http_routes())
        .grpc(pb::orders_server::OrdersServer::from_arc(api))
        .file_descriptor_set(pb::FILE_DESCRIPTOR_SET);
    if config.database.required {
        db.readiness(&app.health());
    }
    Ok(app)
}

fn startup(e: truss::sql::SqlError) -> AppError {
    AppError::Dependency {
        name: "database",
        message: e.to_string(),
    }
}

/// Loads the config (embedded defaults < `--config` file < `TRUSS_*`) and serves until
/// SIGTERM / Ctrl-C.
pub async fn main() -> Result<(), AppError> {
    let config = ConfigLoader::new()
        .defaults(DEFAULTS)
        .load::<OrderConfig>()?;
    app(&config).await?.run().await
}
