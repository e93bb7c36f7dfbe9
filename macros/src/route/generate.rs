//! [`Route`] -> the handler as written, plus a unit struct of the same name carrying the
//! route's path, method, options and axum handler (what `truss::routes![...]` reads), and
//! the route's authorization policy when the attribute gives one.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::Ident;

use super::model::{Options, Param, Role, Route};
use crate::shared::auth;

/// The whole expansion.
pub fn route(route: &Route) -> TokenStream {
    let func = &route.func;
    let fn_name = &func.sig.ident;
    let vis = &func.vis;
    let path = &route.args.path;
    let method = method_filter(&route.args.method);
    let method_name = route.args.method.to_string().to_uppercase();
    let options = options(&route.args.options);
    let call_args: Vec<Ident> = (0..route.params.len())
        .map(|i| format_ident!("__truss_arg{}", i))
        .collect();
    let (extract, prepare) = extractors(route, &call_args);
    let status = route.args.options.status.unwrap_or(200);
    let axum = quote! { ::truss::deps::axum };
    let private = quote! { ::truss::__private };
    let policy = route.policy.as_ref().map(|p| {
        let declared = auth::http_route(&route.args.method, path);
        auth::declare(&declared, p)
    });

    let doc = route_doc(route);

    quote! {
        #func

        #policy

        #doc

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #fn_name {}

        #[doc(hidden)]
        impl #fn_name {
            /// The route path.
            pub const PATH: &'static str = #path;
            /// The method.
            pub const METHOD: #axum::routing::MethodFilter = #method;
            /// The method's name, upper case.
            pub const METHOD_NAME: &'static str = #method_name;
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
    }
}

