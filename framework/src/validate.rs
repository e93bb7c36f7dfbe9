//! Validation of decoded requests.
//!
//! Implement [`Validate`] for a request type and the handler macros
//! ([`#[truss::route]`](macro@crate::route), [`#[truss::grpc]`](macro@crate::grpc)) check every
//! decoded body, query and gRPC message before the handler runs; a failure answers 400 /
//! `INVALID_ARGUMENT` listing every failing field (see [`Error::invalid`](crate::Error::invalid)).
//! Types without an implementation are not checked.
//!
//! ```
//! use truss::validate::{FieldErrors, Validate};
//!
//! struct CreateUser { name: String, email: String }
//!
//! impl Validate for CreateUser {
//!     fn validate(&self) -> Result<(), FieldErrors> {
//!         let mut errors = FieldErrors::new();
//!         if self.name.trim().is_empty() {
//!             errors.add("name", "must not be empty");
//!         }
//!         if !self.email.contains('@') {
//!             errors.add("email", "must be an email address");
//!         }
//!         errors.into_result()
//!     }
//! }
//!
//! let bad = CreateUser { name: " ".into(), email: "nope".into() };
//! let errors = bad.validate().unwrap_err();
//! assert_eq!(errors.to_string(), "email must be an email address; name must not be empty");
//! ```
//!
//! (This is for requests; config sections use [`config::Section`](crate::config::Section).)

use std::collections::BTreeMap;
use std::fmt;

/// A request type that can check itself after decoding.
pub trait Validate {
    /// `Ok(())`, or every failing field with what is wrong with it.
    fn validate(&self) -> Result<(), FieldErrors>;
}

/// The failing fields of a request, by field name (a field keeps its first problem).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    /// No failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong; a second problem with the same field is dropped.
    pub fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) -> &mut Self {
        self.0.entry(field.into()).or_insert_with(|| problem.into());
        self
    }

    /// Whether nothing failed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing failed.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// The failures, by field name.
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }

    /// The failures, by field name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, problem)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{field} {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}
