//! Pieces of a macro's input that `#[truss::route]` and `#[truss::grpc]` read alike: the
//! `method, "/path"` pair and a function returning `Result`.

use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{
    Error, GenericArgument, Ident, LitStr, PathArguments, ReturnType, Signature, Token, Type,
};

/// The HTTP methods a route can have, lower case.
pub const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

/// Parses `method, "/path"`, pointing at `usage` when either is missing.
///
/// The method must be one of [`METHODS`]; the path is not checked (see [`route_params`](super::path::route_params)).
pub fn method_and_path(input: ParseStream<'_>, usage: &str) -> syn::Result<(Ident, LitStr)> {
    let method: Ident = input.parse().map_err(|e| Error::new(e.span(), usage))?;
    let name = method.to_string();
    if !METHODS.contains(&name.as_str()) {
        return Err(Error::new(
            method.span(),
            format!(
                "unknown HTTP method `{name}`: use one of {}",
                METHODS.join(", ")
            ),
        ));
    }
    input
        .parse::<Token![,]>()
        .map_err(|e| Error::new(e.span(), usage))?;
    let path: LitStr = input.parse().map_err(|e| Error::new(e.span(), usage))?;
    Ok((method, path))
}

/// The `Result<..>` type `sig` returns, or the error `message` when it returns anything
/// else: at the return type, or at the function's name when it has none.
pub fn returned_result<'a>(sig: &'a Signature, message: &str) -> syn::Result<&'a Type> {
    match &sig.output {
        ReturnType::Type(_, ty) if is_result(ty) => Ok(ty),
        ReturnType::Type(_, ty) => Err(Error::new(ty.span(), message)),
        ReturnType::Default => Err(Error::new(sig.ident.span(), message)),
    }
}

/// Whether `ty` is a path ending in `Result` (`Result<T, E>`, `std::result::Result<T, E>`,
/// an alias such as `io::Result<T>`).
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        _ => false,
    }
}

/// `T` of `Result<T, E>`.
pub fn ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let PathArguments::AngleBracketed(args) = &p.path.segments.last()?.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}
