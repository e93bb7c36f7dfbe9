//! `#[truss::route(method, "/path", options...)]`.
//!
//! [`parse`] reads the attribute and the handler into a checked [`model::Route`] (every
//! misuse is reported there); [`generate`] turns the model into the handler's axum glue.

mod generate;
mod model;
mod parse;

use proc_macro2::TokenStream;
use syn::ItemFn;

pub use model::Args;

/// Expands `#[truss::route(args)] func`.
pub fn expand(args: Args, func: ItemFn) -> syn::Result<TokenStream> {
    let route = parse::route(args, func)?;
    Ok(generate::route(&route))
}
