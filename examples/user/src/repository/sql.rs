//! Users in a SQL database through the governed pool: SQLite by default, PostgreSQL with
//! `[database] url = "postgres://..."`. The same statements run on both.

use sqlx::Row;
use sqlx::any::AnyRow;
use truss::sql::{Backend, Database, SqlError};

use super::UserRepository;
use crate::domain::{NewUser, User, UserError, UserPatch};

/// The schema, per backend, embedded in the binary; `Database::migrate` applies it at start.
pub fn migrator(backend: Backend) -> sqlx::migrate::Migrator {
    truss::sql::embedded_migrator(match backend {
        Backend::Sqlite => &[(
            1,
            "users",
            include_str!("../../migrations/sqlite/0001_users.sql"),
        )],
        Backend::Postgres => &[(
            1,
            "users",
            include_str!("../../migrations/postgres/0001_users.sql"),
        )],
    })
}

/// Users in the `users` table.
#[derive(Clone)]
pub struct SqlUsers {
    db: Database,
}

impl SqlUsers {
    /// Users stored through `db` (already migrated).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// How many users exist.
    pub async fn count(&self) -> Result<u64, UserError> {
        let n = self
            .db
            .read("count_users", async |c| {
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users")
                    .fetch_one(&mut *c)
                    .await
            })
            .await
            .map_err(storage)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }
}

fn user(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: u64::try_from(row.try_get::<i64, _>("id")?).unwrap_or_default(),
        name: row.try_get("name")?,
        email: row.try_get("email")?,
    })
}

fn storage(e: SqlError) -> UserError {
    UserError::Storage(e.into())
}

/// The error of a write that may collide on the unique email.
fn write_error(e: SqlError, email: Option<&str>) -> UserError {
    match (e, email) {
        (SqlError::UniqueViolation { .. }, Some(email)) => UserError::EmailTaken {
            email: email.to_owned(),
        },
        (e, _) => storage(e),
    }
}

/// Ids are `u64` in the domain and `BIGINT` in the store.
fn id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

impl UserRepository for SqlUsers {
    async fn insert(&self, new: NewUser) -> Result<User, UserError> {
        let (name, email) = (new.name.clone(), new.email.clone());
        self.db
            .run("insert_user", async |c| {
                let row = sqlx::query(
                    "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id, name, email",
                )
                .bind(name)
                .bind(email)
                .fetch_one(&mut *c)
                .await?;
                user(&row)
            })
            .await
            .map_err(|e| write_error(e, Some(&new.email)))
    }

    async fn get(&self, user_id: u64) -> Result<User, UserError> {
        let row = self
            .db
            .read("get_user", async |c| {
                sqlx::query("SELECT id, name, email FROM users WHERE id = $1")
                    .bind(id(user_id))
                    .fetch_optional(&mut *c)
                    .await
            })
            .await
            .map_err(storage)?;
        match row {
            Some(row) => user(&row).map_err(|e| storage(SqlError::from(e))),
            None => Err(UserError::NotFound(user_id)),
        }
    }

    async fn list(&self, after: u64, limit: usize) -> Result<Vec<User>, UserError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read("list_users", async |c| {
                let rows = sqlx::query(
                    "SELECT id, name, email FROM users WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(id(after))
                .bind(limit)
                .fetch_all(&mut *c)
                .await?;
                rows.iter().map(user).collect()
            })
            .await
            .map_err(storage)
    }

    async fn update(&self, user_id: u64, patch: UserPatch) -> Result<User, UserError> {
        let email = patch.email.clone();
        let row = self
            .db
            .run("update_user", async |c| {
                sqlx::query(
                    "UPDATE users SET name = COALESCE($2, name), email = COALESCE($3, email) \
                     WHERE id = $1 RETURNING id, name, email",
                )
                .bind(id(user_id))
                .bind(patch.name)
                .bind(patch.email)
                .fetch_optional(&mut *c)
                .await
            })
            .await
            .map_err(|e| write_error(e, email.as_deref()))?;
        match row {
            Some(row) => user(&row).map_err(|e| storage(SqlError::from(e))),
            None => Err(UserError::NotFound(user_id)),
        }
    }

    async fn delete(&self, user_id: u64) -> Result<(), UserError> {
        let deleted = self
            .db
            .run("delete_user", async |c| {
                sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(id(user_id))
                    .execute(&mut *c)
                    .await
                    .map(|r| r.rows_affected())
            })
            .await
            .map_err(storage)?;
        if deleted == 0 {
            return Err(UserError::NotFound(user_id));
        }
        Ok(())
    }
}
