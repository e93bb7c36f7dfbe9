//! A `#[derive(truss::Error)]` enum as checked by [`parse`](super::parse) and read by
//! [`generate`](super::generate).

use syn::{Fields, Generics, Ident, LitStr};

/// What a variant's `#[error(...)]` says.
pub enum Kind {
    /// `#[error(code = 404, reason = "NOT_FOUND", message = "...")]`.
    Declared {
        /// The HTTP-style code, 400 to 599.
        code: u16,
        /// The machine-readable reason, SCREAMING_SNAKE_CASE.
        reason: LitStr,
        /// The message's format string over the variant's fields; the reason without one.
        message: Option<LitStr>,
    },
    /// `#[error(transparent)]` on a one-field variant: the wrapped error as it is.
    Transparent,
}

/// One variant of the enum.
pub struct Variant<'a> {
    /// Its name.
    pub ident: &'a Ident,
    /// Its fields.
    pub fields: &'a Fields,
    /// What its attribute says.
    pub kind: Kind,
}

/// A checked error enum.
pub struct ErrorEnum<'a> {
    /// The enum's name.
    pub name: &'a Ident,
    /// The enum's generics.
    pub generics: &'a Generics,
    /// Its variants, in order.
    pub variants: Vec<Variant<'a>>,
}
