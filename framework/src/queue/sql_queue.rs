//! [`SqlQueue`]: a queue in a SQL table, and the transactional outbox that comes with it
//! (feature `sql`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use sqlx::{AnyConnection, Row};

use super::backend::{Backend, Delivery};
use crate::BoxError;
use crate::registry::BoxFuture;
use crate::sql::Database;

/// The queue's tables (SQLite and PostgreSQL); [`SqlQueue::create_tables`] runs them, or
/// put them in your migrations.
pub const QUEUE_TABLES: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS truss_queue (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        seq BIGINT NOT NULL,
        payload TEXT NOT NULL,
        headers TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        available_at BIGINT NOT NULL,
        claimed_by TEXT,
        claimed_until BIGINT
    )",
    "CREATE TABLE IF NOT EXISTS truss_queue_dead (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        payload TEXT NOT NULL,
        headers TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        reason TEXT NOT NULL
    )",
];

/// Adds a message for `subject` on `conn`, typically inside the transaction that writes
/// the change it announces: the **transactional outbox**. The message exists if and only
/// if the transaction commits, so a crash between the write and the publish cannot lose
/// it (there is no separate publish), and consumers see it once committed.
///
/// ```no_run
/// # async fn demo(db: truss::sql::Database) -> Result<(), truss::sql::SqlError> {
/// use truss::queue::{enqueue, trace_headers};
///
/// db.transaction("create_order", async |conn| {
///     sqlx::query("INSERT INTO orders (id, item) VALUES ($1, $2)")
///         .bind(7_i64)
///         .bind("tea")
///         .execute(&mut *conn)
///         .await?;
///     enqueue(conn, "order.created", br#"{"order_id":7}"#, &trace_headers()).await?;
///     Ok(())
/// })
/// .await
/// # }
/// ```
pub async fn enqueue(
    conn: &mut AnyConnection,
    subject: &str,
    payload: &[u8],
    headers: &BTreeMap<String, String>,
) -> Result<String, sqlx::Error> {
    // The column is text (readable JSON in the outbox); a binary body (protobuf) is stored
    // as base64 and marked, and decoded again when fetched.
    let (payload, headers) = match std::str::from_utf8(payload) {
        Ok(text) => (text.to_owned(), serde_json::to_string(headers)),
        Err(_) => {
            let mut marked = headers.clone();
            marked.insert(PAYLOAD_ENCODING.to_owned(), "base64".to_owned());
            (BASE64.encode(payload), serde_json::to_string(&marked))
        }
    };
    let headers = headers.map_err(|e| sqlx::Error::Encode(e.into()))?;
    let seq = next_seq();
    let id = format!("{seq}-{:08x}", crate::random::next_u64() as u32);
    sqlx::query(
        "INSERT INTO truss_queue (id, subject, seq, payload, headers, attempt, available_at) \
         VALUES ($1, $2, $3, $4, $5, 1, 0)",
    )
    .bind(&id)
    .bind(subject)
    .bind(seq)
    .bind(payload)
    .bind(headers)
    .execute(conn)
    .await?;
    Ok(id)
}

/// A queue in the `truss_queue` table of a [`Database`]: on SQLite it needs no server (the
/// services of one machine share the file), on PostgreSQL it is shared by every instance.
/// A delivery is claimed for `claim` (set it above the consumer's deadline): one not settled
/// by then, its consumer gone, is delivered again. Retries wait in the table with a later
/// `available_at`; dead letters move to `truss_queue_dead` with the reason.
#[derive(Clone)]
pub struct SqlQueue {
    db: Database,
    subject: String,
    consumer: String,
    claim: Duration,
}

impl std::fmt::Debug for SqlQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlQueue")
            .field("subject", &self.subject)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl SqlQueue {
    /// The queue of `subject` in `db`, consumed as `consumer`.
    pub fn new(db: Database, subject: &str, consumer: &str, claim: Duration) -> Self {
        Self {
            db,
            subject: subject.to_owned(),
            consumer: consumer.to_owned(),
            claim,
        }
    }

    /// Creates [`QUEUE_TABLES`] if they do not exist.
    pub async fn create_tables(db: &Database) -> Result<(), crate::sql::SqlError> {
        db.run("queue_create_tables", async |conn| {
            for table in QUEUE_TABLES {
                sqlx::query(table).execute(&mut *conn).await?;
            }
            Ok(())
        })
        .await
    }

    async fn claim(&self, max: usize) -> Result<Vec<Delivery>, BoxError> {
        let now = now_ms();
        let until = now + self.claim.as_millis() as i64;
        let (subject, consumer) = (self.subject.as_str(), self.consumer.as_str());
        let rows = self
            .db
            .run("queue_fetch", async |conn| {
                sqlx::query(
                    "UPDATE truss_queue SET claimed_by = $1, claimed_until = $2 \
                     WHERE id IN (SELECT id FROM truss_queue WHERE subject = $3 \
                       AND available_at <= $4 AND (claimed_until IS NULL OR claimed_until < $4) \
                       ORDER BY seq LIMIT $5) \
                     AND (claimed_until IS NULL OR claimed_until < $4) \
                     RETURNING id, payload, headers, attempt, seq",
                )
                .bind(consumer)
                .bind(until)
                .bind(subject)
                .bind(now)
                .bind(max as i64)
                .fetch_all(&mut *conn)
                .await
            })
            .await?;
        let mut out: Vec<(i64, Delivery)> = rows.iter().map(delivery).collect();
        out.sort_by_key(|(seq, _)| *seq);
        Ok(out.into_iter().map(|(_, d)| d).collect())
    }
}

