//! The SQL rows: one indexed read through the governed pool ([`Database::read`]: deadline,
//! breaker, metrics, span) against the same statement run by plain sqlx on the same pool
//! ([`Database::pool`]). The database is a SQLite file in a temporary directory with a
//! `users` table of [`USERS`] rows, read by its primary key.

use std::hint::black_box;

use tempfile::TempDir;
use truss::resilience::deadline::Deadline;
use truss::sql::sqlx::{self, AssertSqlSafe, Row};
use truss::sql::{Database, DatabaseConfig};

/// Rows in `users`.
pub const USERS: i64 = 1_000;
/// The id every read asks for.
pub const ID: i64 = 7;
/// The read, by primary key.
pub const QUERY: &str = "SELECT id, name FROM users WHERE id = $1";
/// The service name: the SQLite file is `{tempdir}/bench.db`.
const SERVICE: &str = "bench";

/// The ways the read is made, by row name: plain sqlx on [`Database::pool`], through
/// [`Database::read`], and through it under a request deadline (an hour away, as a
/// handler behind the deadline layer sees it).
pub const ROWS: &[&str] = &[
    "sql_read_plain",
    "sql_read_governed",
    "sql_read_governed_deadline",
];

/// A [`Database`] on a SQLite file in a temporary directory, removed when dropped.
pub struct Fixture {
    /// The governed pool; [`Database::pool`] is the plain one under it.
    pub db: Database,
    _dir: TempDir,
}

/// Creates `users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)` with [`USERS`] rows and
/// checks that [`QUERY`] is a primary-key search.
pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = DatabaseConfig {
        data_dir: dir.path().to_owned(),
        ..DatabaseConfig::default()
    };
    let db = Database::connect(&config, SERVICE).await.expect("connect");
    let pool = db.pool();
    sqlx::query("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .execute(pool)
        .await
        .expect("create table");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO users (id, name) SELECT i, 'user-' || i FROM n",
    )
    .bind(USERS)
    .execute(pool)
    .await
    .expect("insert users");
    let plan = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {QUERY}")))
        .bind(ID)
        .fetch_one(pool)
        .await
        .expect("query plan");
    let detail: String = plan.try_get("detail").expect("plan detail");
    assert!(
        detail.contains("INTEGER PRIMARY KEY"),
        "not a primary-key search: {detail}"
    );
    Fixture { db, _dir: dir }
}

/// Whether `row` names one of [`ROWS`].
pub fn is_row(row: &str) -> bool {
    ROWS.contains(&row)
}

/// `n` reads of user [`ID`] the way `row` makes them, one after the other.
pub async fn reads(db: &Database, row: &str, n: u64) {
    match row {
        "sql_read_plain" => plain_reads(db, n).await,
        "sql_read_governed" => governed_reads(db, n).await,
        "sql_read_governed_deadline" => {
            Deadline::after(std::time::Duration::from_secs(3_600))
                .scope(governed_reads(db, n))
                .await
        }
        other => panic!("no SQL row {other}"),
    }
}

/// `n` reads by plain sqlx on the pool under `db`: no deadline, breaker, metrics or span.
pub async fn plain_reads(db: &Database, n: u64) {
    for _ in 0..n {
        let row = sqlx::query(QUERY)
            .bind(black_box(ID))
            .fetch_one(db.pool())
            .await;
        black_box(row.expect("user"));
    }
}

/// `n` reads through [`Database::read`].
pub async fn governed_reads(db: &Database, n: u64) {
    for _ in 0..n {
        let row = db
            .read("get_user", async |conn| {
                sqlx::query(QUERY)
                    .bind(black_box(ID))
                    .fetch_one(&mut *conn)
                    .await
            })
            .await;
        black_box(row.expect("user"));
    }
}
