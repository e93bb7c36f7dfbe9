//! Attribute and handler -> [`Route`]: every check of `#[truss::route]` happens here.

use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Error, FnArg, Ident, ItemFn, Lit, LitStr, Pat, PatType, Signature, Token};

use super::model::{Args, Options, Param, Role, Route};
use crate::shared::auth::AuthOptions;
use crate::shared::duration::duration_nanos;
use crate::shared::path::{PathParam, route_params};
use crate::shared::signature::{method_and_path, returned_result};

/// How a handler looks, appended to signature errors.
const SIGNATURE: &str = "a #[truss::route] handler is `async fn name(#[path] id: u64, #[body] req: Req, ...) -> Result<T, E>` where T: Serialize and E: Into<truss::Error>";

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let usage = "expected #[truss::route(get, \"/users/{id}\")], optionally followed by \
                     timeout = \"2s\", rate_limit = 100, burst = 20, breaker = false, status = 201, \
                     auth = \"public\" | \"required\", scope = \"users:write\"";
        let (method, path) = method_and_path(input, usage)?;
        let mut options = Options::default();
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: Lit = input.parse()?;
            options.set(&key, value)?;
        }
        Ok(Args {
            method,
            path,
            options,
        })
    }
}

impl Options {
    /// Sets the option `key = value`, checking its value.
    fn set(&mut self, key: &Ident, value: Lit) -> syn::Result<()> {
        if AuthOptions::is_option(key) {
            return self.auth.set(key, &value);
        }
        let name = key.to_string();
        let expected = |what: &str| Error::new(value.span(), format!("`{name}` expects {what}"));
        match (name.as_str(), &value) {
            ("timeout", Lit::Str(s)) => self.timeout = Some(duration_nanos(s)?),
            ("timeout", _) => return Err(expected("a duration string such as \"2s\"")),
            ("rate_limit", Lit::Int(i)) => self.rate_limit = Some(i.base10_parse::<u32>()?.into()),
            ("rate_limit", Lit::Float(f)) => self.rate_limit = Some(f.base10_parse()?),
            ("rate_limit", _) => return Err(expected("requests per second, e.g. 100 or 0.5")),
            ("burst", Lit::Int(i)) => self.burst = Some(i.base10_parse()?),
            ("burst", _) => return Err(expected("a whole number of requests")),
            ("breaker", Lit::Bool(b)) => self.breaker = Some(b.value),
            ("breaker", _) => return Err(expected("true or false")),
            ("status", Lit::Int(i)) => self.status = Some(i.base10_parse()?),
            ("status", _) => return Err(expected("a success status code such as 201")),
            _ => {
                return Err(Error::new(
                    key.span(),
                    format!(
                        "unknown route option `{name}`: use timeout, rate_limit, burst, breaker, status, auth or scope"
                    ),
                ));
            }
        }
        self.check(&value)
    }

    /// Checks the values set so far; errors point at `value`, the one just set.
    fn check(&self, value: &Lit) -> syn::Result<()> {
        if let Some(rps) = self.rate_limit
            && !(rps.is_finite() && rps > 0.0)
        {
            return Err(Error::new(
                value.span(),
                "`rate_limit` must be more than 0 per second",
            ));
        }
        if self.burst == Some(0) {
            return Err(Error::new(value.span(), "`burst` must be at least 1"));
        }
        if let Some(s) = self.status
            && !(200..=299).contains(&s)
        {
            return Err(Error::new(
                value.span(),
                "`status` must be a 2xx success code",
            ));
        }
        Ok(())
    }
}

/// Checks the handler against the attribute and reads its parameters.
pub fn route(args: Args, mut func: ItemFn) -> syn::Result<Route> {
    check_signature(&func.sig)?;
    let segments = route_params(&args.path)?;
    let params = func
        .sig
        .inputs
        .iter_mut()
        .map(param)
        .collect::<syn::Result<Vec<_>>>()?;
    if params
        .iter()
        .filter(|p| matches!(p.role, Role::Body))
        .count()
        > 1
    {
        return Err(Error::new(
            func.sig.ident.span(),
            "a handler has at most one #[body]",
        ));
    }
    let path_params = match_path(&args.path, &segments, &params)?;
    if args.options.burst.is_some() && args.options.rate_limit.is_none() {
        return Err(Error::new(
            args.path.span(),
            "`burst` needs `rate_limit` as well",
        ));
    }
    let policy = args.options.auth.policy()?;
    Ok(Route {
        args,
        func,
        params,
        path_params,
        policy,
    })
}

