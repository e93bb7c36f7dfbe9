//! A governed SQL pool (feature `sql`): SQLite by default, PostgreSQL one key away.
//!
//! [`Database`] wraps sqlx's `AnyPool`. Every call made through it gets what every truss
//! client gets:
//!
//! * **the request's deadline** ([`Deadline::current`](crate::resilience::deadline::Deadline::current)):
//!   the wait for a connection and the statement are bounded by it, and the statement also
//!   by `statement_timeout`; past it the call fails with [`SqlError::DeadlineExceeded`]
//!   (504). On PostgreSQL the server's own `statement_timeout` is set from the remaining
//!   budget for the call, so the server cancels the query itself; a connection cut off
//!   mid-statement is closed, never returned to the pool. (SQLite has no server: the caller
//!   gets its answer on time and the connection is dropped, but SQLite finishes the
//!   statement on its worker thread.)
//! * **a breaker per pool** (`[database.breaker]`): connection failures, pool timeouts and
//!   deadlines count against it; constraint violations and missing rows do not. While it is
//!   open, calls fail at once with [`SqlError::Unavailable`] (503).
//! * **metrics**: `truss_client_requests_total{transport="sql",target="database",operation,code}`
//!   (`code` is `ok` or [`SqlError::kind`]), `truss_client_request_duration_seconds`, and
//!   the pool's saturation: `truss_sql_pool_connections{pool,state="in_use"|"idle"}` and
//!   `truss_sql_pool_waiting{pool}`.
//! * **a `db` span** with `db.system` (`sqlite`, `postgresql`) and `db.operation`.
//!
//! Wiring it into an app: connect, migrate before the app starts (so the service turns
//! ready on the current schema), keep `/readyz` honest, hand clones to the handlers.
//!
//! ```no_run
//! use axum::{Router, extract::State, routing::get};
//! use sqlx::migrate::Migrator;
//! use truss::sql::{Database, SqlError};
//! use truss::{App, AppError, Config};
//!
//! async fn count(State(db): State<Database>) -> Result<String, truss::Error> {
//!     let n: i64 = db
//!         .read("count_users", async |conn| {
//!             sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut *conn).await
//!         })
//!         .await?;
//!     Ok(n.to_string())
//! }
//!
//! # async fn demo(migrator: Migrator) -> Result<(), Box<dyn std::error::Error>> {
//! let config: Config = Config::load()?;
//! let db = Database::connect(&config.database, "user").await?; // lazy: never fails on a down DB
//! db.migrate(&migrator).await?;                               // when [database] migrate = true
//! let app = App::builder("user").config(&config);
//! db.readiness(&app.health());                                // when [database] required = true
//! app.http(Router::new().route("/users/count", get(count)).with_state(db))
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! sqlx's API stays usable inside the closures (`sqlx::query(...).bind(x).fetch_one(&mut
//! *conn)`), and ungoverned through [`Database::pool`].

// Without the feature, only the config is here: the links above have nothing to point to.
#![cfg_attr(not(feature = "sql"), allow(rustdoc::broken_intra_doc_links))]

mod config;

pub use config::DatabaseConfig;

#[cfg(feature = "sql")]
mod database;
#[cfg(feature = "sql")]
mod error;
#[cfg(feature = "sql")]
mod migrations;
#[cfg(feature = "sql")]
mod operation;
#[cfg(feature = "sql")]
mod pool;
#[cfg(feature = "sql")]
mod readiness;

#[cfg(feature = "sql")]
pub use database::{Backend, Database};
#[cfg(feature = "sql")]
pub use error::SqlError;
#[cfg(feature = "sql")]
pub use migrations::embedded_migrator;
#[cfg(feature = "sql")]
pub use operation::operation_of;
#[cfg(feature = "sql")]
pub use readiness::CHECK;
/// sqlx, the version truss is built with: `truss::sql::sqlx::query(...)` needs no
/// dependency of your own.
#[cfg(feature = "sql")]
pub use sqlx;
