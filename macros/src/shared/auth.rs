//! Per-route authorization: `auth = "public" | "required"` and `scope = "..."` options, the
//! standalone `#[auth(...)]` method attribute, and the link-time declarations
//! (`truss::__private::Declared`) the runtime reads.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Error, Ident, Lit, LitStr, Meta, Token};

/// Who may call a route, as an attribute declares it.
#[derive(Clone)]
pub enum Policy {
    /// `auth = "public"`: anyone.
    Public,
    /// `auth = "required"`: a valid token.
    Authenticated,
    /// `scope = "users:write"`: a valid token holding the scope.
    Scope(LitStr),
}

/// The `auth` and `scope` options of an attribute, as given; [`AuthOptions::policy`]
/// combines them.
#[derive(Default)]
pub struct AuthOptions {
    /// `auth = "..."`: the literal and its (checked) meaning.
    auth: Option<(LitStr, Policy)>,
    /// `scope = "..."`.
    scope: Option<LitStr>,
}

/// How the standalone attribute is written, for error messages.
const STANDALONE: &str =
    "expected #[auth(public)], #[auth(required)] or #[auth(scope = \"users:write\")]";

/// How the options are written, for error messages.
const OPTIONS: &str = "auth = \"public\" (anyone), auth = \"required\" (a valid token) or \
                       scope = \"users:write\" (a valid token holding the scope)";

impl AuthOptions {
    /// Whether `key` names one of these options.
    pub fn is_option(key: &Ident) -> bool {
        key == "auth" || key == "scope"
    }

    /// Whether any option was given.
    pub fn is_empty(&self) -> bool {
        self.auth.is_none() && self.scope.is_none()
    }

    /// Sets `auth = value` or `scope = value` (`key` is one of [`Self::is_option`]),
    /// checking the value.
    pub fn set(&mut self, key: &Ident, value: &Lit) -> syn::Result<()> {
        let Lit::Str(s) = value else {
            return Err(Error::new(
                value.span(),
                format!("`{key}` expects a string: {OPTIONS}"),
            ));
        };
        if key == "auth" {
            if self.auth.is_some() {
                return Err(Error::new(s.span(), "`auth` is given twice"));
            }
            self.auth = Some((s.clone(), auth_value(s)?));
        } else {
            if self.scope.is_some() {
                return Err(Error::new(s.span(), "`scope` is given twice"));
            }
            self.scope = Some(checked_scope(s)?);
        }
        Ok(())
    }

    /// The policy the options declare (`None` without any), or why they contradict.
    pub fn policy(&self) -> syn::Result<Option<Policy>> {
        match (&self.auth, &self.scope) {
            (Some((_, Policy::Public)), Some(scope)) => Err(Error::new(
                scope.span(),
                "`auth = \"public\"` and `scope` contradict each other: a scope needs a valid \
                 token; drop one of them",
            )),
            (_, Some(scope)) => Ok(Some(Policy::Scope(scope.clone()))),
            (Some((_, policy)), None) => Ok(Some(policy.clone())),
            (None, None) => Ok(None),
        }
    }
}

/// `"public"` or `"required"`.
fn auth_value(s: &LitStr) -> syn::Result<Policy> {
    match s.value().as_str() {
        "public" => Ok(Policy::Public),
        "required" => Ok(Policy::Authenticated),
        other => Err(Error::new(
            s.span(),
            format!(
                "unknown `auth` value {other:?}: use auth = \"public\" (anyone) or \
                 auth = \"required\" (a valid token); for a scope write scope = \"users:write\""
            ),
        )),
    }
}

