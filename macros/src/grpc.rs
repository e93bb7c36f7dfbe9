//! `#[truss::grpc(path::to::ServiceTrait)]` on an impl block of plain async methods.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    Error, FnArg, GenericArgument, ImplItem, ItemImpl, LitStr, Path, PathArguments, ReturnType,
    Token, Type,
};

use crate::route::{METHODS, is_result};
use crate::util::route_params;

pub struct Args {
    service: Path,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let usage = "expected the tonic service trait: #[truss::grpc(proto::user_server::User)]";
        let service: Path = input.parse().map_err(|e| Error::new(e.span(), usage))?;
        if !input.is_empty() {
            let _: Token![,] = input.parse()?;
            return Err(Error::new(
                input.span(),
                format!("unexpected option: {usage}"),
            ));
        }
        Ok(Self { service })
    }
}

struct Http {
    method: syn::Ident,
    path: LitStr,
}

impl Parse for Http {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let usage = "expected #[http(get, \"/users/{id}\")]";
        let method: syn::Ident = input.parse().map_err(|e| Error::new(e.span(), usage))?;
        if !METHODS.contains(&method.to_string().as_str()) {
            return Err(Error::new(
                method.span(),
                format!(
                    "unknown HTTP method `{method}`: use one of {}",
                    METHODS.join(", ")
                ),
            ));
        }
        let _: Token![,] = input.parse().map_err(|e| Error::new(e.span(), usage))?;
        let path: LitStr = input.parse().map_err(|e| Error::new(e.span(), usage))?;
        if !input.is_empty() {
            return Err(Error::new(
                input.span(),
                format!("unexpected tokens: {usage}"),
            ));
        }
        route_params(&path)?;
        Ok(Self { method, path })
    }
}

struct Rpc {
    name: syn::Ident,
    message: Type,
    reply: Type,
    with_context: bool,
    http: Option<Http>,
}

const SIGNATURE: &str = "a #[truss::grpc] method is `async fn name(&self, request: Message) -> Result<Reply, E>` \
     (optionally with a second parameter `ctx: truss::grpc::Context`), where E: Into<truss::Error>";

pub fn expand(args: Args, mut block: ItemImpl) -> syn::Result<TokenStream> {
    if let Some((_, path, _)) = &block.trait_ {
        return Err(Error::new(
            path.span(),
            "put #[truss::grpc(Trait)] on a plain `impl MyService { ... }` block; the macro writes the trait impl",
        ));
    }
    let mut rpcs = Vec::new();
    // Written in tonic's own form (streaming rpcs and their stream types): moved as they are
    // into the trait impl.
    let mut raw: Vec<ImplItem> = Vec::new();
    let mut kept: Vec<ImplItem> = Vec::new();
    for item in std::mem::take(&mut block.items) {
        match item {
            ImplItem::Type(t) => raw.push(ImplItem::Type(t)),
            ImplItem::Fn(mut f) if f.attrs.iter().any(|a| a.path().is_ident("raw")) => {
                f.attrs.retain(|a| !a.path().is_ident("raw"));
                raw.push(ImplItem::Fn(f));
            }
            other => kept.push(other),
        }
    }
    block.items = kept;
    for item in block.items.iter_mut() {
        let ImplItem::Fn(f) = item else {
            return Err(Error::new(
                item.span(),
                "only rpc methods (and, for streaming rpcs, `type ...Stream` and #[raw] methods) belong in a #[truss::grpc] block",
            ));
        };
        let mut http = None;
        let mut failure = None;
        f.attrs.retain(|a| {
            if a.path().is_ident("http") {
                match a.parse_args::<Http>() {
                    Ok(h) => http = Some(h),
                    Err(e) => failure = Some(e),
                }
                false
            } else {
                true
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let sig = &f.sig;
        if sig.asyncness.is_none() {
            return Err(Error::new(
                sig.fn_token.span(),
                format!(
                    "rpc methods must be async (move helpers to another impl block): {SIGNATURE}"
                ),
            ));
        }
        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
            _ => {
                return Err(Error::new(
                    sig.ident.span(),
                    format!("rpc methods take `&self`: {SIGNATURE}"),
                ));
            }
        }
        let message = match inputs.next() {
            Some(FnArg::Typed(pt)) => (*pt.ty).clone(),
            _ => {
                return Err(Error::new(
                    sig.ident.span(),
                    format!("missing the request message: {SIGNATURE}"),
                ));
            }
        };
        let with_context = match inputs.next() {
            None => false,
            Some(FnArg::Typed(_)) => true,
            Some(other) => return Err(Error::new(other.span(), SIGNATURE)),
        };
        if let Some(extra) = inputs.next() {
            return Err(Error::new(
                extra.span(),
                format!("too many parameters: {SIGNATURE}"),
            ));
        }
        let reply = match &sig.output {
            ReturnType::Type(_, ty) if is_result(ty) => ok_type(ty).ok_or_else(|| {
                Error::new(
                    ty.span(),
                    format!("cannot read the reply type: {SIGNATURE}"),
                )
            })?,
            ReturnType::Type(_, ty) => {
                return Err(Error::new(
                    ty.span(),
                    format!("rpc methods return a Result: {SIGNATURE}"),
                ));
            }
            ReturnType::Default => {
                return Err(Error::new(
                    sig.ident.span(),
                    format!("rpc methods return a Result: {SIGNATURE}"),
                ));
            }
        };
        rpcs.push(Rpc {
            name: sig.ident.clone(),
            message,
            reply,
            with_context,
            http,
        });
    }

    let service = &args.service;
    let self_ty = &block.self_ty;
    let (impl_g, _, where_g) = block.generics.split_for_impl();
    let tonic = quote! { ::truss::deps::tonic };
    let axum = quote! { ::truss::deps::axum };
    let private = quote! { ::truss::__private };

    let methods = rpcs.iter().map(|rpc| {
        let Rpc { name, message, reply, .. } = rpc;
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
    });

    let routes: Vec<TokenStream> = rpcs
        .iter()
        .filter_map(|rpc| rpc.http.as_ref().map(|h| (rpc, h)))
        .map(|(rpc, h)| {
            let Rpc { name, message, .. } = rpc;
            let path = &h.path;
            let upper = format_ident!("{}", h.method.to_string().to_uppercase(), span = h.method.span());
            let body = matches!(h.method.to_string().as_str(), "post" | "put" | "patch");
            let ctx = rpc.with_context.then(|| quote! { , ctx });
            quote! {
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
        })
        .collect();
    let http_routes = (!routes.is_empty()).then(|| {
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
    });

    Ok(quote! {
        #block

        #[#tonic::async_trait]
        impl #impl_g #service for #self_ty #where_g {
            #(#raw)*
            #(#methods)*
        }

        #http_routes
    })
}

/// `T` of `Result<T, E>`.
fn ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let PathArguments::AngleBracketed(args) = &p.path.segments.last()?.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}
