//! What a user is and what can go wrong, independent of any transport or storage.

use truss::validate::FieldErrors;

/// A user (serializable: the cache keeps it as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    /// Assigned by the repository.
    pub id: u64,
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// Unique email address.
    pub email: String,
}

/// A user to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    /// New name.
    pub name: Option<String>,
    /// New email.
    pub email: Option<String>,
}

/// The domain's errors; the derive gives each its HTTP status, gRPC code and reason.
#[derive(Debug, Clone, truss::Error)]
pub enum UserError {
    /// No user with this id.
    #[error(code = 404, reason = "USER_NOT_FOUND", message = "user {0} not found")]
    NotFound(u64),
    /// Another user has this email.
    #[error(
        code = 409,
        reason = "EMAIL_TAKEN",
        message = "{email} is already registered"
    )]
    EmailTaken {
        /// The email.
        email: String,
    },
    /// A page token this service did not issue.
    #[error(
        code = 400,
        reason = "INVALID_PAGE_TOKEN",
        message = "page token {0:?} is not valid"
    )]
    InvalidPageToken(String),
    /// The store failed (down: 503, deadline: 504, ...); its error is passed on as it came.
    #[error(transparent)]
    Storage(truss::Error),
}

/// Checks a name (when `required`, or when present).
pub fn check_name(name: &str, required: bool, errors: &mut FieldErrors) {
    let len = name.trim().chars().count();
    if len == 0 && required {
        errors.add("name", "must not be empty");
    } else if len > 100 {
        errors.add("name", "must be at most 100 characters");
    }
}

/// Checks an email address (when `required`, or when present).
pub fn check_email(email: &str, required: bool, errors: &mut FieldErrors) {
    if email.is_empty() {
        if required {
            errors.add("email", "must not be empty");
        }
        return;
    }
    let parts: Vec<&str> = email.split('@').collect();
    let valid = parts.len() == 2
        && !parts[0].is_empty()
        && parts[1].contains('.')
        && email.len() <= 254
        && !email.chars().any(char::is_whitespace);
    if !valid {
        errors.add("email", "must be an email address like ada@example.com");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for (email, ok) in [
            ("ada@example.com", true),
            ("ada@example", false),
            ("@example.com", false),
            ("a b@example.com", false),
            ("a@b@example.com", false),
        ] {
            let mut errors = FieldErrors::new();
            check_email(email, true, &mut errors);
            assert_eq!(errors.is_empty(), ok, "{email}");
        }
    }
}
