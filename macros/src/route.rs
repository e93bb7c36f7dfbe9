//! `#[truss::route(method, "/path", options...)]`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Error, FnArg, Ident, ItemFn, Lit, LitStr, Pat, ReturnType, Token, Type};

use crate::util::{duration_nanos, route_params};

pub const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

/// The attribute's arguments.
pub struct Args {
    pub method: Ident,
    pub path: LitStr,
    timeout: Option<u64>,
    rate_limit: Option<f64>,
    burst: Option<u32>,
    breaker: Option<bool>,
    status: Option<u16>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let usage = "expected #[truss::route(get, \"/users/{id}\")], optionally followed by \
                     timeout = \"2s\", rate_limit = 100, burst = 20, breaker = false, status = 201";
        let method: Ident = input.parse().map_err(|e| Error::new(e.span(), usage))?;
        let lower = method.to_string();
        if !METHODS.contains(&lower.as_str()) {
            return Err(Error::new(
                method.span(),
                format!(
                    "unknown HTTP method `{lower}`: use one of {}",
                    METHODS.join(", ")
                ),
            ));
        }
        input
            .parse::<Token![,]>()
            .map_err(|e| Error::new(e.span(), usage))?;
        let path: LitStr = input.parse().map_err(|e| Error::new(e.span(), usage))?;
        let mut args = Args {
            method,
            path,
            timeout: None,
            rate_limit: None,
            burst: None,
            breaker: None,
            status: None,
        };
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: Lit = input.parse()?;
            args.set(&key, value)?;
        }
        Ok(args)
    }
}

