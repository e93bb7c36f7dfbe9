use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe};
use tokio::time::Instant;
use tracing::Instrument;

use super::SqlError;
use super::config::{DatabaseConfig, is_postgres};
use super::pool::{Lease, Pool};
use crate::labels::BoundedMap;
use crate::observe::metrics::ClientOperation;
use crate::resilience::deadline::Deadline;
use crate::section::Section;

/// The longest the `RESET statement_timeout` after a PostgreSQL call may take before the
/// connection is dropped instead of returned to the pool.
const RESET_TIMEOUT: Duration = Duration::from_secs(1);

/// Which database a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (bundled), a file in `data_dir` by default.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The OpenTelemetry `db.system` name: `sqlite` or `postgresql`.
    pub fn system(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// A governed pool of database connections: every call through [`run`](Self::run),
/// [`read`](Self::read) or [`transaction`](Self::transaction) runs under the request's
/// deadline, behind the pool's breaker, counted in `truss_client_*` and traced as a `db`
/// span. Cheap to clone; clones share the pools.
///
/// ```no_run
/// # async fn demo() -> Result<(), truss::sql::SqlError> {
/// use truss::sql::{Database, DatabaseConfig};
///
/// let db = Database::connect(&DatabaseConfig::default(), "user").await?; // data/user.db
/// let name: String = db
///     .read("get_user", async |conn| {
///         sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
///             .bind(7_i64)
///             .fetch_one(&mut *conn)
///             .await
///     })
///     .await?; // SqlError::NotFound when there is no such user
/// # let _ = name; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Database {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.inner.backend)
            .field("replicas", &self.inner.replicas.len())
            .finish_non_exhaustive()
    }
}

pub(super) struct Inner {
    backend: Backend,
    primary: Pool,
    replicas: Vec<Pool>,
    next_replica: AtomicUsize,
    statement_timeout: Duration,
    pub(super) config: DatabaseConfig,
    operations: BoundedMap<Arc<ClientOperation>>,
}

/// Where a governed call goes.
#[derive(Clone, Copy)]
enum Route {
    Primary,
    Read,
}