/// A scope: not empty, no whitespace (the `scope` claim separates scopes with spaces).
fn checked_scope(s: &LitStr) -> syn::Result<LitStr> {
    let value = s.value();
    if value.is_empty() {
        return Err(Error::new(s.span(), "`scope` must not be empty"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(Error::new(
            s.span(),
            format!("`scope` is a single scope, without spaces: {value:?}"),
        ));
    }
    Ok(s.clone())
}

impl Parse for Policy {
    /// The arguments of a standalone `#[auth(public)]`, `#[auth(required)]` or
    /// `#[auth(scope = "users:write")]`.
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let usage = STANDALONE;
        let key: Ident = input.parse().map_err(|e| Error::new(e.span(), usage))?;
        let policy = if key == "public" {
            Policy::Public
        } else if key == "required" {
            Policy::Authenticated
        } else if key == "scope" {
            input
                .parse::<Token![=]>()
                .map_err(|e| Error::new(e.span(), usage))?;
            let scope: LitStr = input.parse().map_err(|e| Error::new(e.span(), usage))?;
            Policy::Scope(checked_scope(&scope)?)
        } else {
            return Err(Error::new(
                key.span(),
                format!("unknown `auth` value `{key}`: {usage}"),
            ));
        };
        if !input.is_empty() {
            return Err(Error::new(
                input.span(),
                format!("unexpected tokens: {usage}"),
            ));
        }
        Ok(policy)
    }
}

/// Parses a standalone `#[auth(...)]` attribute.
pub fn standalone(attr: &Attribute) -> syn::Result<Policy> {
    match &attr.meta {
        Meta::List(_) => attr.parse_args::<Policy>(),
        _ => Err(Error::new_spanned(attr, STANDALONE)),
    }
}

/// `DeclaredRoute::Http("POST", "/v1/users")` for `method` (lower case) and `path`.
pub fn http_route(method: &Ident, path: &LitStr) -> TokenStream {
    let upper = LitStr::new(&method.to_string().to_uppercase(), method.span());
    quote! { ::truss::__private::DeclaredRoute::Http(#upper, #path) }
}

/// `DeclaredRoute::Grpc(service, "Method")`: `service` is an expression of type
/// `&'static str` usable in a static, `method` the Rust method (`create_user`), whose
/// UpperCamelCase is the proto method's name (`CreateUser`).
pub fn grpc_route(service: &TokenStream, method: &Ident) -> TokenStream {
    let name = LitStr::new(&proto_method_name(method), method.span());
    quote! { ::truss::__private::DeclaredRoute::Grpc(#service, #name) }
}

/// `create_user` -> `CreateUser` (what tonic's `create_user` was generated from).
pub fn proto_method_name(method: &Ident) -> String {
    let text = method.to_string();
    let text = text.strip_prefix("r#").unwrap_or(&text);
    text.split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect()
}

/// The item declaring `policy` for `route` (a `DeclaredRoute` expression), collected at
/// link time.
pub fn declare(route: &TokenStream, policy: &Policy) -> TokenStream {
    let private = quote! { ::truss::__private };
    let policy = match policy {
        Policy::Public => quote! { #private::StaticPolicy::Public },
        Policy::Authenticated => quote! { #private::StaticPolicy::Authenticated },
        Policy::Scope(scope) => quote! { #private::StaticPolicy::Scope(#scope) },
    };
    quote! {
        #private::inventory::submit! {
            #private::Declared {
                route: #route,
                policy: #policy,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;
    use syn::parse_quote;

    /// A policy as text, for comparisons (`Policy` has no `PartialEq`: `LitStr` needs syn's
    /// `extra-traits` for it).
    fn show(p: &Policy) -> String {
        match p {
            Policy::Public => "public".to_owned(),
            Policy::Authenticated => "required".to_owned(),
            Policy::Scope(s) => format!("scope {}", s.value()),
        }
    }

    /// The policy of the options, as text (`-` for none), or the error.
    fn policy(pairs: &[(&str, Lit)]) -> String {
        let mut o = AuthOptions::default();
        let result = pairs
            .iter()
            .try_for_each(|(k, v)| o.set(&Ident::new(k, Span::call_site()), v))
            .and_then(|()| o.policy());
        match result {
            Ok(p) => p.as_ref().map_or_else(|| "-".to_owned(), show),
            Err(e) => e.to_string(),
        }
    }

    /// The policy of a standalone attribute, as text, or the error.
    fn attr(a: &Attribute) -> String {
        standalone(a).map_or_else(|e| e.to_string(), |p| show(&p))
    }

    #[test]
    fn options_give_the_policy() {
        assert_eq!(policy(&[]), "-");
        assert_eq!(policy(&[("auth", parse_quote!("public"))]), "public");
        assert_eq!(policy(&[("auth", parse_quote!("required"))]), "required");
        assert_eq!(
            policy(&[("scope", parse_quote!("users:write"))]),
            "scope users:write"
        );
        let both = [
            ("auth", parse_quote!("required")),
            ("scope", parse_quote!("users:write")),
        ];
        assert_eq!(policy(&both), "scope users:write");
    }

    #[test]
    fn bad_options_are_refused() {
        let unknown = policy(&[("auth", parse_quote!("admin"))]);
        assert!(
            unknown.contains("unknown `auth` value \"admin\""),
            "{unknown}"
        );
        let contradiction = policy(&[
            ("auth", parse_quote!("public")),
            ("scope", parse_quote!("x")),
        ]);
        assert!(contradiction.contains("contradict"), "{contradiction}");
        let not_string = policy(&[("auth", parse_quote!(true))]);
        assert!(not_string.contains("expects a string"), "{not_string}");
        assert!(policy(&[("scope", parse_quote!(""))]).contains("must not be empty"));
        assert!(policy(&[("scope", parse_quote!("a b"))]).contains("without spaces"));
        let twice = policy(&[
            ("auth", parse_quote!("public")),
            ("auth", parse_quote!("public")),
        ]);
        assert!(twice.contains("given twice"), "{twice}");
    }

    #[test]
    fn standalone_attribute() {
        assert_eq!(attr(&parse_quote!(#[auth(public)])), "public");
        assert_eq!(attr(&parse_quote!(#[auth(required)])), "required");
        assert_eq!(
            attr(&parse_quote!(#[auth(scope = "users:write")])),
            "scope users:write"
        );
        assert!(attr(&parse_quote!(#[auth(admin)])).contains("unknown `auth` value `admin`"));
        assert!(attr(&parse_quote!(#[auth(public, required)])).contains("unexpected tokens"));
        assert!(attr(&parse_quote!(#[auth(scope)])).contains("expected #[auth("));
        assert!(attr(&parse_quote!(#[auth(scope = "")])).contains("must not be empty"));
        assert!(attr(&parse_quote!(#[auth])).contains("expected #[auth("));
        assert!(attr(&parse_quote!(#[auth = "public"])).contains("expected #[auth("));
    }

    #[test]
    fn proto_method_names() {
        let name = |s: &str| {
            syn::parse_str::<Ident>(s)
                .map(|i| proto_method_name(&i))
                .ok()
        };
        assert_eq!(name("create_user").as_deref(), Some("CreateUser"));
        assert_eq!(name("get").as_deref(), Some("Get"));
        assert_eq!(name("r#match").as_deref(), Some("Match"));
        assert_eq!(name("list_v2_items").as_deref(), Some("ListV2Items"));
    }

    #[test]
    fn declarations() {
        let method: Ident = parse_quote!(post);
        let path: LitStr = parse_quote!("/v1/users");
        let route = http_route(&method, &path);
        let expected = quote! { ::truss::__private::DeclaredRoute::Http("POST", "/v1/users") };
        assert_eq!(route.to_string(), expected.to_string());
        let scope = Policy::Scope(parse_quote!("users:write"));
        let item = declare(&route, &scope).to_string();
        assert!(item.contains("inventory :: submit !"), "{item}");
        assert!(
            item.contains("StaticPolicy :: Scope (\"users:write\")"),
            "{item}"
        );
        let service = quote! { pb::users_server::SERVICE_NAME };
        let grpc = grpc_route(&service, &parse_quote!(create_user)).to_string();
        let expected = "Grpc (pb :: users_server :: SERVICE_NAME , \"CreateUser\")";
        assert!(grpc.contains(expected), "{grpc}");
    }
}
