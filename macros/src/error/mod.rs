//! `#[derive(truss::Error)]`.
//!
//! [`parse`] reads the enum and its `#[error(...)]` attributes into a checked
//! [`model::ErrorEnum`] (every misuse is reported there); [`generate`] turns the model into
//! the `Display`, `Error` and conversion impls.

mod generate;
mod model;
mod parse;

use proc_macro2::TokenStream;
use syn::DeriveInput;

/// Expands `#[derive(truss::Error)]` on `input`.
pub fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let error = parse::error_enum(&input)?;
    Ok(generate::error_enum(&error))
}
