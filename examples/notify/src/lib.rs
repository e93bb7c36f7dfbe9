//! The `notify` example service: a consumer. It reads the `order.created` events that the
//! `order` service writes to its transactional outbox (in the transaction that writes the
//! order) and records one notification per order, however many times an event is delivered.
//!
//! ```text
//! order:  INSERT order + INSERT truss_queue event      (one transaction)
//! notify: claim event -> record notification + message id (one transaction) -> ack
//! GET /v1/notifications      the notifications recorded so far
//! ```
//!
//! Delivery is at least once: an event is acknowledged only after its handler committed,
//! so a crash or a SIGTERM past the grace period leaves it to be delivered again, and
//! [`first_delivery`] turns the repeat into a no-op. Each event's handler runs in the
//! producer's trace: its log line carries the trace id of the `POST /v1/orders` that
//! created the order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use truss::config::ConfigLoader;
use truss::observe::trace::TraceContext;
use truss::queue::{Message, PROCESSED_TABLE, first_delivery};
use truss::sql::{Database, SqlError};
use truss::{App, AppError, Config, JsonSchema};

/// The embedded defaults: `notify.toml`.
pub const DEFAULTS: &str = include_str!("../notify.toml");

/// The subscription: the subject `order` publishes when an order is created.
pub const ORDER_CREATED: &str = "order.created";

/// The event, as `order` writes it. Fields added later by `order` are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderCreated {
    /// The new order's id.
    pub order_id: u64,
    /// Who placed it.
    pub user_id: u64,
    /// What was ordered.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// One recorded notification.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Notification {
    /// The order it is about (one notification per order).
    pub order_id: u64,
    /// The user told.
    pub user_id: u64,
    /// What they are told.
    pub text: String,
    /// The trace of the request that created the order.
    pub trace_id: String,
}

/// `GET /v1/notifications`'s answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NotificationList {
    /// Newest first, at most 100.
    pub notifications: Vec<Notification>,
}

/// The notifications table, next to the processed message ids, in notify's own database.
const TABLES: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS notifications (
        order_id BIGINT PRIMARY KEY,
        user_id BIGINT NOT NULL,
        text TEXT NOT NULL,
        trace_id TEXT NOT NULL
    )",
    PROCESSED_TABLE,
];

/// Notify's storage.
#[derive(Clone)]
pub struct Notifications {
    db: Database,
}

impl Notifications {
    /// Creates the tables if they do not exist.
    pub async fn open(db: Database) -> Result<Self, SqlError> {
        db.run("create_tables", async |conn| {
            for table in TABLES {
                sqlx::query(table).execute(&mut *conn).await?;
            }
            Ok(())
        })
        .await?;
        Ok(Self { db })
    }

    /// Handles one event: the notification and the message id commit together, so a
    /// redelivered event changes nothing.
    pub async fn record(&self, msg: Message<OrderCreated>) -> Result<(), truss::Error> {
        let event = msg.body;
        let trace_id = TraceContext::current()
            .map(|ctx| ctx.trace_id_hex())
            .unwrap_or_default();
        let text = format!(
            "order {} placed: {} x {}",
            event.order_id, event.quantity, event.item
        );
        let first = self
            .db
            .transaction("record_notification", async |c| {
                if !first_delivery(c, ORDER_CREATED, &msg.id).await? {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO notifications (order_id, user_id, text, trace_id) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(i64::try_from(event.order_id).unwrap_or(i64::MAX))
                .bind(i64::try_from(event.user_id).unwrap_or(i64::MAX))
                .bind(&text)
                .bind(&trace_id)
                .execute(&mut *c)
                .await?;
                Ok(true)
            })
            .await?;
        if first {
            tracing::info!(
                order_id = event.order_id,
                user_id = event.user_id,
                "notification recorded"
            );
        } else {
            tracing::info!(order_id = event.order_id, message_id = %msg.id, "duplicate delivery ignored");
        }
        Ok(())
    }

    /// The newest notifications.
    pub async fn list(&self) -> Result<Vec<Notification>, SqlError> {
        let rows = self
            .db
            .read("list_notifications", async |c| {
                sqlx::query(
                    "SELECT order_id, user_id, text, trace_id FROM notifications \
                     ORDER BY order_id DESC LIMIT 100",
                )
                .fetch_all(&mut *c)
                .await
            })
            .await?;
        rows.iter()
            .map(notification)
            .collect::<Result<_, _>>()
            .map_err(SqlError::from)
    }
}

fn notification(row: &sqlx::any::AnyRow) -> Result<Notification, sqlx::Error> {
    let number = |name: &str| -> Result<u64, sqlx::Error> {
        Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or_default())
    };
    Ok(Notification {
        order_id: number("order_id")?,
        user_id: number("user_id")?,
        text: row.try_get("text")?,
        trace_id: row.try_get("trace_id")?,
    })
}

/// Lists the notifications recorded so far, newest first.
#[truss::route(get, "/v1/notifications")]
pub async fn list_notifications(
    #[state] store: Arc<Notifications>,
) -> Result<NotificationList, truss::Error> {
    let notifications = store.list().await?;
    Ok(NotificationList { notifications })
}

/// The app, ready to `run` or `start`: its database connected, its consumer of
/// `order.created` configured by `[consumers."order.created"]`.
pub async fn app(config: &Config) -> Result<truss::AppBuilder, AppError> {
    let db = Database::connect(&config.database, "notify")
        .await
        .map_err(startup)?;
    let store = Arc::new(Notifications::open(db.clone()).await.map_err(startup)?);
    let handler = {
        let store = store.clone();
        move |msg: Message<OrderCreated>| {
            let store = store.clone();
            async move { store.record(msg).await }
        }
    };
    let app = App::builder("notify")
        .version(env!("CARGO_PKG_VERSION"))
        .openapi_crate(env!("CARGO_CRATE_NAME"))
        .config(config)
        .http(truss::routes![list_notifications].with_state(store))
        .consumer(ORDER_CREATED, handler);
    if config.database.required {
        db.readiness(&app.health());
    }
    Ok(app)
}

fn startup(e: SqlError) -> AppError {
    AppError::Dependency {
        name: "database",
        message: e.to_string(),
    }
}

/// Loads the config (embedded defaults < `--config` file < `TRUSS_*`) and consumes until
/// SIGTERM / Ctrl-C: fetching stops, events in flight finish, the rest stay for next time.
pub async fn main() -> Result<(), AppError> {
    let config = ConfigLoader::new().defaults(DEFAULTS).load()?;
    app(&config).await?.run().await
}
