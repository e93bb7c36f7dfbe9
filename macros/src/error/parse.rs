//! Enum -> [`ErrorEnum`]: every check of `#[derive(truss::Error)]` happens here.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Error, Fields, LitInt, LitStr};

use super::model::{ErrorEnum, Kind, Variant};

/// How a variant's attribute looks, appended to errors.
const USAGE: &str = "expected #[error(code = 404, reason = \"USER_NOT_FOUND\", message = \"user {id} not found\")] or #[error(transparent)]";

/// Checks the enum and reads each variant's attribute.
pub fn error_enum(input: &DeriveInput) -> syn::Result<ErrorEnum<'_>> {
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
    Ok(ErrorEnum {
        name: &input.ident,
        generics: &input.generics,
        variants,
    })
}

/// The options written in one `#[error(...)]`.
#[derive(Default)]
struct Options {
    /// `code = 404`.
    code: Option<u16>,
    /// `reason = "NOT_FOUND"`.
    reason: Option<LitStr>,
    /// `message = "..."`.
    message: Option<LitStr>,
    /// Where `transparent` was written.
    transparent: Option<Span>,
}

/// Reads and checks the variant's one `#[error(...)]`.
fn variant_kind(v: &syn::Variant) -> syn::Result<Kind> {
    let attr = error_attr(v)?;
    let options = options(attr)?;
    if let Some(span) = options.transparent {
        if options.code.is_some() || options.reason.is_some() || options.message.is_some() {
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
    let (Some(code), Some(reason)) = (options.code, options.reason) else {
        return Err(Error::new(
            attr.meta.span(),
            format!("missing `code` or `reason`: {USAGE}"),
        ));
    };
    if let Some(msg) = &options.message {
        check_placeholders(msg, &v.fields)?;
    }
    Ok(Kind::Declared {
        code,
        reason,
        message: options.message,
    })
}

/// The variant's `#[error(...)]`: exactly one.
fn error_attr(v: &syn::Variant) -> syn::Result<&Attribute> {
    let mut attrs = v.attrs.iter().filter(|a| a.path().is_ident("error"));
    let Some(attr) = attrs.next() else {
        return Err(Error::new(
            v.ident.span(),
            format!(
                "variant `{}` needs an #[error(...)] attribute: {USAGE}",
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
    Ok(attr)
}

/// The options of an `#[error(...)]`, each checked on its own.
fn options(attr: &Attribute) -> syn::Result<Options> {
    let mut options = Options::default();
    attr.parse_nested_meta(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "code" => options.code = Some(code(&meta)?),
            "reason" => options.reason = Some(reason(&meta)?),
            "message" => options.message = Some(meta.value()?.parse()?),
            "transparent" => options.transparent = Some(meta.path.span()),
            _ => {
                return Err(meta.error(format!(
                    "unknown #[error] option `{key}`: use code, reason, message or transparent"
                )));
            }
        }
        Ok(())
    })?;
    Ok(options)
}

/// `code = 404`: an error status, 400 to 599.
fn code(meta: &ParseNestedMeta<'_>) -> syn::Result<u16> {
    let lit: LitInt = meta.value()?.parse()?;
    let value: u16 = lit
        .base10_parse()
        .map_err(|_| Error::new(lit.span(), "`code` must be an HTTP status code such as 404"))?;
    if !(400..=599).contains(&value) {
        return Err(Error::new(
            lit.span(),
            format!("`code` must be an error status between 400 and 599, got {value}"),
        ));
    }
    Ok(value)
}

/// `reason = "NOT_FOUND"`: SCREAMING_SNAKE_CASE.
fn reason(meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let lit: LitStr = meta.value()?.parse()?;
    let text = lit.value();
    let valid = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(Error::new(
            lit.span(),
            format!("`reason` must be SCREAMING_SNAKE_CASE (A-Z, 0-9, _), got \"{text}\""),
        ));
    }
    Ok(lit)
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