impl Args {
    fn set(&mut self, key: &Ident, value: Lit) -> syn::Result<()> {
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
                        "unknown route option `{name}`: use timeout, rate_limit, burst, breaker or status"
                    ),
                ));
            }
        }
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

    /// `RouteOptions` built from the arguments.
    pub fn options(&self) -> syn::Result<TokenStream> {
        if self.burst.is_some() && self.rate_limit.is_none() {
            return Err(Error::new(
                self.path.span(),
                "`burst` needs `rate_limit` as well",
            ));
        }
        let mut calls = Vec::new();
        if let Some(n) = self.timeout {
            calls.push(quote! { .timeout(::core::time::Duration::from_nanos(#n)) });
        }
        if let Some(rps) = self.rate_limit {
            let burst = match self.burst {
                Some(b) => quote! { ::core::option::Option::Some(#b) },
                None => quote! { ::core::option::Option::None },
            };
            calls.push(quote! { .rate_limit(#rps, #burst) });
        }
        if let Some(b) = self.breaker {
            calls.push(quote! { .breaker(#b) });
        }
        if let Some(s) = self.status {
            calls.push(quote! { .status(#s) });
        }
        Ok(quote! { ::truss::route::RouteOptions::new() #(#calls)* })
    }

    pub fn method_filter(&self) -> TokenStream {
        let upper = Ident::new(&self.method.to_string().to_uppercase(), self.method.span());
        quote! { ::truss::deps::axum::routing::MethodFilter::#upper }
    }
}

enum Role {
    Path,
    Query,
    Body,
    State,
    Other,
}

struct Param {
    role: Role,
    name: Option<Ident>,
    ty: Type,
    span: Span,
}

pub fn expand(args: Args, mut func: ItemFn) -> syn::Result<TokenStream> {
    let sig = &func.sig;
    let signature_help = "a #[truss::route] handler is `async fn name(#[path] id: u64, #[body] req: Req, ...) -> Result<T, E>` where T: Serialize and E: Into<truss::Error>";
    if sig.asyncness.is_none() {
        return Err(Error::new(
            sig.fn_token.span(),
            format!("handler must be async: {signature_help}"),
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new(
            sig.generics.span(),
            "a route handler cannot be generic",
        ));
    }
    match &sig.output {
        ReturnType::Type(_, ty) if is_result(ty) => {}
        ReturnType::Type(_, ty) => {
            return Err(Error::new(
                ty.span(),
                format!("handler must return a Result: {signature_help}"),
            ));
        }
        ReturnType::Default => {
            return Err(Error::new(
                sig.ident.span(),
                format!("handler must return a Result: {signature_help}"),
            ));
        }
    }

    let route = route_params(&args.path)?;
    let mut params = Vec::new();
    for arg in func.sig.inputs.iter_mut() {
        let FnArg::Typed(pt) = arg else {
            return Err(Error::new(
                arg.span(),
                format!("a route handler takes no `self`: {signature_help}"),
            ));
        };
        let mut role = Role::Other;
        let mut seen = 0;
        let mut bad = None;
        pt.attrs.retain(|a| {
            let r = if a.path().is_ident("path") {
                Role::Path
            } else if a.path().is_ident("query") {
                Role::Query
            } else if a.path().is_ident("body") {
                Role::Body
            } else if a.path().is_ident("state") {
                Role::State
            } else {
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
        params.push(Param {
            role,
            name,
            ty: (*pt.ty).clone(),
            span: pt.span(),
        });
    }
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

    // Every #[path] parameter names a route segment and every segment has a parameter.
    for p in params.iter().filter(|p| matches!(p.role, Role::Path)) {
        let name = p.name.as_ref().map(ToString::to_string).unwrap_or_default();
        if !route.iter().any(|s| s.name == name) {
            return Err(Error::new(
                p.span,
                format!(
                    "#[path] parameter `{name}` is not in the route `{}`",
                    args.path.value()
                ),
            ));
        }
    }

    let mut path_types = Vec::new();
    for seg in &route {
        let found = params.iter().find(|p| {
            matches!(p.role, Role::Path) && p.name.as_ref().is_some_and(|n| *n == seg.name)
        });
        match found {
            Some(p) => path_types.push(p.ty.clone()),
            None => {
                return Err(Error::new(
                    args.path.span(),
                    format!(
                        "route parameter `{}{}` has no `#[path] {}: T` parameter in the handler",
                        if seg.wildcard { "*" } else { "" },
                        seg.name,
                        seg.name
                    ),
                ));
            }
        }
    }
    let fn_name = &func.sig.ident;
    let vis = &func.vis;
    let path = &args.path;
    let method = args.method_filter();
    let options = args.options()?;

    // The generated handler's extractors: state, path, query, others, body (last).
    let mut extract = Vec::new();
    let mut prepare = Vec::new();
    let call_args: Vec<Ident> = (0..params.len())
        .map(|i| format_ident!("__truss_arg{}", i))
        .collect();
    let order = |r: &Role| match r {
        Role::State => 0,
        Role::Path => 1,
        Role::Query => 2,
        Role::Other => 3,
        Role::Body => 4,
    };
    let mut sorted: Vec<usize> = (0..params.len()).collect();
    sorted.sort_by_key(|&i| order(&params[i].role));
    let axum = quote! { ::truss::deps::axum };
    let private = quote! { ::truss::__private };
    if !route.is_empty() {
        let names: Vec<Ident> = route
            .iter()
            .map(|seg| {
                let i = params
                    .iter()
                    .position(|p| {
                        matches!(p.role, Role::Path)
                            && p.name.as_ref().is_some_and(|n| *n == seg.name)
                    })
                    .unwrap_or_default();
                call_args[i].clone()
            })
            .collect();
        let (ty, pat) = if path_types.len() == 1 {
            let t = &path_types[0];
            let n = &names[0];
            (quote! { #t }, quote! { #n })
        } else {
            (quote! { ( #(#path_types),* ) }, quote! { ( #(#names),* ) })
        };
        extract.push(quote! {
            __truss_path: ::core::result::Result<#axum::extract::Path<#ty>, #axum::extract::rejection::PathRejection>
        });
        prepare.push(quote! {
            let #pat = match __truss_path {
                ::core::result::Result::Ok(#axum::extract::Path(v)) => v,
                ::core::result::Result::Err(e) => return #private::path_rejection(e),
            };
        });
    }
    for &i in &sorted {
        let p = &params[i];
        let arg = &call_args[i];
        let ty = &p.ty;
        match p.role {
            Role::Path => {}
            Role::State => {
                extract.push(quote! { #axum::extract::State(#arg): #axum::extract::State<#ty> })
            }
            Role::Other => extract.push(quote! { #arg: #ty }),
            Role::Query => {
                extract.push(quote! {
                    #arg: ::core::result::Result<#axum::extract::Query<#ty>, #axum::extract::rejection::QueryRejection>
                });
                prepare.push(quote! {
                    let #arg = match #arg {
                        ::core::result::Result::Ok(#axum::extract::Query(v)) => v,
                        ::core::result::Result::Err(e) => return #private::query_rejection(e),
                    };
                    if let ::core::result::Result::Err(e) = (&#private::Probe(&#arg)).__truss_validate() {
                        return #private::error_response(e);
                    }
                });
            }
            Role::Body => {
                extract.push(quote! {
                    #arg: ::core::result::Result<#axum::Json<#ty>, #axum::extract::rejection::JsonRejection>
                });
                prepare.push(quote! {
                    let #arg = match #arg {
                        ::core::result::Result::Ok(#axum::Json(v)) => v,
                        ::core::result::Result::Err(e) => return #private::json_rejection(e),
                    };
                    if let ::core::result::Result::Err(e) = (&#private::Probe(&#arg)).__truss_validate() {
                        return #private::error_response(e);
                    }
                });
            }
        }
    }
    let status = args.status.unwrap_or(200);

    Ok(quote! {
        #func

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #fn_name {}

        #[doc(hidden)]
        impl #fn_name {
            /// The route path.
            pub const PATH: &'static str = #path;
            /// The method.
            pub const METHOD: #axum::routing::MethodFilter = #method;
            /// The per-route options.
            pub fn options() -> ::truss::route::RouteOptions {
                #options
            }
            /// The axum handler: decode, validate, call, encode.
            pub async fn handler(#(#extract),*) -> #axum::response::Response {
                #[allow(unused_imports)]
                use #private::{ViaNothing as _, ViaValidate as _};
                #(#prepare)*
                #private::reply(#status, #fn_name(#(#call_args),*).await)
            }
        }
    })
}

pub fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        _ => false,
    }
}
