//! The governed SQL pool against a real PostgreSQL: deadlines cancel queries on the server,
//! the breaker opens while the server is down and closes after it is back, constraint
//! violations are classified.

use std::time::{Duration, Instant};

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use truss::resilience::breaker::{OpenPolicy, Strategy};
use truss::resilience::deadline::Deadline;
use truss::sql::{Backend, Database, DatabaseConfig, SqlError};
use truss_tests::Postgres;

fn config(pg: &Postgres) -> DatabaseConfig {
    DatabaseConfig {
        url: Some(pg.url()),
        ..DatabaseConfig::default()
    }
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "users".into(),
        MigrationType::Simple,
        "CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT NOT NULL UNIQUE)".into_sql_str(),
        false,
    )])
}

/// Backends (other than the asking one) running a statement that mentions `needle`.
fn running(pg: &Postgres, needle: &str) -> u32 {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
         AND pid <> pg_backend_pid() AND query LIKE '%{needle}%'"
    );
    pg.psql(&sql).expect("psql").parse().expect("a count")
}

#[tokio::test]
async fn a_deadline_cancels_the_query_on_the_server() {
    let pg = Postgres::start().await;
    let one_connection = DatabaseConfig {
        max_connections: 1,
        ..config(&pg)
    };
    let db = Database::connect(&one_connection, "svc").await.unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    let pid = async || {
        db.run("pid", async |conn| {
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await
        })
        .await
        .unwrap()
    };
    let before = pid().await;

    let start = Instant::now();
    let slow = Deadline::after(Duration::from_millis(500)).scope(db.run("sleep", async |conn| {
        sqlx::query("SELECT pg_sleep(5)").execute(&mut *conn).await
    }));
    assert_eq!(slow.await.map(drop), Err(SqlError::DeadlineExceeded));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The server stopped it too: it is not left sleeping out its 5 s.
    let mut left = running(&pg, "pg_sleep(5)");
    for _ in 0..40 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = running(&pg, "pg_sleep(5)");
    }
    assert_eq!(
        left,
        0,
        "pg_sleep still running {:?} after the call",
        start.elapsed()
    );

    // The server cancelled it (`query_canceled`) a little before the client would have
    // given up, so the connection was fit to go back to the pool.
    assert_eq!(pid().await, before, "the connection was kept");

    // The session default is back for ungoverned use of the pool, and the pool works.
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(timeout, "0");
    let one: i32 = db
        .read("one", async |conn| {
            sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await
        })
        .await
        .unwrap();
    assert_eq!(one, 1);
}

#[tokio::test]
async fn constraint_violations_are_classified() {
    let pg = Postgres::start().await;
    let db = Database::connect(&config(&pg), "svc").await.unwrap();
    db.migrate(&migrator()).await.unwrap();
    let insert = async |id: i64| {
        db.run("insert_user", async move |conn| {
            sqlx::query("INSERT INTO users (id, email) VALUES ($1, 'ada@example.com')")
                .bind(id)
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })
        .await
    };
    assert_eq!(insert(1).await, Ok(1));
    let taken = insert(2).await.unwrap_err();
    assert_eq!(
        taken,
        SqlError::UniqueViolation {
            constraint: Some("users_email_key".into())
        }
    );
    let err = truss::Error::from(taken);
    assert_eq!((err.code(), err.reason()), (409, "CONSTRAINT_VIOLATION"));
    let missing = db
        .read("get_user", async |conn| {
            sqlx::query_scalar::<_, String>("SELECT email FROM users WHERE id = 99")
                .fetch_one(&mut *conn)
                .await
        })
        .await;
    assert_eq!(missing, Err(SqlError::NotFound));
}

#[tokio::test]
async fn the_breaker_opens_while_the_server_is_down_and_closes_after() {
    let mut pg = Postgres::start().await;
    let mut config = config(&pg);
    config.acquire_timeout = Duration::from_millis(500);
    config.breaker.strategy = Strategy::StateMachine;
    config.breaker.state_machine.policy = OpenPolicy::ConsecutiveFailures;
    config.breaker.state_machine.consecutive_failures = 2;
    config.breaker.state_machine.open_min = Duration::from_millis(500);
    config.breaker.state_machine.open_max = Duration::from_secs(1);
    let db = Database::connect(&config, "svc").await.unwrap();
    db.ping().await.unwrap();

    pg.stop();
    // The first calls wait for a connection up to acquire_timeout; once the breaker opens,
    // calls fail at once.
    let mut fast = None;
    for _ in 0..10 {
        let start = Instant::now();
        let result = db.ping().await;
        let took = start.elapsed();
        assert!(
            matches!(result, Err(SqlError::Unavailable(_))),
            "{result:?}"
        );
        if took < config.acquire_timeout / 10 {
            fast = Some(took);
            break;
        }
    }
    let fast = fast.expect("the breaker never opened");
    assert!(fast < Duration::from_millis(50), "{fast:?}");
    let err = truss::Error::from(db.ping().await.unwrap_err());
    assert_eq!((err.code(), err.reason()), (503, "DATABASE_UNAVAILABLE"));

    pg.restart().await;
    let start = Instant::now();
    while db.ping().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no recovery after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Closed again: every call goes through.
    for _ in 0..5 {
        db.ping().await.unwrap();
    }
}

#[tokio::test]
async fn reads_go_to_the_replicas() {
    let pg = Postgres::start().await;
    let config = DatabaseConfig {
        // The same server twice stands in for two replicas.
        replicas: vec![pg.url(), pg.url()],
        ..config(&pg)
    };
    let db = Database::connect(&config, "svc").await.unwrap();
    let backend_pid = async |read: bool| {
        let f = async |conn: &mut sqlx::AnyConnection| {
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await
        };
        if read {
            db.read("backend_pid", f).await.unwrap()
        } else {
            db.run("backend_pid", f).await.unwrap()
        }
    };
    let primary = backend_pid(false).await;
    let replicas: Vec<i32> = [backend_pid(true).await, backend_pid(true).await].into();
    assert!(!replicas.contains(&primary), "{primary} {replicas:?}");
    assert_ne!(replicas[0], replicas[1], "round-robin over both replicas");

    let text = truss::observe::metrics::render(&truss::observe::metrics::install());
    for pool in ["primary", "replica-1", "replica-2"] {
        let needle = format!("truss_sql_pool_connections{{pool=\"{pool}\",state=\"idle\"}}");
        assert!(text.contains(&needle), "no {needle} in:\n{text}");
    }
    truss_tests::promtool_check(&text).unwrap();
}
