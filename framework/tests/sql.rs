//! The governed SQL pool on a real SQLite file in a temporary directory.
#![cfg(feature = "sql")]

use std::time::Duration;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use truss::Health;
use truss::resilience::deadline::Deadline;
use truss::sql::{Backend, Database, DatabaseConfig, SqlError};

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "users".into(),
            MigrationType::Simple,
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)"
                .into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "user names".into(),
            MigrationType::Simple,
            "ALTER TABLE users ADD COLUMN name TEXT NOT NULL DEFAULT ''".into_sql_str(),
            false,
        ),
    ])
}

async fn connect(dir: &tempfile::TempDir, config: DatabaseConfig) -> Database {
    let config = DatabaseConfig {
        data_dir: dir.path().join("data"),
        ..config
    };
    let db = Database::connect(&config, "svc").await.expect("connect");
    db.migrate(&migrator()).await.expect("migrate");
    db
}

fn metrics() -> String {
    truss::observe::metrics::render(&truss::observe::metrics::install())
}

fn metric_line(text: &str, needle: &str) -> String {
    text.lines()
        .find(|l| !l.starts_with('#') && l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle} in:\n{text}"))
        .to_owned()
}

async fn insert(db: &Database, id: i64, email: &str) -> Result<u64, SqlError> {
    insert_as(db, "insert", id, email).await
}

async fn insert_as(
    db: &Database,
    operation: &'static str,
    id: i64,
    email: &str,
) -> Result<u64, SqlError> {
    let email = email.to_owned();
    db.run(operation, async move |conn| {
        let done = sqlx::query("INSERT INTO users (id, email) VALUES ($1, $2)")
            .bind(id)
            .bind(email)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected())
    })
    .await
}

#[tokio::test]
async fn migrations_queries_constraints_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&dir, DatabaseConfig::default()).await;
    assert_eq!(db.backend(), Backend::Sqlite);
    assert!(dir.path().join("data/svc.db").is_file());
    // Migrating again finds nothing to do.
    db.migrate(&migrator()).await.unwrap();

    assert_eq!(
        insert_as(&db, "insert_user", 1, "ada@example.com").await,
        Ok(1)
    );
    let email: String = db
        .read("get_user", async |conn| {
            sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
                .bind(1_i64)
                .fetch_one(&mut *conn)
                .await
        })
        .await
        .unwrap();
    assert_eq!(email, "ada@example.com");

    let taken = insert_as(&db, "insert_user", 2, "ada@example.com")
        .await
        .unwrap_err();
    assert_eq!(
        taken,
        SqlError::UniqueViolation {
            constraint: Some("users.email".into())
        }
    );
    assert_eq!(truss::Error::from(taken).code(), 409);
    let missing = db
        .read("get_user", async |conn| {
            sqlx::query_scalar::<_, String>("SELECT email FROM users WHERE id = 99")
                .fetch_one(&mut *conn)
                .await
        })
        .await;
    assert_eq!(missing, Err(SqlError::NotFound));
    let bad = db
        .run("bad_sql", async |conn| {
            sqlx::query("SELEKT 1").execute(&mut *conn).await
        })
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), "query");
    assert_eq!(truss::Error::from(bad).message(), "database error");

    let text = metrics();
    let ok = metric_line(
        &text,
        r#"truss_client_requests_total{transport="sql",target="database",operation="insert_user",code="ok"}"#,
    );
    assert!(ok.ends_with(" 1"), "{ok}");
    let unique = metric_line(&text, r#"operation="insert_user",code="unique_violation"}"#);
    assert!(unique.ends_with(" 1"), "{unique}");
    metric_line(&text, r#"operation="get_user",code="not_found"}"#);
    metric_line(
        &text,
        r#"truss_client_request_duration_seconds_count{transport="sql",target="database",operation="get_user"}"#,
    );
    metric_line(
        &text,
        r#"truss_sql_pool_connections{pool="primary",state="idle"}"#,
    );
    metric_line(&text, r#"truss_sql_pool_waiting{pool="primary"}"#);
    // (Breaker outcomes are shared by every test's pool here; the Postgres tests check the
    // breaker, and SqlError's unit tests which kinds count against it.)
}

#[tokio::test]
async fn transactions_commit_or_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&dir, DatabaseConfig::default()).await;
    let failed = db
        .transaction("two_users", async |conn| {
            sqlx::query("INSERT INTO users (id, email) VALUES (1, 'a@x')")
                .execute(&mut *conn)
                .await?;
            sqlx::query("INSERT INTO users (id, email) VALUES (2, 'a@x')")
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
        .await;
    assert!(matches!(failed, Err(SqlError::UniqueViolation { .. })));
    let count = async |db: &Database| {
        db.read("count", async |conn| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users")
                .fetch_one(&mut *conn)
                .await
        })
        .await
        .unwrap()
    };
    assert_eq!(count(&db).await, 0, "rolled back");
    db.transaction("two_users", async |conn| {
        for id in [1_i64, 2] {
            sqlx::query("INSERT INTO users (id, email) VALUES ($1, $1 || '@x')")
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(count(&db).await, 2, "committed");
}

/// Counts to a number SQLite takes seconds to reach.
const SLOW: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) \
                    SELECT COUNT(*) FROM c";

#[tokio::test]
async fn a_slow_statement_stops_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&dir, DatabaseConfig::default()).await;
    let start = std::time::Instant::now();
    let slow =
        Deadline::after(Duration::from_millis(100)).scope(db.run("count_forever", async |conn| {
            sqlx::query_scalar::<_, i64>(SLOW)
                .fetch_one(&mut *conn)
                .await
        }));
    assert_eq!(slow.await, Err(SqlError::DeadlineExceeded));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    // A passed deadline fails before touching the pool.
    let expired = Deadline::after(Duration::ZERO).scope(db.ping()).await;
    assert_eq!(expired, Err(SqlError::DeadlineExceeded));
    // The pool is still usable (the cut-off connection was dropped, not reused).
    assert_eq!(insert(&db, 1, "b@x").await, Ok(1));
    let text = metrics();
    metric_line(
        &text,
        r#"operation="count_forever",code="deadline_exceeded"} 1"#,
    );
    assert_eq!(truss::Error::from(SqlError::DeadlineExceeded).code(), 504);
}

#[tokio::test]
async fn statement_timeout_bounds_calls_without_a_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        statement_timeout: Duration::from_millis(100),
        ..DatabaseConfig::default()
    };
    let db = connect(&dir, config).await;
    let start = std::time::Instant::now();
    let slow = db
        .run("count_forever_2", async |conn| {
            sqlx::query_scalar::<_, i64>(SLOW)
                .fetch_one(&mut *conn)
                .await
        })
        .await;
    assert_eq!(slow, Err(SqlError::DeadlineExceeded));
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn calls_are_send_for_handlers_and_spawned_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(&dir, DatabaseConfig::default()).await;
    let task = tokio::spawn({
        let db = db.clone();
        async move { insert(&db, 5, "spawned@x").await }
    });
    assert_eq!(task.await.unwrap(), Ok(1));
    async fn handler(
        axum::extract::State(db): axum::extract::State<Database>,
    ) -> Result<String, truss::Error> {
        let n: i64 = db
            .read("count_handler", async |conn| {
                sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&mut *conn)
                    .await
            })
            .await?;
        Ok(n.to_string())
    }
    let _router: axum::Router = axum::Router::new()
        .route("/count", axum::routing::get(handler))
        .with_state(db);
}