/// The header marking a payload stored as base64 (a binary body in the text column).
const PAYLOAD_ENCODING: &str = "truss-payload-encoding";

/// A claimed row as a delivery; odd headers are dropped rather than failing the fetch, and
/// a base64 payload that does not decode is delivered empty and untyped (then
/// dead-lettered).
fn delivery(row: &sqlx::any::AnyRow) -> (i64, Delivery) {
    let headers: String = row.try_get("headers").unwrap_or_default();
    let payload: String = row.try_get("payload").unwrap_or_default();
    let mut headers: BTreeMap<String, String> = serde_json::from_str(&headers).unwrap_or_default();
    let payload = match headers.remove(PAYLOAD_ENCODING).as_deref() {
        Some("base64") => BASE64.decode(payload.as_bytes()).unwrap_or_else(|_| {
            // Refused as empty, whatever it claims to be.
            headers.remove(super::CONTENT_TYPE);
            Vec::new()
        }),
        _ => payload.into_bytes(),
    };
    let delivery = Delivery {
        id: row.try_get("id").unwrap_or_default(),
        key: None,
        headers,
        payload: Bytes::from(payload),
        attempt: row
            .try_get::<i64, _>("attempt")
            .ok()
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1),
    };
    (row.try_get("seq").unwrap_or_default(), delivery)
}

impl Backend for SqlQueue {
    fn fetch(&self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Delivery>, BoxError>> {
        Box::pin(async move {
            let until = tokio::time::Instant::now() + wait;
            loop {
                let claimed = self.claim(max).await?;
                if !claimed.is_empty() || tokio::time::Instant::now() >= until {
                    return Ok(claimed);
                }
                // Polled: a table has no push.
                let pause = Duration::from_millis(50).min(until - tokio::time::Instant::now());
                tokio::time::sleep(pause).await;
            }
        })
    }

    fn ack<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let (id, consumer) = (delivery.id.as_str(), self.consumer.as_str());
            self.db
                .run("queue_ack", async |conn| {
                    sqlx::query("DELETE FROM truss_queue WHERE id = $1 AND claimed_by = $2")
                        .bind(id)
                        .bind(consumer)
                        .execute(&mut *conn)
                        .await
                })
                .await?;
            Ok(())
        })
    }

    fn retry<'a>(
        &'a self,
        delivery: &'a Delivery,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let at = now_ms() + delay.as_millis() as i64;
            let (id, consumer) = (delivery.id.as_str(), self.consumer.as_str());
            self.db
                .run("queue_retry", async |conn| {
                    sqlx::query(
                        "UPDATE truss_queue SET attempt = attempt + 1, available_at = $1, \
                         claimed_by = NULL, claimed_until = NULL WHERE id = $2 AND claimed_by = $3",
                    )
                    .bind(at)
                    .bind(id)
                    .bind(consumer)
                    .execute(&mut *conn)
                    .await
                })
                .await?;
            Ok(())
        })
    }

    fn dead_letter<'a>(
        &'a self,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let (id, consumer) = (delivery.id.as_str(), self.consumer.as_str());
            self.db
                .transaction("queue_dead_letter", async |conn| {
                    sqlx::query(
                        "INSERT INTO truss_queue_dead (id, subject, payload, headers, attempt, reason) \
                         SELECT id, subject, payload, headers, attempt, $1 FROM truss_queue \
                         WHERE id = $2 AND claimed_by = $3",
                    )
                    .bind(reason)
                    .bind(id)
                    .bind(consumer)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query("DELETE FROM truss_queue WHERE id = $1 AND claimed_by = $2")
                        .bind(id)
                        .bind(consumer)
                        .execute(&mut *conn)
                        .await
                })
                .await?;
            Ok(())
        })
    }

    fn lag(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        Box::pin(async move {
            let now = now_ms();
            let subject = self.subject.as_str();
            let waiting: i64 = self
                .db
                .read("queue_lag", async |conn| {
                    sqlx::query_scalar(
                        "SELECT COUNT(*) FROM truss_queue WHERE subject = $1 \
                         AND (claimed_until IS NULL OR claimed_until < $2)",
                    )
                    .bind(subject)
                    .bind(now)
                    .fetch_one(&mut *conn)
                    .await
                })
                .await?;
            Ok(Some(u64::try_from(waiting).unwrap_or_default()))
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Increasing per process (microseconds, bumped on ties): the table's order.
fn next_seq() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}
