//! Storage. The service depends on the [`ItemRepository`] trait: [`SqlItems`] serves (SQLite
//! by default, PostgreSQL with `[database] url`), [`InMemoryItems`] is for unit tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use truss::sql::sqlx::{self, migrate::Migrator};
use truss::sql::{Backend, Database};

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Assigned on insert.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// Where items live. A storage failure is a `truss::Error` (503 when the database is down,
/// 504 past the deadline, ...), passed on to the caller as it is.
pub trait ItemRepository: Send + Sync + 'static {
    /// Stores a new item with the next id.
    fn insert(&self, name: String) -> impl Future<Output = Result<Item, truss::Error>> + Send;
    /// The item with `id`, if there is one.
    fn get(&self, id: u64) -> impl Future<Output = Result<Option<Item>, truss::Error>> + Send;
}

/// The schema for `backend`, embedded in the binary: `Database::migrate` applies what is new
/// at start. Add a migration as the next version in both lists (and both directories).
pub fn migrator(backend: Backend) -> Migrator {
    truss::sql::embedded_migrator(match backend {
        Backend::Sqlite => &[(
            1,
            "items",
            include_str!("../migrations/sqlite/0001_items.sql"),
        )],
        Backend::Postgres => &[(
            1,
            "items",
            include_str!("../migrations/postgres/0001_items.sql"),
        )],
    })
}

/// Items in the `items` table, through the governed pool: every call runs under the
/// request's deadline, behind the pool's breaker, with metrics and a span.
#[derive(Debug, Clone)]
pub struct SqlItems {
    db: Database,
}

impl SqlItems {
    /// Items stored through `db`, already migrated.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// A row of `items`: ids are `u64` here and `BIGINT` in the table.
fn item((id, name): (i64, String)) -> Item {
    Item {
        id: u64::try_from(id).unwrap_or_default(),
        name,
    }
}

impl ItemRepository for SqlItems {
    async fn insert(&self, name: String) -> Result<Item, truss::Error> {
        let row = self
            .db
            .run("insert_item", async |conn| {
                sqlx::query_as("INSERT INTO items (name) VALUES ($1) RETURNING id, name")
                    .bind(name)
                    .fetch_one(&mut *conn)
                    .await
            })
            .await?;
        Ok(item(row))
    }

    async fn get(&self, id: u64) -> Result<Option<Item>, truss::Error> {
        let id = i64::try_from(id).unwrap_or(i64::MAX);
        let row = self
            .db
            .read("get_item", async |conn| {
                sqlx::query_as("SELECT id, name FROM items WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await
            })
            .await?;
        Ok(row.map(item))
    }
}

/// Items in memory, for unit tests.
#[derive(Debug, Default)]
pub struct InMemoryItems {
    items: Mutex<BTreeMap<u64, Item>>,
}

impl ItemRepository for InMemoryItems {
    async fn insert(&self, name: String) -> Result<Item, truss::Error> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let item = Item {
            id: items.len() as u64 + 1,
            name,
        };
        items.insert(item.id, item.clone());
        Ok(item)
    }

    async fn get(&self, id: u64) -> Result<Option<Item>, truss::Error> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        Ok(items.get(&id).cloned())
    }
}
