use std::fmt;

/// Why a governed database call failed, classified so that domain code can match the cases
/// it handles (a unique violation is usually "already exists") and pass the rest on with `?`:
/// the [`From`] conversion into [`Error`](struct@crate::Error) gives each kind its status.
///
/// | kind | [`crate::Error`](struct@crate::Error) | breaker |
/// | --- | --- | --- |
/// | `Unavailable` (breaker open, pool timeout, connection refused or lost) | 503 `DATABASE_UNAVAILABLE` | failure |
/// | `DeadlineExceeded` (request deadline or `statement_timeout`) | 504 `DEADLINE_EXCEEDED` | failure |
/// | `UniqueViolation`, `ForeignKeyViolation` | 409 `CONSTRAINT_VIOLATION` | success |
/// | `CheckViolation`, `NotNullViolation` | 400 `CONSTRAINT_VIOLATION` | success |
/// | `NotFound` (`fetch_one` found no row) | 404 `NOT_FOUND` | success |
/// | `Query` (anything else: bad SQL, decoding) | 500 `DATABASE_ERROR` | success |
///
/// The message sent to callers never holds SQL or the database's own text; `Display` does,
/// for logs.
///
/// ```
/// use truss::sql::SqlError;
///
/// let taken = SqlError::UniqueViolation { constraint: Some("users_email_key".into()) };
/// let err = truss::Error::from(taken);
/// assert_eq!(err.code(), 409);
/// assert!(err.is("CONSTRAINT_VIOLATION"));
/// assert_eq!(err.metadata()["constraint"], "users_email_key");
/// assert_eq!(truss::Error::from(SqlError::DeadlineExceeded).code(), 504);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// The database cannot be reached now: the breaker is open, no connection came within
    /// `acquire_timeout`, or the connection was refused or lost.
    Unavailable(String),
    /// The request's deadline (or `statement_timeout`) passed before the call finished.
    DeadlineExceeded,
    /// A unique (or PostgreSQL exclusion) constraint was violated.
    UniqueViolation {
        /// PostgreSQL: the constraint's name; SQLite: the columns it names (`users.email`).
        constraint: Option<String>,
    },
    /// A foreign key constraint was violated.
    ForeignKeyViolation {
        /// PostgreSQL: the constraint's name; SQLite: none.
        constraint: Option<String>,
    },
    /// A check constraint was violated.
    CheckViolation {
        /// PostgreSQL: the constraint's name; SQLite: the constraint's name when it has one.
        constraint: Option<String>,
    },
    /// A NOT NULL constraint was violated.
    NotNullViolation {
        /// PostgreSQL: none (the column is in the message); SQLite: the column (`users.email`).
        constraint: Option<String>,
    },
    /// A query that must return a row returned none (`fetch_one`).
    NotFound,
    /// Any other failure; the string is the database's message, for logs only.
    Query(String),
}

impl SqlError {
    /// The kind as a metric label: `unavailable`, `deadline_exceeded`, `unique_violation`,
    /// `foreign_key_violation`, `check_violation`, `not_null_violation`, `not_found` or
    /// `query`.
    pub fn kind(&self) -> &'static str {
        match self {
            SqlError::Unavailable(_) => "unavailable",
            SqlError::DeadlineExceeded => "deadline_exceeded",
            SqlError::UniqueViolation { .. } => "unique_violation",
            SqlError::ForeignKeyViolation { .. } => "foreign_key_violation",
            SqlError::CheckViolation { .. } => "check_violation",
            SqlError::NotNullViolation { .. } => "not_null_violation",
            SqlError::NotFound => "not_found",
            SqlError::Query(_) => "query",
        }
    }

    /// Whether the database answered: everything but `Unavailable` and `DeadlineExceeded`
    /// counts as a success for the breaker.
    pub fn database_answered(&self) -> bool {
        !matches!(self, SqlError::Unavailable(_) | SqlError::DeadlineExceeded)
    }

    /// The constraint a violation names, if any.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            SqlError::UniqueViolation { constraint }
            | SqlError::ForeignKeyViolation { constraint }
            | SqlError::CheckViolation { constraint }
            | SqlError::NotNullViolation { constraint } => constraint.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            SqlError::DeadlineExceeded => f.write_str("database call exceeded its deadline"),
            SqlError::NotFound => f.write_str("no row found"),
            SqlError::Query(message) => write!(f, "database error: {message}"),
            violation => {
                let what = violation.kind().replace('_', " ");
                match violation.constraint() {
                    Some(constraint) => write!(f, "{what} on {constraint}"),
                    None => f.write_str(&what),
                }
            }
        }
    }
}

impl std::error::Error for SqlError {}

