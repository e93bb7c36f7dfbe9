//! Orders in a SQL database through the governed pool: SQLite by default, PostgreSQL with
//! `[database] url = "postgres://..."`.

use sqlx::Row;
use sqlx::any::AnyRow;
use truss::sql::{Backend, Database, SqlError};

use super::OrderRepository;
use crate::domain::{NewOrder, Order, OrderError};

/// The schema, per backend, embedded in the binary; `Database::migrate` applies it at start.
pub fn migrator(backend: Backend) -> sqlx::migrate::Migrator {
    truss::sql::embedded_migrator(match backend {
        Backend::Sqlite => &[
            (
                1,
                "orders",
                include_str!("../../migrations/sqlite/0001_orders.sql"),
            ),
            (
                2,
                "outbox",
                include_str!("../../migrations/sqlite/0002_outbox.sql"),
            ),
        ],
        Backend::Postgres => &[
            (
                1,
                "orders",
                include_str!("../../migrations/postgres/0001_orders.sql"),
            ),
            (
                2,
                "outbox",
                include_str!("../../migrations/postgres/0002_outbox.sql"),
            ),
        ],
    })
}

/// Orders in the `orders` table.
#[derive(Clone)]
pub struct SqlOrders {
    db: Database,
}

impl SqlOrders {
    /// Orders stored through `db` (already migrated).
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn order(row: &AnyRow) -> Result<Order, sqlx::Error> {
    let number = |name: &str| row.try_get::<i64, _>(name);
    Ok(Order {
        id: u64::try_from(number("id")?).unwrap_or_default(),
        user_id: u64::try_from(number("user_id")?).unwrap_or_default(),
        user_name: row.try_get("user_name")?,
        item: row.try_get("item")?,
        quantity: u32::try_from(number("quantity")?).unwrap_or_default(),
    })
}

fn storage(e: SqlError) -> OrderError {
    OrderError::Storage(e.into())
}

/// The subject of the event each new order writes to the outbox.
pub const ORDER_CREATED: &str = "order.created";

impl OrderRepository for SqlOrders {
    /// Writes the order and its `order.created` event in one transaction (the
    /// transactional outbox): both or neither, whatever happens after.
    async fn insert(&self, new: NewOrder, user_name: String) -> Result<Order, OrderError> {
        let user_id = i64::try_from(new.user_id).unwrap_or(i64::MAX);
        self.db
            .transaction("insert_order", async |c| {
                let row = sqlx::query(
                    "INSERT INTO orders (user_id, user_name, item, quantity) VALUES ($1, $2, $3, $4) \
                     RETURNING id, user_id, user_name, item, quantity",
                )
                .bind(user_id)
                .bind(user_name)
                .bind(new.item)
                .bind(i64::from(new.quantity))
                .fetch_one(&mut *c)
                .await?;
                let order = order(&row)?;
                let event = serde_json::json!({
                    "order_id": order.id,
                    "user_id": order.user_id,
                    "item": order.item,
                    "quantity": order.quantity,
                });
                let headers = truss::queue::trace_headers();
                truss::queue::enqueue(c, ORDER_CREATED, event.to_string().as_bytes(), &headers)
                    .await?;
                Ok(order)
            })
            .await
            .map_err(storage)
    }

    async fn get(&self, id: u64) -> Result<Order, OrderError> {
        let key = i64::try_from(id).unwrap_or(i64::MAX);
        let row = self
            .db
            .read("get_order", async |c| {
                sqlx::query(
                    "SELECT id, user_id, user_name, item, quantity FROM orders WHERE id = $1",
                )
                .bind(key)
                .fetch_optional(&mut *c)
                .await
            })
            .await
            .map_err(storage)?;
        match row {
            Some(row) => order(&row).map_err(|e| storage(SqlError::from(e))),
            None => Err(OrderError::NotFound(id)),
        }
    }

    async fn count(&self) -> Result<usize, OrderError> {
        let n = self
            .db
            .read("count_orders", async |c| {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM orders")
                    .fetch_one(&mut *c)
                    .await
            })
            .await
            .map_err(storage)?;
        Ok(usize::try_from(n).unwrap_or_default())
    }
}
