//! [`ErrorEnum`] -> `Display`, `std::error::Error`, the conversions into `truss::Error`,
//! `tonic::Status` and an axum response, and `From` for the transparent variants.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Fields, LitStr};

use super::model::{ErrorEnum, Kind, Variant};

/// The whole expansion.
pub fn error_enum(e: &ErrorEnum<'_>) -> TokenStream {
    let name = e.name;
    let (impl_g, ty_g, where_g) = e.generics.split_for_impl();
    let display_arms = e.variants.iter().map(|v| display_arm(name, v));
    let into_arms = e.variants.iter().map(|v| into_arm(name, v));
    let from_impls = e.variants.iter().filter_map(|v| from_impl(e, v));

    quote! {
        impl #impl_g ::core::fmt::Display for #name #ty_g #where_g {
            #[allow(unused_variables)]
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self {
                    #(#display_arms,)*
                }
            }
        }

        impl #impl_g ::std::error::Error for #name #ty_g #where_g {}

        impl #impl_g ::core::convert::From<#name #ty_g> for ::truss::Error #where_g {
            #[allow(unused_variables)]
            fn from(err: #name #ty_g) -> Self {
                match err {
                    #(#into_arms,)*
                }
            }
        }

        impl #impl_g ::core::convert::From<#name #ty_g> for ::truss::deps::tonic::Status #where_g {
            fn from(err: #name #ty_g) -> Self {
                ::truss::Error::from(err).to_status()
            }
        }

        impl #impl_g ::truss::deps::axum::response::IntoResponse for #name #ty_g #where_g {
            fn into_response(self) -> ::truss::deps::axum::response::Response {
                ::truss::deps::axum::response::IntoResponse::into_response(::truss::Error::from(self))
            }
        }

        #(#from_impls)*
    }
}

/// `E::V(_0) => write!(f, "... {_0}")`: the message, or the wrapped error's.
fn display_arm(name: &syn::Ident, v: &Variant<'_>) -> TokenStream {
    let pat = pattern(name, v);
    match &v.kind {
        Kind::Declared {
            reason, message, ..
        } => {
            let text = message.as_ref().unwrap_or(reason);
            let fmt = LitStr::new(&number_args(&text.value()), text.span());
            quote! { #pat => ::core::write!(f, #fmt) }
        }
        Kind::Transparent => quote! { #pat => ::core::fmt::Display::fmt(_0, f) },
    }
}

/// `E::V(..) => truss::Error::new(code, reason, message)`, or the wrapped error converted.
fn into_arm(name: &syn::Ident, v: &Variant<'_>) -> TokenStream {
    let i = v.ident;
    let pat = match (&v.kind, v.fields) {
        (Kind::Transparent, _) => pattern(name, v),
        (_, Fields::Named(_)) => quote! { #name::#i { .. } },
        (_, Fields::Unnamed(_)) => quote! { #name::#i ( .. ) },
        (_, Fields::Unit) => quote! { #name::#i },
    };
    match &v.kind {
        Kind::Declared { code, reason, .. } => quote! {
            #pat => ::truss::Error::new(#code, #reason, ::std::string::ToString::to_string(&err))
        },
        Kind::Transparent => {
            quote! { #pat => ::core::convert::Into::<::truss::Error>::into(_0) }
        }
    }
}

/// `impl From<Inner> for E` for a transparent variant.
fn from_impl(e: &ErrorEnum<'_>, v: &Variant<'_>) -> Option<TokenStream> {
    let (Kind::Transparent, Fields::Unnamed(f)) = (&v.kind, v.fields) else {
        return None;
    };
    let name = e.name;
    let (impl_g, ty_g, where_g) = e.generics.split_for_impl();
    let ty = &f.unnamed[0].ty;
    let ident = v.ident;
    Some(quote! {
        impl #impl_g ::core::convert::From<#ty> for #name #ty_g #where_g {
            fn from(inner: #ty) -> Self {
                Self::#ident(inner)
            }
        }
    })
}

/// `E::V(_0, _1)` / `E::V { a, b }` / `E::V`.
fn pattern(name: &syn::Ident, v: &Variant<'_>) -> TokenStream {
    let ident = v.ident;
    match v.fields {
        Fields::Named(f) => {
            let names = f.named.iter().map(|f| &f.ident);
            quote! { #name::#ident { #(#names),* } }
        }
        Fields::Unnamed(f) => {
            let names = (0..f.unnamed.len()).map(|i| format_ident!("_{}", i));
            quote! { #name::#ident ( #(#names),* ) }
        }
        Fields::Unit => quote! { #name::#ident },
    }
}

/// `{0}` → `{_0}` so positional fields are captured by name.
fn number_args(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '{' {
            if chars.peek() == Some(&'{') {
                out.push('{');
                chars.next();
            } else if chars.peek().is_some_and(char::is_ascii_digit) {
                out.push('_');
            }
        }
    }
    out
}
