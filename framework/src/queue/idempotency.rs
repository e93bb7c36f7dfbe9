//! Once-effective handlers on SQL: the processed message ids live in the same database, and
//! are written in the same transaction, as the handler's own effects (feature `sql`).

use sqlx::AnyConnection;

/// Creates the table of processed message ids if it does not exist (SQLite and
/// PostgreSQL). Run it once at start, or put the statement in your migrations.
pub const PROCESSED_TABLE: &str = "CREATE TABLE IF NOT EXISTS truss_processed_messages (
    subscription TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (subscription, message_id)
)";

/// Inside the handler's transaction: records that `subscription` handled `message_id`, and
/// says whether this is the first time. `false` means a redelivery of a message whose
/// effects are already committed: skip them, and return `Ok` so it is acknowledged.
///
/// Because the id and the effects commit together, a crash before the commit leaves
/// neither (the redelivery does the work), and a crash after it leaves both (the
/// redelivery finds the id): each message takes effect once, on an at-least-once queue.
///
/// ```no_run
/// # async fn demo(db: truss::sql::Database, msg: truss::queue::Message<u64>) -> Result<(), truss::Error> {
/// use truss::queue::first_delivery;
///
/// db.transaction("notify", async |conn| {
///     if !first_delivery(conn, "order.created", &msg.id).await? {
///         return Ok(()); // already done
///     }
///     sqlx::query("INSERT INTO notifications (order_id) VALUES ($1)")
///         .bind(msg.body as i64)
///         .execute(&mut *conn)
///         .await?;
///     Ok(())
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn first_delivery(
    conn: &mut AnyConnection,
    subscription: &str,
    message_id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO truss_processed_messages (subscription, message_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(subscription)
    .bind(message_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
