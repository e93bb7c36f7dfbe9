//! [`Service`] -> the block as written, the tonic trait impl calling its methods,
//! `http_routes()` for the rpcs marked `#[http]`, and the policies the methods declare.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::Type;

use super::model::{Http, Rpc, Service};
use crate::shared::auth;

/// The whole expansion.
pub fn service(s: &Service) -> TokenStream {
    let Service {
        service,
        block,
        raw,
        rpcs,
        ..
    } = s;
    let self_ty = &block.self_ty;
    let (impl_g, _, where_g) = block.generics.split_for_impl();
    let tonic = quote! { ::truss::deps::tonic };
    let methods = rpcs.iter().map(|rpc| trait_method(self_ty, rpc));
    let http_routes = http_routes(s);
    let policies = policies(s);
    let docs = route_docs(s);

    quote! {
        #block

        #[#tonic::async_trait]
        impl #impl_g #service for #self_ty #where_g {
            #(#raw)*
            #(#methods)*
        }

        #http_routes

        #(#policies)*

        #(#docs)*
    }
}

/// The OpenAPI entry of each `#[http]` route, collected at link time; its schemas come from
/// the service's descriptors when the document is made.
fn route_docs(s: &Service) -> Vec<TokenStream> {
    let Some(service_name) = &s.service_name else {
        return Vec::new();
    };
    let private = quote! { ::truss::__private };
    s.rpcs
        .iter()
        .filter_map(|rpc| {
            let h = rpc.http.as_ref()?;
            let method = h.method.to_string().to_uppercase();
            let path = &h.path;
            let rpc_name = auth::proto_method_name(&rpc.name);
            Some(quote! {
                #private::inventory::submit! {
                    #private::RouteDoc {
                        krate: ::core::env!("CARGO_CRATE_NAME"),
                        method: #method,
                        path: #path,
                        status: 200,
                        source: #private::DocSource::Rpc {
                            service: #service_name,
                            method: #rpc_name,
                        },
                    }
                }
            })
        })
        .collect()
}

/// One declaration per route with a policy: the gRPC method, and its HTTP route if any.
fn policies(s: &Service) -> Vec<TokenStream> {
    let Some(service_name) = &s.service_name else {
        return Vec::new();
    };
    let service = quote! { #service_name };
    let mut items = Vec::new();
    for rpc in &s.rpcs {
        let Some(policy) = &rpc.policy else { continue };
        items.push(auth::declare(
            &auth::grpc_route(&service, &rpc.name),
            policy,
        ));
        if let Some(h) = &rpc.http {
            items.push(auth::declare(&auth::http_route(&h.method, &h.path), policy));
        }
    }
    for (name, policy) in &s.raw_policies {
        items.push(auth::declare(&auth::grpc_route(&service, name), policy));
    }
    items
}

/// The trait method: unwrap the request, validate, call the plain method, wrap the reply.
fn trait_method(self_ty: &Type, rpc: &Rpc) -> TokenStream {
    let tonic = quote! { ::truss::deps::tonic };
    let private = quote! { ::truss::__private };
    let Rpc {
        name,
        message,
        reply,
        ..
    } = rpc;
    let ctx = rpc.with_context.then(|| quote! { , __truss_ctx });
    quote! {
        async fn #name(
            &self,
            request: #tonic::Request<#message>,
        ) -> ::core::result::Result<#tonic::Response<#reply>, #tonic::Status> {
            #[allow(unused_imports)]
            use #private::{ViaNothing as _, ViaValidate as _};
            #[allow(unused_variables)]
            let (__truss_ctx, message) = ::truss::grpc::Context::from_request(request);
            if let ::core::result::Result::Err(e) = (&#private::Probe(&message)).__truss_validate() {
                return ::core::result::Result::Err(e.to_status());
            }
            match <#self_ty>::#name(self, message #ctx).await {
                ::core::result::Result::Ok(reply) => ::core::result::Result::Ok(#tonic::Response::new(reply)),
                ::core::result::Result::Err(e) => ::core::result::Result::Err(#private::to_status(e)),
            }
        }
    }
}

/// `impl Service { fn http_routes(self: Arc<Self>) -> Router }`, when an rpc has `#[http]`.
fn http_routes(s: &Service) -> Option<TokenStream> {
    let axum = quote! { ::truss::deps::axum };
    let self_ty = &s.block.self_ty;
    let (impl_g, _, where_g) = s.block.generics.split_for_impl();
    let routes: Vec<TokenStream> = s
        .rpcs
        .iter()
        .filter_map(|rpc| rpc.http.as_ref().map(|h| http_route(self_ty, rpc, h)))
        .collect();
    (!routes.is_empty()).then(|| {
        quote! {
            impl #impl_g #self_ty #where_g {
                /// HTTP/JSON routes for the rpcs marked `#[http(...)]`, calling the same methods.
                pub fn http_routes(self: ::std::sync::Arc<Self>) -> #axum::Router {
                    let router = #axum::Router::new();
                    #(#routes)*
                    router
                }
            }
        }
    })
}

/// Adds to `router` the HTTP/JSON route of one rpc.
fn http_route(self_ty: &Type, rpc: &Rpc, h: &Http) -> TokenStream {
    let axum = quote! { ::truss::deps::axum };
    let private = quote! { ::truss::__private };
    let Rpc { name, message, .. } = rpc;
    let path = &h.path;
    let upper = format_ident!(
        "{}",
        h.method.to_string().to_uppercase(),
        span = h.method.span()
    );
    let body = matches!(h.method.to_string().as_str(), "post" | "put" | "patch");
    let ctx = rpc.with_context.then(|| quote! { , ctx });
    let method_name = h.method.to_string().to_uppercase();
    quote! {
        #private::doc_mount(#method_name, #path);
        let router = {
            let svc = ::std::sync::Arc::clone(&self);
            router.route(#path, #axum::routing::on(
                #axum::routing::MethodFilter::#upper,
                move |request: #axum::extract::Request| {
                    let svc = ::std::sync::Arc::clone(&svc);
                    #private::bridge(request, #body, move |message: #message, ctx: ::truss::grpc::Context| async move {
                        #[allow(unused_imports)]
                        use #private::{ViaNothing as _, ViaValidate as _};
                        #[allow(unused_variables)]
                        let ctx = ctx;
                        (&#private::Probe(&message)).__truss_validate()?;
                        <#self_ty>::#name(&svc, message #ctx).await.map_err(#private::into_error)
                    })
                },
            ))
        };
    }
}
