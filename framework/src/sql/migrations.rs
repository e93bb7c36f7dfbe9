//! Migrations embedded in the binary, so a service needs no `migrations/` directory at run
//! time and no sqlx macros at build time.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// A migrator over `(version, description, sql)` triples, in version order; give it to
/// [`Database::migrate`](super::Database::migrate).
///
/// ```
/// let migrator = truss::sql::embedded_migrator(&[
///     (1, "users", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"),
///     // (2, "user emails", include_str!("../migrations/0002_emails.sql")),
/// ]);
/// assert_eq!(migrator.iter().count(), 1);
/// ```
pub fn embedded_migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}
