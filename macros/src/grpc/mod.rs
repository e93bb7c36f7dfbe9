//! `#[truss::grpc(path::to::ServiceTrait)]` on an impl block of plain async methods.
//!
//! [`parse`] reads the attribute and the block into a checked [`model::Service`] (every
//! misuse is reported there); [`generate`] turns the model into the tonic trait impl and
//! the optional HTTP/JSON routes.

mod generate;
mod model;
mod parse;

use proc_macro2::TokenStream;
use syn::ItemImpl;

pub use model::Args;

/// Expands `#[truss::grpc(args)] block`.
pub fn expand(args: Args, block: ItemImpl) -> syn::Result<TokenStream> {
    let service = parse::service(args, block)?;
    Ok(generate::service(&service))
}
