//! `[database]`: always compiled, so a config file with the section is accepted by every build;
//! a configured database without the `sql` feature is a validation error.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::resilience::breaker::BreakerConfig;
use crate::section::duration;
use crate::section::{Section, ValidationError};

/// `[database]`: the SQL pool behind [`Database`](crate::sql) (feature `sql`).
///
/// Without a `url`, the service gets an embedded SQLite file, `{data_dir}/{service}.db`,
/// created on first start; a PostgreSQL server is one key away.
///
/// ```toml
/// [database]
/// url = "postgres://app:secret@db.internal:5432/app"   # default: SQLite in data_dir
/// data_dir = "data"             # default; where the SQLite file lives
/// max_connections = 10          # default
/// min_connections = 0           # default
/// acquire_timeout = "2s"        # default: longest wait for a pooled connection
/// statement_timeout = "5s"      # default: the longest any statement runs
/// replicas = ["postgres://app:secret@replica.internal:5432/app"]   # reads go here
/// migrate = true                # default: run migrations at start, before ready
/// required = true               # default: /readyz includes a `database` check
/// health_interval = "5s"        # default: how often that check pings the database
///
/// [database.breaker]            # the [breaker] keys; one breaker per pool
/// strategy = "adaptive"
/// ```
///
/// ```
/// use truss::sql::DatabaseConfig;
/// use truss::config::Section;
///
/// let config = DatabaseConfig::default();
/// assert_eq!(config.max_connections, 10);
/// assert!(config.validate().is_ok());
///
/// let bad = DatabaseConfig { url: Some("mysql://x".into()), ..DatabaseConfig::default() };
/// assert_eq!(bad.validate().unwrap_err().field, "url");
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:…`, `postgres://…` or `postgresql://…`. Default none: a SQLite file
    /// `{data_dir}/{service}.db`, created if missing.
    pub url: Option<String>,
    /// The directory of the default SQLite file, created at connect. Default `data`.
    pub data_dir: PathBuf,
    /// Most connections the pool (and each replica's pool) opens. Default 10.
    pub max_connections: u32,
    /// Connections kept open when idle. Default 0.
    pub min_connections: u32,
    /// Longest wait for a pooled connection (including connecting) before the call fails
    /// with `DATABASE_UNAVAILABLE`. Default `2s`.
    #[serde(with = "duration")]
    pub acquire_timeout: Duration,
    /// The longest any governed statement runs; a request deadline that leaves less time
    /// bounds it further. Default `5s`.
    #[serde(with = "duration")]
    pub statement_timeout: Duration,
    /// Read replicas (`postgres://` urls): reads go to them round-robin. Default none.
    pub replicas: Vec<String>,
    /// Whether `Database::migrate` runs the migrations it is given (at start, before the
    /// service turns ready). Default `true`.
    pub migrate: bool,
    /// Whether `/readyz` includes a `database` check. Default `true`.
    pub required: bool,
    /// How often the readiness check pings the database. Default `5s`.
    #[serde(with = "duration")]
    pub health_interval: Duration,
    /// The breaker of each pool (primary and every replica): the same keys as `[breaker]`.
    pub breaker: BreakerConfig,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            data_dir: PathBuf::from("data"),
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            replicas: Vec::new(),
            migrate: true,
            required: true,
            health_interval: Duration::from_secs(5),
            breaker: BreakerConfig::default(),
        }
    }
}

impl DatabaseConfig {
    /// Whether a database server is configured (a `url` or replicas) rather than the
    /// embedded default.
    pub fn is_configured(&self) -> bool {
        self.url.is_some() || !self.replicas.is_empty()
    }
}

/// Whether `url` names PostgreSQL.
pub(crate) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn check_url(field: &str, url: &str) -> Result<(), ValidationError> {
    if url.starts_with("sqlite:") || is_postgres(url) {
        return Ok(());
    }
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    Err(ValidationError::new(
        field,
        format!(
            "`{scheme}:` is not a supported database; use sqlite:, postgres:// or postgresql://"
        ),
    ))
}

impl Section for DatabaseConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(url) = &self.url {
            check_url("url", url)?;
        } else if self.data_dir.as_os_str().is_empty() {
            return Err(ValidationError::new(
                "data_dir",
                "must not be empty when no url is set",
            ));
        }
        for (i, replica) in self.replicas.iter().enumerate() {
            check_url(&format!("replicas[{i}]"), replica)?;
            if !is_postgres(replica) || !self.url.as_deref().is_some_and(is_postgres) {
                return Err(ValidationError::new(
                    format!("replicas[{i}]"),
                    "replicas must be postgres:// urls next to a postgres:// url",
                ));
            }
        }
        if self.max_connections == 0 || self.min_connections > self.max_connections {
            return Err(ValidationError::new(
                "max_connections",
                "must be at least 1 and at least min_connections",
            ));
        }
        for (field, value) in [
            ("acquire_timeout", self.acquire_timeout),
            ("statement_timeout", self.statement_timeout),
            ("health_interval", self.health_interval),
        ] {
            if value.is_zero() {
                return Err(ValidationError::new(field, "must be above zero"));
            }
        }
        self.breaker.validate().map_err(|e| e.within("breaker"))?;
        if cfg!(not(feature = "sql")) && self.is_configured() {
            return Err(ValidationError::new(
                "url",
                "a database is configured but truss was built without its `sql` feature",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_urls_are_checked() {
        assert!(DatabaseConfig::default().validate().is_ok());
        let with = |url: &str| DatabaseConfig {
            url: Some(url.to_owned()),
            ..DatabaseConfig::default()
        };
        for ok in [
            "sqlite://x.db",
            "sqlite::memory:",
            "postgres://h/db",
            "postgresql://h",
        ] {
            let result = with(ok).validate();
            if cfg!(feature = "sql") {
                assert!(result.is_ok(), "{ok}: {result:?}");
            } else {
                assert!(result.unwrap_err().message.contains("`sql` feature"));
            }
        }
        let err = with("mysql://h/db").validate().unwrap_err();
        assert_eq!(err.field, "url");
        assert!(err.message.contains("`mysql:`"), "{err}");
    }

    #[test]
    fn replicas_need_postgres_and_pool_sizes_make_sense() {
        let config = DatabaseConfig {
            replicas: vec!["postgres://r/db".into()],
            ..DatabaseConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "replicas[0]");
        let config = DatabaseConfig {
            min_connections: 11,
            ..DatabaseConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "max_connections");
        let config = DatabaseConfig {
            statement_timeout: Duration::ZERO,
            ..DatabaseConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "statement_timeout");
        let mut config = DatabaseConfig::default();
        config.breaker.adaptive.k = 0.5;
        assert_eq!(config.validate().unwrap_err().field, "breaker.adaptive.k");
    }
}