impl From<SqlError> for crate::Error {
    fn from(e: SqlError) -> Self {
        let violation = |code, e: &SqlError| {
            let err = crate::Error::new(code, "CONSTRAINT_VIOLATION", e.to_string());
            match e.constraint() {
                Some(constraint) => err.with_metadata("constraint", constraint),
                None => err,
            }
        };
        match &e {
            SqlError::Unavailable(_) => {
                crate::Error::unavailable("DATABASE_UNAVAILABLE", "the database is unavailable")
            }
            SqlError::DeadlineExceeded => crate::Error::deadline_exceeded(
                "DEADLINE_EXCEEDED",
                "the database call exceeded the deadline",
            ),
            SqlError::UniqueViolation { .. } | SqlError::ForeignKeyViolation { .. } => {
                violation(409, &e)
            }
            SqlError::CheckViolation { .. } | SqlError::NotNullViolation { .. } => {
                violation(400, &e)
            }
            SqlError::NotFound => crate::Error::not_found("NOT_FOUND", "not found"),
            SqlError::Query(_) => crate::Error::internal("DATABASE_ERROR", "database error"),
        }
    }
}

/// PostgreSQL SQLSTATE classes that mean the server, not the statement, is in trouble:
/// connection exception, insufficient resources, operator intervention, system error.
const UNAVAILABLE_CLASSES: &[&str] = &["08", "53", "57", "58"];

impl From<sqlx::Error> for SqlError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        let db = match e {
            sqlx::Error::RowNotFound => return SqlError::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => return SqlError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => db,
            other => return SqlError::Query(other.to_string()),
        };
        let constraint = db.constraint().map(str::to_owned);
        match db.kind() {
            ErrorKind::UniqueViolation | ErrorKind::ExclusionViolation => {
                let constraint = constraint.or_else(|| sqlite_columns(db.message()));
                return SqlError::UniqueViolation { constraint };
            }
            ErrorKind::ForeignKeyViolation => return SqlError::ForeignKeyViolation { constraint },
            ErrorKind::CheckViolation => {
                let constraint = constraint.or_else(|| sqlite_columns(db.message()));
                return SqlError::CheckViolation { constraint };
            }
            ErrorKind::NotNullViolation => {
                let constraint = constraint.or_else(|| sqlite_columns(db.message()));
                return SqlError::NotNullViolation { constraint };
            }
            _ => {}
        }
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
        if sqlite {
            // The primary result code: SQLITE_BUSY (5) and SQLITE_LOCKED (6) mean "not now".
            let primary = code.parse::<u32>().unwrap_or(0) & 0xff;
            if matches!(primary, 5 | 6) {
                return SqlError::Unavailable(db.message().to_owned());
            }
        } else if code == "57014" {
            // query_canceled: the server-side statement_timeout set from the deadline.
            return SqlError::DeadlineExceeded;
        } else if UNAVAILABLE_CLASSES
            .iter()
            .any(|class| code.starts_with(class))
        {
            return SqlError::Unavailable(db.message().to_owned());
        }
        SqlError::Query(db.message().to_owned())
    }
}

/// What follows `constraint failed: ` in a SQLite message (`users.email`).
fn sqlite_columns(message: &str) -> Option<String> {
    message
        .split_once("constraint failed: ")
        .map(|(_, columns)| columns.trim().to_owned())
        .filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_statuses_without_leaking_messages() {
        let cases = [
            (SqlError::Unavailable("10.0.0.7 refused".into()), 503),
            (SqlError::DeadlineExceeded, 504),
            (SqlError::ForeignKeyViolation { constraint: None }, 409),
            (SqlError::CheckViolation { constraint: None }, 400),
            (SqlError::NotNullViolation { constraint: None }, 400),
            (SqlError::NotFound, 404),
            (SqlError::Query("syntax error at SELECT secret".into()), 500),
        ];
        for (sql, code) in cases {
            let err = crate::Error::from(sql.clone());
            assert_eq!(err.code(), code, "{sql}");
            assert!(!err.message().contains("secret") && !err.message().contains("10.0.0.7"));
        }
        assert!(SqlError::NotFound.database_answered());
        assert!(!SqlError::DeadlineExceeded.database_answered());
    }

    #[test]
    fn sqlx_errors_are_classified() {
        assert_eq!(SqlError::from(sqlx::Error::RowNotFound), SqlError::NotFound);
        assert_eq!(
            SqlError::from(sqlx::Error::PoolTimedOut).kind(),
            "unavailable"
        );
        assert_eq!(
            sqlite_columns("UNIQUE constraint failed: users.email").as_deref(),
            Some("users.email")
        );
    }
}
