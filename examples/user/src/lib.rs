//! The `user` example service: users over HTTP/JSON and gRPC.
//!
//! Layers, each depending only on the ones below it:
//!
//! ```text
//! transport   (gRPC + HTTP/JSON from one #[truss::grpc] impl; wire <-> domain)
//!   service   (use cases: create, get, list with paging, update, delete)
//!     repository (UserRepository trait; SqlUsers behind CachedUsers; InMemoryUsers)
//!       domain   (User, NewUser, UserPatch, UserError, validation rules)
//! ```
//!
//! Reads are public; writes need a token with `users:write`, which `POST /v1/login` issues
//! for the demo users (password `demo`).
//!
//! ```text
//! POST   /v1/login            {"email":"ada@example.com","password":"demo"}
//! POST   /v1/users            {"name":"Ada","email":"ada@example.com"}
//! GET    /v1/users/{id}
//! GET    /v1/users?page_size=10&page_token=...
//! PATCH  /v1/users/{id}       {"name":"Ada L."}
//! DELETE /v1/users/{id}
//! gRPC   user.v1.Users/{CreateUser,GetUser,ListUsers,UpdateUser,DeleteUser}
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use truss::config::duration::HumanDuration;
use truss::config::{ConfigLoader, Section, ValidationError};
use truss::{App, AppError, Config};

pub mod domain;
pub mod login;
pub mod repository;
pub mod service;
pub mod transport;

/// Generated gRPC types for `proto/user.proto`.
pub mod pb {
    tonic::include_proto!("user.v1");
    // serde in the proto3 JSON mapping, by pbjson-build.
    include!(concat!(env!("OUT_DIR"), "/user.v1.serde.rs"));

    /// The encoded `FileDescriptorSet` of `proto/user.proto` (written by `build.rs`), served
    /// through gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/user_descriptor.bin"));
}

use domain::NewUser;
use repository::{CachedUsers, SqlUsers, UserRepository};
use service::UserService;
use transport::UsersApi;
use truss::redis::{Cache, Redis};
use truss::sql::Database;

/// The embedded defaults: `user.toml`. A file given with `--config` and `TRUSS_*` variables
/// override them.
pub const DEFAULTS: &str = include_str!("../user.toml");

/// The `[app]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserConfig {
    /// Create three demo users (ids 1, 2, 3) when the table is empty. Default `true`.
    pub seed_demo_users: bool,
    /// Delay added to every read, to try timeouts downstream. Default `0s`.
    pub read_delay: HumanDuration,
}

impl Default for UserConfig {
    fn default() -> Self {
        Self {
            seed_demo_users: true,
            read_delay: HumanDuration(Duration::ZERO),
        }
    }
}

impl Section for UserConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.read_delay.0 > Duration::from_secs(60) {
            return Err(ValidationError::new("read_delay", "must be at most 60s"));
        }
        Ok(())
    }
}

/// The demo users every instance starts with.
pub const DEMO_USERS: [(&str, &str); 3] = [
    ("Ada Lovelace", "ada@example.com"),
    ("Grace Hopper", "grace@example.com"),
    ("Alan Turing", "alan@example.com"),
];

/// The app, ready to `run` or `start`: its database connected and migrated (a SQLite file
/// in `database.data_dir` unless `database.url` names another), the demo users seeded into
/// an empty table, and reads by id behind a Redis cache when `redis.url` is set.
pub async fn app(config: &Config<UserConfig>) -> Result<truss::AppBuilder, AppError> {
    let db = Database::connect(&config.database, "user")
        .await
        .map_err(startup)?;
    if config.database.migrate {
        db.migrate(&repository::migrator(db.backend()))
            .await
            .map_err(startup)?;
    }
    let repo = SqlUsers::new(db.clone());
    if config.app.seed_demo_users {
        seed(&repo).await;
    }
    let redis = match &config.redis.url {
        Some(_) => Some(
            Redis::connect(&config.redis)
                .await
                .map_err(|e| AppError::Dependency {
                    name: "redis",
                    message: e.to_string(),
                })?,
        ),
        None => None,
    };
    let cache = redis
        .clone()
        .map(|redis| Cache::new(redis, "user", &config.redis.cache));
    let repo = CachedUsers::new(repo, cache);
    let service = Arc::new(UserService::new(repo, config.app.read_delay.0));
    let api = Arc::new(UsersApi::new(service));
    let mut http = api.clone().http_routes();
    if let Some(token) = &config.auth.token {
        let issuer = truss::auth::TokenIssuer::new(token, "user")?;
        http = http.merge(truss::routes![login::login].with_state(Arc::new(issuer)));
    }
    let app = App::builder("user")
        .version(env!("CARGO_PKG_VERSION"))
        // `/openapi.json` lists the routes declared in this crate only (tests link several).
        .openapi_crate(env!("CARGO_CRATE_NAME"))
        .config(config)
        .http(http)
        .grpc(pb::users_server::UsersServer::from_arc(api))
        .file_descriptor_set(pb::FILE_DESCRIPTOR_SET);
    if config.database.required {
        db.readiness(&app.health());
    }
    if let Some(redis) = &redis {
        redis.readiness(&app.health());
    }
    Ok(app)
}

/// The demo users, into an empty table (two instances starting at once may both try: the
/// unique email keeps one copy).
async fn seed(repo: &SqlUsers) {
    match repo.count().await {
        Ok(0) => {}
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not count users; not seeding");
            return;
        }
    }
    for (name, email) in DEMO_USERS {
        let new = NewUser {
            name: name.to_owned(),
            email: email.to_owned(),
        };
        match repo.insert(new).await {
            Ok(_) | Err(domain::UserError::EmailTaken { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "could not seed a demo user"),
        }
    }
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
        .load::<UserConfig>()?;
    app(&config).await?.run().await
}