/// The route's OpenAPI entry, collected at link time: its typed parts' schemas. Every
/// `#[path]`, `#[query]` and `#[body]` type and the `Ok` type must implement
/// `schemars::JsonSchema`, or this does not compile.
fn route_doc(route: &Route) -> TokenStream {
    let private = quote! { ::truss::__private };
    let schema = |ty: &syn::Type| quote! { #private::doc_schema::<#ty> as #private::SchemaFn };
    let method = route.args.method.to_string().to_uppercase();
    let path = &route.args.path;
    let status = route.args.options.status.unwrap_or(200);
    let name = route.func.sig.ident.to_string();
    let in_path = route.path_params.iter().map(|&i| {
        let p = &route.params[i];
        let name = p.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        let f = schema(&p.ty);
        quote! { (#name, #f) }
    });
    let typed = |role: fn(&Role) -> bool| match route.params.iter().find(|p| role(&p.role)) {
        Some(p) => {
            let f = schema(&p.ty);
            quote! { ::core::option::Option::Some(#f) }
        }
        None => quote! { ::core::option::Option::None },
    };
    let query = typed(|r| matches!(r, Role::Query));
    let body = typed(|r| matches!(r, Role::Body));
    let ok = crate::shared::signature::returned_result(&route.func.sig, "")
        .ok()
        .and_then(crate::shared::signature::ok_type)
        .map_or_else(|| quote! { () }, |t| quote! { #t });
    quote! {
        #private::inventory::submit! {
            #private::RouteDoc {
                krate: ::core::env!("CARGO_CRATE_NAME"),
                method: #method,
                path: #path,
                status: #status,
                source: #private::DocSource::Handler(#private::DocHandler {
                    name: #name,
                    path: &[#(#in_path),*],
                    query: #query,
                    body: #body,
                    response: #private::doc_schema::<#ok> as #private::SchemaFn,
                }),
            }
        }
    }
}

/// `RouteOptions` built from the options.
fn options(options: &Options) -> TokenStream {
    let mut calls = Vec::new();
    if let Some(n) = options.timeout {
        calls.push(quote! { .timeout(::core::time::Duration::from_nanos(#n)) });
    }
    if let Some(rps) = options.rate_limit {
        let burst = match options.burst {
            Some(b) => quote! { ::core::option::Option::Some(#b) },
            None => quote! { ::core::option::Option::None },
        };
        calls.push(quote! { .rate_limit(#rps, #burst) });
    }
    if let Some(b) = options.breaker {
        calls.push(quote! { .breaker(#b) });
    }
    if let Some(s) = options.status {
        calls.push(quote! { .status(#s) });
    }
    quote! { ::truss::route::RouteOptions::new() #(#calls)* }
}

/// `MethodFilter::GET` for `get`.
fn method_filter(method: &Ident) -> TokenStream {
    let upper = Ident::new(&method.to_string().to_uppercase(), method.span());
    quote! { ::truss::deps::axum::routing::MethodFilter::#upper }
}

/// The generated handler's parameters (extractors: path, state, query, others, body) and
/// the statements turning them into the handler's arguments, `call_args`.
fn extractors(route: &Route, call_args: &[Ident]) -> (Vec<TokenStream>, Vec<TokenStream>) {
    let mut extract = Vec::new();
    let mut prepare = Vec::new();
    let params = &route.params;
    let mut sorted: Vec<usize> = (0..params.len()).collect();
    sorted.sort_by_key(|&i| params[i].role.order());
    if !route.path_params.is_empty() {
        let (e, p) = path_extractor(route, call_args);
        extract.push(e);
        prepare.push(p);
    }
    for &i in &sorted {
        let (e, p) = param_extractor(&params[i], &call_args[i]);
        extract.extend(e);
        prepare.extend(p);
    }
    (extract, prepare)
}

/// One `Path<T>` (or `Path<(A, B)>`) extractor for all the `#[path]` parameters, in the
/// order of the route's segments.
fn path_extractor(route: &Route, call_args: &[Ident]) -> (TokenStream, TokenStream) {
    let axum = quote! { ::truss::deps::axum };
    let private = quote! { ::truss::__private };
    let types: Vec<_> = route
        .path_params
        .iter()
        .map(|&i| &route.params[i].ty)
        .collect();
    let names: Vec<_> = route.path_params.iter().map(|&i| &call_args[i]).collect();
    let (ty, pat) = if types.len() == 1 {
        let t = types[0];
        let n = names[0];
        (quote! { #t }, quote! { #n })
    } else {
        (quote! { ( #(#types),* ) }, quote! { ( #(#names),* ) })
    };
    let extract = quote! {
        __truss_path: ::core::result::Result<#axum::extract::Path<#ty>, #axum::extract::rejection::PathRejection>
    };
    let prepare = quote! {
        let #pat = match __truss_path {
            ::core::result::Result::Ok(#axum::extract::Path(v)) => v,
            ::core::result::Result::Err(e) => return #private::path_rejection(e),
        };
    };
    (extract, prepare)
}

/// The extractor of one parameter other than `#[path]`, and what prepares its value.
fn param_extractor(p: &Param, arg: &Ident) -> (Option<TokenStream>, Option<TokenStream>) {
    let axum = quote! { ::truss::deps::axum };
    let private = quote! { ::truss::__private };
    let ty = &p.ty;
    match p.role {
        Role::Path => (None, None),
        Role::State => (
            Some(quote! { #axum::extract::State(#arg): #axum::extract::State<#ty> }),
            None,
        ),
        Role::Other => (Some(quote! { #arg: #ty }), None),
        Role::Query => (
            Some(quote! {
                #arg: ::core::result::Result<#axum::extract::Query<#ty>, #axum::extract::rejection::QueryRejection>
            }),
            Some(quote! {
                let #arg = match #arg {
                    ::core::result::Result::Ok(#axum::extract::Query(v)) => v,
                    ::core::result::Result::Err(e) => return #private::query_rejection(e),
                };
                if let ::core::result::Result::Err(e) = (&#private::Probe(&#arg)).__truss_validate() {
                    return #private::error_response(e);
                }
            }),
        ),
        Role::Body => (
            Some(quote! {
                #arg: ::core::result::Result<#axum::Json<#ty>, #axum::extract::rejection::JsonRejection>
            }),
            Some(quote! {
                let #arg = match #arg {
                    ::core::result::Result::Ok(#axum::Json(v)) => v,
                    ::core::result::Result::Err(e) => return #private::json_rejection(e),
                };
                if let ::core::result::Result::Err(e) = (&#private::Probe(&#arg)).__truss_validate() {
                    return #private::error_response(e);
                }
            }),
        ),
    }
}
