//! What every config section shares, in a leaf module that imports nothing from the crate:
//! the [`Section`] trait (validation), [`ValidationError`] and the [`duration`] format.
//!
//! Section types live with the code they configure (`resilience`, `observe`, `registry`);
//! they depend on this module only, and `config` depends on them, so there is no cycle.
//! Everything here is re-exported from [`config`](crate::config).

pub mod duration;

use std::fmt;

/// A config section (or a part of one) that checks itself after decoding.
///
/// Return a [`ValidationError`] naming the field relative to the section; the loader adds the
/// section's key and the source the value came from. The framework's own sections implement
/// it, and so does the team's `[app]` section:
///
/// ```
/// use serde::Deserialize;
/// use truss::config::{Section, ValidationError};
///
/// #[derive(Debug, Default, Deserialize)]
/// #[serde(deny_unknown_fields, default)]
/// struct Hello {
///     greeting: String,
/// }
///
/// impl Section for Hello {
///     fn validate(&self) -> Result<(), ValidationError> {
///         if self.greeting.is_empty() {
///             return Err(ValidationError::new("greeting", "must not be empty"));
///         }
///         Ok(())
///     }
/// }
///
/// let err = Hello::default().validate().unwrap_err().within("app");
/// assert_eq!(err.field, "app.greeting");
/// ```
pub trait Section {
    /// Returns `Ok(())` when the section is usable. The default accepts everything.
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

/// A problem with one field of a decoded config section, reported by [`Section::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The field path inside the section, e.g. `greeting` or `db.url`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ValidationError {
    /// A validation error for `field` (relative to its section).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error seen from the enclosing section: `field` becomes `prefix.field` (or
    /// `prefix` when the field is empty).
    ///
    /// ```
    /// use truss::config::ValidationError;
    ///
    /// let e = ValidationError::new("burst", "must be at least 1").within("rate_limit");
    /// assert_eq!(e.field, "rate_limit.burst");
    /// assert_eq!(ValidationError::new("", "bad").within("app").field, "app");
    /// ```
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}
