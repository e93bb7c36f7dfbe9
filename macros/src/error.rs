//! `#[derive(truss::Error)]`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Fields, LitInt, LitStr};

enum Kind {
    Declared {
        code: u16,
        reason: LitStr,
        message: Option<LitStr>,
    },
    Transparent,
}

struct Variant<'a> {
    ident: &'a syn::Ident,
    fields: &'a Fields,
    kind: Kind,
}

pub fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let Data::Enum(data) = &input.data else {
        return Err(Error::new(
            input.ident.span(),
            "#[derive(truss::Error)] works on enums: one variant per error, each with \
             #[error(code = 404, reason = \"NOT_FOUND\")]",
        ));
    };
    if data.variants.is_empty() {
        return Err(Error::new(
            input.ident.span(),
            "the error enum has no variants",
        ));
    }
    let variants = data
        .variants
        .iter()
        .map(|v| {
            Ok(Variant {
                ident: &v.ident,
                fields: &v.fields,
                kind: variant_kind(v)?,
            })
        })
        .collect::<syn::Result<Vec<_>>>()?;

    let name = &input.ident;
    let (impl_g, ty_g, where_g) = input.generics.split_for_impl();

    let display_arms = variants.iter().map(|v| {
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
    });
    let into_arms = variants.iter().map(|v| {
        let pat = match (&v.kind, v.fields) {
            (Kind::Transparent, _) => pattern(name, v),
            (_, Fields::Named(_)) => { let i = v.ident; quote! { #name::#i { .. } } }
            (_, Fields::Unnamed(_)) => { let i = v.ident; quote! { #name::#i ( .. ) } }
            (_, Fields::Unit) => { let i = v.ident; quote! { #name::#i } }
        };
        match &v.kind {
            Kind::Declared { code, reason, .. } => quote! {
                #pat => ::truss::Error::new(#code, #reason, ::std::string::ToString::to_string(&err))
            },
            Kind::Transparent => {
                quote! { #pat => ::core::convert::Into::<::truss::Error>::into(_0) }
            }
        }
    });
    let from_impls = variants.iter().filter_map(|v| match (&v.kind, v.fields) {
        (Kind::Transparent, Fields::Unnamed(f)) => {
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
        _ => None,
    });

    Ok(quote! {
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

fn variant_kind(v: &syn::Variant) -> syn::Result<Kind> {
    let usage = "expected #[error(code = 404, reason = \"USER_NOT_FOUND\", message = \"user {id} not found\")] or #[error(transparent)]";
    let mut attrs = v.attrs.iter().filter(|a| a.path().is_ident("error"));
    let Some(attr) = attrs.next() else {
        return Err(Error::new(
            v.ident.span(),
            format!(
                "variant `{}` needs an #[error(...)] attribute: {usage}",
                v.ident
            ),
        ));
    };
    if let Some(extra) = attrs.next() {
        return Err(Error::new(
            extra.span(),
            "only one #[error(...)] per variant",
        ));
    }
    let mut code: Option<(u16, Span)> = None;
    let mut reason: Option<LitStr> = None;
    let mut message: Option<LitStr> = None;
    let mut transparent = None;
    attr.parse_nested_meta(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "code" => {
                let lit: LitInt = meta.value()?.parse()?;
                let value: u16 = lit.base10_parse().map_err(|_| {
                    Error::new(lit.span(), "`code` must be an HTTP status code such as 404")
                })?;
                if !(400..=599).contains(&value) {
                    return Err(Error::new(
                        lit.span(),
                        format!("`code` must be an error status between 400 and 599, got {value}"),
                    ));
                }
                code = Some((value, lit.span()));
            }
            "reason" => {
                let lit: LitStr = meta.value()?.parse()?;
                let text = lit.value();
                let valid = !text.is_empty()
                    && text
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !valid {
                    return Err(Error::new(
                        lit.span(),
                        format!(
                            "`reason` must be SCREAMING_SNAKE_CASE (A-Z, 0-9, _), got \"{text}\""
                        ),
                    ));
                }
                reason = Some(lit);
            }
            "message" => message = Some(meta.value()?.parse()?),
            "transparent" => transparent = Some(meta.path.span()),
            _ => {
                return Err(meta.error(format!(
                    "unknown #[error] option `{key}`: use code, reason, message or transparent"
                )));
            }
        }
        Ok(())
    })?;
    if let Some(span) = transparent {
        if code.is_some() || reason.is_some() || message.is_some() {
            return Err(Error::new(span, "`transparent` takes no other options"));
        }
        let one_field = matches!(&v.fields, Fields::Unnamed(f) if f.unnamed.len() == 1);
        if !one_field {
            return Err(Error::new(
                v.ident.span(),
                "a transparent variant wraps exactly one value: `Upstream(truss::Error)`",
            ));
        }
        return Ok(Kind::Transparent);
    }
    let (Some((code, _)), Some(reason)) = (code, reason) else {
        return Err(Error::new(
            attr.meta.span(),
            format!("missing `code` or `reason`: {usage}"),
        ));
    };
    if let Some(msg) = &message {
        check_placeholders(msg, &v.fields)?;
    }
    Ok(Kind::Declared {
        code,
        reason,
        message,
    })
}

/// A message may only name the variant's fields.
fn check_placeholders(msg: &LitStr, fields: &Fields) -> syn::Result<()> {
    let text = msg.value();
    let mut rest = text.as_str();
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        if let Some(escaped) = after.strip_prefix('{') {
            rest = escaped;
            continue;
        }
        let end = after
            .find('}')
            .ok_or_else(|| Error::new(msg.span(), "unclosed `{` in message"))?;
        let name = after[..end].split(':').next().unwrap_or_default();
        let known = match fields {
            Fields::Named(f) => f
                .named
                .iter()
                .any(|f| f.ident.as_ref().is_some_and(|i| i == name)),
            Fields::Unnamed(f) => name.parse::<usize>().is_ok_and(|i| i < f.unnamed.len()),
            Fields::Unit => false,
        };
        if !known {
            return Err(Error::new(
                msg.span(),
                format!("message names `{{{name}}}`, which is not a field of this variant"),
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}