/// An async, non-generic fn returning `Result`.
fn check_signature(sig: &Signature) -> syn::Result<()> {
    if sig.asyncness.is_none() {
        return Err(Error::new(
            sig.fn_token.span(),
            format!("handler must be async: {SIGNATURE}"),
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new(
            sig.generics.span(),
            "a route handler cannot be generic",
        ));
    }
    returned_result(sig, &format!("handler must return a Result: {SIGNATURE}"))?;
    Ok(())
}

/// Reads one parameter, removing its `#[path]`-style marker.
fn param(arg: &mut FnArg) -> syn::Result<Param> {
    let FnArg::Typed(pt) = arg else {
        return Err(Error::new(
            arg.span(),
            format!("a route handler takes no `self`: {SIGNATURE}"),
        ));
    };
    let role = take_role(pt)?;
    let name = match &*pt.pat {
        Pat::Ident(p) => Some(p.ident.clone()),
        _ => None,
    };
    if matches!(role, Role::Path) && name.is_none() {
        return Err(Error::new(
            pt.pat.span(),
            "a #[path] parameter needs a plain name matching the route's `{name}`",
        ));
    }
    Ok(Param {
        role,
        name,
        ty: (*pt.ty).clone(),
        span: pt.span(),
    })
}

/// Removes the parameter's `#[path]`, `#[query]`, `#[body]` or `#[state]` and returns
/// the role it gives ([`Role::Other`] without one).
fn take_role(pt: &mut PatType) -> syn::Result<Role> {
    let mut role = Role::Other;
    let mut seen = 0;
    let mut bad = None;
    pt.attrs.retain(|a| {
        let Some(r) = marker(a) else {
            return true;
        };
        if !matches!(a.meta, syn::Meta::Path(_)) {
            bad = Some(a.span());
        }
        seen += 1;
        role = r;
        false
    });
    if let Some(span) = bad {
        return Err(Error::new(
            span,
            "write #[path], #[query], #[body] or #[state] without arguments",
        ));
    }
    if seen > 1 {
        return Err(Error::new(
            pt.span(),
            "a parameter takes one of #[path], #[query], #[body], #[state]",
        ));
    }
    Ok(role)
}

/// The role a parameter attribute marks, if it is one of the markers.
fn marker(attr: &Attribute) -> Option<Role> {
    let path = attr.path();
    if path.is_ident("path") {
        Some(Role::Path)
    } else if path.is_ident("query") {
        Some(Role::Query)
    } else if path.is_ident("body") {
        Some(Role::Body)
    } else if path.is_ident("state") {
        Some(Role::State)
    } else {
        None
    }
}

/// Every `#[path]` parameter names a route segment and every segment has a parameter:
/// returns, per segment, the index of its parameter.
fn match_path(path: &LitStr, segments: &[PathParam], params: &[Param]) -> syn::Result<Vec<usize>> {
    for p in params.iter().filter(|p| matches!(p.role, Role::Path)) {
        let name = p.name.as_ref().map(ToString::to_string).unwrap_or_default();
        if !segments.iter().any(|s| s.name == name) {
            return Err(Error::new(
                p.span,
                format!(
                    "#[path] parameter `{name}` is not in the route `{}`",
                    path.value()
                ),
            ));
        }
    }
    segments
        .iter()
        .map(|seg| {
            params
                .iter()
                .position(|p| {
                    matches!(p.role, Role::Path) && p.name.as_ref().is_some_and(|n| *n == seg.name)
                })
                .ok_or_else(|| {
                    Error::new(
                        path.span(),
                        format!(
                            "route parameter `{}{}` has no `#[path] {}: T` parameter in the handler",
                            if seg.wildcard { "*" } else { "" },
                            seg.name,
                            seg.name
                        ),
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::parse_quote;

    use super::*;
    use crate::shared::auth::Policy;

    /// The policy `#[truss::route(attr)]` gives a handler, as text (`-`: none), or the error.
    fn policy(attr: proc_macro2::TokenStream) -> String {
        let func: ItemFn = parse_quote! {
            async fn handler() -> Result<(), truss::Error> { Ok(()) }
        };
        let result = syn::parse2::<Args>(attr).and_then(|args| route(args, func));
        match result.map(|r| r.policy) {
            Ok(None) => "-".to_owned(),
            Ok(Some(Policy::Public)) => "public".to_owned(),
            Ok(Some(Policy::Authenticated)) => "required".to_owned(),
            Ok(Some(Policy::Scope(s))) => format!("scope {}", s.value()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn auth_options() {
        assert_eq!(policy(quote!(get, "/a")), "-");
        assert_eq!(policy(quote!(get, "/a", auth = "public")), "public");
        assert_eq!(policy(quote!(get, "/a", auth = "required")), "required");
        let scoped = policy(quote!(
            post,
            "/a",
            timeout = "1s",
            scope = "a:w",
            status = 201
        ));
        assert_eq!(scoped, "scope a:w");
        let both = policy(quote!(post, "/a", auth = "required", scope = "a:w"));
        assert_eq!(both, "scope a:w");
    }

    #[test]
    fn bad_auth_options() {
        let unknown = policy(quote!(get, "/a", auth = "admin"));
        assert!(
            unknown.starts_with("unknown `auth` value \"admin\""),
            "{unknown}"
        );
        let contradiction = policy(quote!(get, "/a", auth = "public", scope = "a:w"));
        assert!(contradiction.contains("contradict"), "{contradiction}");
        let ident = policy(quote!(get, "/a", auth = public));
        assert!(ident.contains("expected literal"), "{ident}");
        let other = policy(quote!(get, "/a", role = "admin"));
        assert!(other.contains("use timeout, rate_limit, burst, breaker, status, auth or scope"));
    }
}