impl Database {
    /// Builds the pools for `config`: PostgreSQL at `url`, or the SQLite file
    /// `{data_dir}/{service}.db` (the directory and file are created when missing).
    ///
    /// Connections are opened lazily, so a database that is down at start degrades calls to
    /// `SqlError::Unavailable` (503) rather than failing the process; an invalid config or a
    /// malformed url is an error here. Installs sqlx's `Any` drivers once per process
    /// (`sqlx::any::install_default_drivers`).
    pub async fn connect(config: &DatabaseConfig, service: &str) -> Result<Database, SqlError> {
        config
            .validate()
            .map_err(|e| SqlError::Query(format!("invalid [database] config: {e}")))?;
        sqlx::any::install_default_drivers();
        // Metrics recorded before the app installs the recorder would be lost.
        let _ = crate::observe::metrics::install();
        let url = match &config.url {
            Some(url) => url.clone(),
            None => sqlite_file(&config.data_dir, service).await?,
        };
        let backend = if is_postgres(&url) {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let primary = Pool::new(lazy_pool(&url, config)?, "primary", config);
        let replicas = (config.replicas.iter().enumerate())
            .map(|(i, url)| {
                Ok(Pool::new(
                    lazy_pool(url, config)?,
                    &format!("replica-{}", i + 1),
                    config,
                ))
            })
            .collect::<Result<Vec<_>, SqlError>>()?;
        primary.update_gauges();
        Ok(Database {
            inner: Arc::new(Inner {
                backend,
                primary,
                replicas,
                next_replica: AtomicUsize::new(0),
                statement_timeout: config.statement_timeout,
                config: config.clone(),
                operations: BoundedMap::default(),
            }),
        })
    }

    /// Runs `migrator`'s pending migrations on the primary, when `[database] migrate` is
    /// on (the default); a no-op otherwise. Call it before the app starts, so the service
    /// turns ready only on the current schema. Without sqlx's macros, embed migrations
    /// with `Migrator::with_migrations`:
    ///
    /// ```no_run
    /// # async fn demo(db: truss::sql::Database) -> Result<(), truss::sql::SqlError> {
    /// use sqlx::SqlSafeStr;
    /// use sqlx::migrate::{Migration, MigrationType, Migrator};
    ///
    /// let migrator = Migrator::with_migrations(vec![Migration::new(
    ///     1,
    ///     "users".into(),
    ///     MigrationType::Simple,
    ///     "CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT UNIQUE NOT NULL)".into_sql_str(),
    ///     false,
    /// )]);
    /// db.migrate(&migrator).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Migrations are not governed (no deadline or breaker): an unreachable database fails
    /// after `acquire_timeout` with `Unavailable`.
    pub async fn migrate(&self, migrator: &Migrator) -> Result<(), SqlError> {
        if !self.inner.config.migrate {
            tracing::info!("database: migrations skipped ([database] migrate = false)");
            return Ok(());
        }
        let span = self.span("migrate");
        let applied = migrator
            .run(&self.inner.primary.pool)
            .instrument(span)
            .await;
        applied.map_err(|e| match e {
            MigrateError::Execute(e) => SqlError::from(e),
            MigrateError::ExecuteMigration(e, version) => match SqlError::from(e) {
                SqlError::Query(why) => SqlError::Query(format!("migration {version}: {why}")),
                other => other,
            },
            other => SqlError::Query(other.to_string()),
        })?;
        tracing::info!(
            migrations = migrator.iter().count(),
            "database: migrations applied"
        );
        Ok(())
    }

    /// SQLite or PostgreSQL.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The primary's plain sqlx pool, ungoverned: no deadline, breaker, metrics or span.
    /// sqlx's own API (`pool.begin()`, `query(...).fetch_all(db.pool())`) stays usable.
    pub fn pool(&self) -> &AnyPool {
        &self.inner.primary.pool
    }

    /// One governed operation on a pooled connection of the primary; `operation` names it in
    /// metrics and the span (a fixed name, or [`operation_of`](super::operation_of)).
    ///
    /// ```no_run
    /// # async fn demo(db: truss::sql::Database) -> Result<(), truss::Error> {
    /// db.run("create_user", async |conn| {
    ///     sqlx::query("INSERT INTO users (id, email) VALUES ($1, $2)")
    ///         .bind(7_i64)
    ///         .bind("ada@example.com")
    ///         .execute(&mut *conn)
    ///         .await
    /// })
    /// .await?; // a taken email: SqlError::UniqueViolation, 409 through `?`
    /// # Ok(()) }
    /// ```
    pub async fn run<T>(
        &self,
        operation: &'static str,
        f: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, SqlError> {
        self.govern(operation, Route::Primary, f).await
    }

    /// The same as [`run`](Self::run) on a read replica, round-robin (one whose breaker
    /// rejects is skipped), or on the primary when there is none or every one rejects.
    pub async fn read<T>(
        &self,
        operation: &'static str,
        f: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, SqlError> {
        self.govern(operation, Route::Read, f).await
    }

    /// A governed transaction on the primary: `f` gets the connection inside it (use
    /// `&mut *conn` as the executor); committed when `f` returns `Ok`, rolled back otherwise
    /// (and when the deadline cuts it off: the connection is then closed).
    ///
    /// ```no_run
    /// # async fn demo(db: truss::sql::Database) -> Result<(), truss::sql::SqlError> {
    /// db.transaction("transfer", async |conn| {
    ///     sqlx::query("UPDATE accounts SET balance = balance - 5 WHERE id = 1")
    ///         .execute(&mut *conn)
    ///         .await?;
    ///     sqlx::query("UPDATE accounts SET balance = balance + 5 WHERE id = 2")
    ///         .execute(&mut *conn)
    ///         .await?;
    ///     Ok(())
    /// })
    /// .await
    /// # }
    /// ```
    pub async fn transaction<T>(
        &self,
        operation: &'static str,
        f: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, SqlError> {
        let in_transaction = async move |conn: &mut AnyConnection| {
            let mut tx = sqlx::Connection::begin(conn).await?;
            match f(&mut tx).await {
                Ok(value) => {
                    tx.commit().await?;
                    Ok(value)
                }
                Err(e) => {
                    // The statement's error says more than a failed rollback would.
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        };
        self.govern(operation, Route::Primary, in_transaction).await
    }

    /// A governed round trip to the primary (operation `ping`).
    pub async fn ping(&self) -> Result<(), SqlError> {
        self.run("ping", async |conn| sqlx::Connection::ping(conn).await)
            .await
    }

    /// Sets the pool gauges from the pools' current counts.
    pub(super) fn update_gauges(&self) {
        self.inner.primary.update_gauges();
        self.inner.replicas.iter().for_each(Pool::update_gauges);
    }

    fn span(&self, operation: &'static str) -> tracing::Span {
        tracing::info_span!(
            "db",
            db.system = self.inner.backend.system(),
            db.operation = operation
        )
    }

    /// Metrics, span and outcome around one call.
    async fn govern<T>(
        &self,
        operation: &'static str,
        route: Route,
        f: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, SqlError> {
        let meter = self.meter(operation);
        let start = Instant::now();
        let out = self.admit(route, f).instrument(self.span(operation)).await;
        meter.time(start.elapsed());
        meter.count(out.as_ref().map_or_else(SqlError::kind, |_| "ok"));
        if let Err(e) = &out
            && !e.database_answered()
        {
            tracing::debug!(operation, error = %e, "database call failed");
        }
        out
    }

    /// The deadline and the breaker: a call whose deadline has passed or whose pool's breaker
    /// rejects it fails at once.
    async fn admit<T>(
        &self,
        route: Route,
        f: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, SqlError> {
        let deadline = Deadline::current().map(|d| d.instant());
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(SqlError::DeadlineExceeded);
        }
        let pool = self
            .choose(route)
            .ok_or_else(|| SqlError::Unavailable("circuit breaker open".to_owned()))?;
        let out = self.call(pool, deadline, f).await;
        pool.record(
            out.as_ref()
                .map_or_else(SqlError::database_answered, |_| true),
        );
        out
    }

    /// The pool for `route` whose breaker admits the call, if any.
    fn choose(&self, route: Route) -> Option<&Pool> {
        let replicas = &self.inner.replicas;
        if matches!(route, Route::Read) && !replicas.is_empty() {
            let first = self.inner.next_replica.fetch_add(1, Ordering::Relaxed);
            let found = (0..replicas.len())
                .map(|i| &replicas[(first + i) % replicas.len()])
                .find(|pool| pool.allow());
            if found.is_some() {
                return found;
            }
        }
        let primary = &self.inner.primary;
        primary.allow().then_some(primary)
    }

    /// One call on a connection of `pool`: acquired by the request deadline, the statement
    /// bounded by the earlier of it and `statement_timeout` (on PostgreSQL also server-side).
    async fn call<T>(
        &self,
        pool: &Pool,
        request_deadline: Option<Instant>,
        f: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, SqlError> {
        let acquire_by = request_deadline.unwrap_or_else(|| Instant::now() + pool_wait(pool));
        let mut lease = pool.acquire(acquire_by).await?;
        let statement_by = Instant::now() + self.inner.statement_timeout;
        let deadline = request_deadline.map_or(statement_by, |d| d.min(statement_by));
        let postgres = self.inner.backend == Backend::Postgres;
        if postgres {
            // A little under the budget (a fifth of it, at most 200 ms), so the server
            // cancels first and the connection, answered with `query_canceled`, can go back
            // to the pool, even when the reply is slow to come.
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = (left - (left / 5).min(Duration::from_millis(200)))
                .as_millis()
                .max(1);
            let set = sqlx::raw_sql(AssertSqlSafe(format!("SET statement_timeout = {ms}")));
            match tokio::time::timeout_at(deadline, set.execute(lease.conn())).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(discarded(lease, e.into())),
                Err(_) => return Err(discarded(lease, SqlError::DeadlineExceeded)),
            }
        }
        let result = match tokio::time::timeout_at(deadline, f(lease.conn())).await {
            Ok(result) => result.map_err(SqlError::from),
            Err(_) => return Err(discarded(lease, SqlError::DeadlineExceeded)),
        };
        if postgres {
            reset(lease).await;
        }
        result
    }

    /// Handles for the client metrics of `operation`.
    fn meter(&self, operation: &'static str) -> Arc<ClientOperation> {
        let make = |name: &str| Arc::new(ClientOperation::new("sql", "database", name));
        self.inner.operations.with(operation, make, Arc::clone)
    }
}

/// The pool's own acquire timeout plus a margin: sqlx ends the wait with `PoolTimedOut`
/// (`Unavailable`) first.
fn pool_wait(pool: &Pool) -> Duration {
    pool.pool.options().get_acquire_timeout() + Duration::from_secs(1)
}

/// Drops a connection left in an unknown state; returns `error`.
fn discarded(lease: Lease<'_>, error: SqlError) -> SqlError {
    lease.discard();
    error
}

/// Puts PostgreSQL's `statement_timeout` back to the session default, or drops the
/// connection when that fails.
async fn reset(mut lease: Lease<'_>) {
    let reset = sqlx::raw_sql("RESET statement_timeout").execute(lease.conn());
    if !matches!(tokio::time::timeout(RESET_TIMEOUT, reset).await, Ok(Ok(_))) {
        lease.discard();
    }
}

/// A pool that connects on first use.
fn lazy_pool(url: &str, config: &DatabaseConfig) -> Result<AnyPool, SqlError> {
    // Parse with the backend's own options first: the Any driver only does at first connect.
    let checked = if is_postgres(url) {
        sqlx::postgres::PgConnectOptions::from_str(url).map(drop)
    } else {
        sqlx::sqlite::SqliteConnectOptions::from_str(url).map(drop)
    };
    let options = checked
        .and_then(|()| AnyConnectOptions::from_str(url))
        // The url may hold a password: name the problem, not the url.
        .map_err(|e| SqlError::Query(format!("invalid database url: {}", redact(&e, url))))?;
    let pool = AnyPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(config.min_connections)
        .acquire_timeout(config.acquire_timeout);
    let pool = if is_postgres(url) {
        pool
    } else {
        pool.after_connect(|conn, _| Box::pin(sqlite_pragmas(conn)))
    };
    Ok(pool.connect_lazy_with(options))
}

/// SQLite in write-ahead-log mode with `synchronous = NORMAL`: readers do not block the
/// writer (an outbox is written by one service while another claims from it), and a commit
/// costs one append instead of several fsyncs. A process crash loses nothing committed; a
/// power cut may lose the last commits. A file that cannot switch now (another process holds
/// a lock) keeps its mode: the pragma is advice, never a failed connection.
async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL"] {
        if let Err(error) = sqlx::Executor::execute(&mut *conn, pragma).await {
            tracing::debug!(%error, pragma, "database: SQLite pragma not applied");
        }
    }
    Ok(())
}

/// `e`'s message without `url` in it.
fn redact(e: &sqlx::Error, url: &str) -> String {
    e.to_string().replace(url, "<url>")
}

/// The url of the SQLite file `{data_dir}/{service}.db`, its directory created.
async fn sqlite_file(data_dir: &Path, service: &str) -> Result<String, SqlError> {
    tokio::fs::create_dir_all(data_dir).await.map_err(|e| {
        SqlError::Query(format!(
            "cannot create data_dir {}: {e}",
            data_dir.display()
        ))
    })?;
    let path = data_dir.join(format!("{service}.db"));
    let path = std::path::absolute(&path).unwrap_or(path);
    let mut encoded = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            ' ' => encoded.push_str("%20"),
            c => encoded.push(c),
        }
    }
    tracing::info!(path = %path.display(), "database: SQLite file");
    Ok(format!("sqlite://{encoded}?mode=rwc"))
}