#[tokio::test]
async fn readiness_follows_the_database_and_ends_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig {
        health_interval: Duration::from_millis(20),
        ..DatabaseConfig::default()
    };
    let db = connect(&dir, config).await;
    let health = Health::new();
    health.set_ready(true);
    db.readiness(&health);
    let mut checks = health.checks_snapshot();
    for _ in 0..100 {
        if checks.get("database") == Some(&true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        checks = health.checks_snapshot();
    }
    assert_eq!(checks.get("database"), Some(&true));
    assert!(health.is_ready());
    drop(db);
    for _ in 0..100 {
        if health.checks_snapshot().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        health.checks_snapshot().is_empty(),
        "the check leaves with the database"
    );

    // Not required: no check at all.
    let config = DatabaseConfig {
        required: false,
        ..DatabaseConfig::default()
    };
    let db = connect(&dir, config).await;
    db.readiness(&health);
    assert!(health.checks_snapshot().is_empty());
}

#[tokio::test]
async fn bad_configs_are_errors_and_the_section_loads() {
    let url = |url: &str| DatabaseConfig {
        url: Some(url.to_owned()),
        ..DatabaseConfig::default()
    };
    let err = Database::connect(&url("mysql://h/db"), "svc")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("url"), "{err}");
    let err = Database::connect(&url("sqlite://x.db?mode=bogus"), "svc")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid database url"), "{err}");
    let secret = Database::connect(&url("postgres://u:hunter2@[::1/db"), "svc")
        .await
        .unwrap_err();
    assert!(!secret.to_string().contains("hunter2"), "{secret}");

    let config: truss::Config = truss::config::ConfigLoader::new()
        .args(["svc"])
        .env_vars([
            ("TRUSS_DATABASE__URL", "postgres://db.internal/app"),
            ("TRUSS_DATABASE__STATEMENT_TIMEOUT", "250ms"),
        ])
        .load()
        .unwrap();
    assert_eq!(
        config.database.url.as_deref(),
        Some("postgres://db.internal/app")
    );
    assert_eq!(
        config.database.statement_timeout,
        Duration::from_millis(250)
    );
    // A database that is down at start is not an error: connections are lazy.
    let lazy = DatabaseConfig {
        acquire_timeout: Duration::from_millis(100),
        ..url("postgres://postgres@127.0.0.1:1/none")
    };
    let db = Database::connect(&lazy, "svc").await.unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    assert!(matches!(db.ping().await, Err(SqlError::Unavailable(_))));
}
