//! Attribute and impl block -> [`Service`]: every check of `#[truss::grpc]` happens here.

use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, Error, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, Lit, Path, PathSegment,
    Signature, Token, Type,
};

use super::model::{Args, Http, Rpc, Service};
use crate::shared::auth::{self, AuthOptions, Policy};
use crate::shared::path::route_params;
use crate::shared::signature::{method_and_path, ok_type, returned_result};

/// How an rpc method looks, appended to signature errors.
const SIGNATURE: &str = "a #[truss::grpc] method is `async fn name(&self, request: Message) -> Result<Reply, E>` \
     (optionally with a second parameter `ctx: truss::grpc::Context`), where E: Into<truss::Error>";

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

impl Parse for Http {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let usage = "expected #[http(get, \"/users/{id}\")], optionally followed by \
                     auth = \"public\" | \"required\", scope = \"users:write\"";
        let (method, path) = method_and_path(input, usage)?;
        let mut auth = AuthOptions::default();
        while !input.is_empty() {
            input
                .parse::<Token![,]>()
                .map_err(|e| Error::new(e.span(), format!("unexpected tokens: {usage}")))?;
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            if !AuthOptions::is_option(&key) {
                return Err(Error::new(
                    key.span(),
                    format!("unknown #[http] option `{key}`: use auth or scope"),
                ));
            }
            input.parse::<Token![=]>()?;
            let value: Lit = input.parse()?;
            auth.set(&key, &value)?;
        }
        route_params(&path)?;
        Ok(Self { method, path, auth })
    }
}

/// Checks the block and reads its rpc methods.
pub fn service(args: Args, mut block: ItemImpl) -> syn::Result<Service> {
    if let Some((_, path, _)) = &block.trait_ {
        return Err(Error::new(
            path.span(),
            "put #[truss::grpc(Trait)] on a plain `impl MyService { ... }` block; the macro writes the trait impl",
        ));
    }
    let (raw, raw_policies) = take_raw(&mut block)?;
    let rpcs = block
        .items
        .iter_mut()
        .map(rpc)
        .collect::<syn::Result<Vec<_>>>()?;
    let declares =
        !raw_policies.is_empty() || rpcs.iter().any(|r| r.policy.is_some() || r.http.is_some());
    let service_name = declares.then(|| service_name(&args.service)).transpose()?;
    Ok(Service {
        service: args.service,
        block,
        raw,
        rpcs,
        raw_policies,
        service_name,
    })
}

/// `pb::users_server::SERVICE_NAME` for the trait `pb::users_server::Users`: the full name
/// tonic generates next to the trait.
fn service_name(service: &Path) -> syn::Result<Path> {
    let mut path = service.clone();
    let trait_name = match path.segments.pop() {
        Some(last) if !path.segments.is_empty() => last.into_value().ident,
        _ => {
            return Err(Error::new(
                service.span(),
                "to declare auth policies or serve #[http] routes, name the service trait \
                 with its module, e.g. #[truss::grpc(pb::users_server::Users)]: the gRPC \
                 route (and the OpenAPI schemas of the HTTP routes) are read from that \
                 module's SERVICE_NAME",
            ));
        }
    };
    let name = Ident::new("SERVICE_NAME", trait_name.span());
    path.segments.push(PathSegment::from(name));
    Ok(path)
}

/// The policy a `#[raw]` method declares, with the method's name.
type RawPolicy = (Ident, Policy);

/// Moves the items written in tonic's own form (streaming rpcs, marked `#[raw]`, and
/// their stream types) out of the block, removing the `#[raw]` markers; and the policies
/// those methods give with `#[auth(...)]`, removing those too.
fn take_raw(block: &mut ItemImpl) -> syn::Result<(Vec<ImplItem>, Vec<RawPolicy>)> {
    let mut raw = Vec::new();
    let mut policies = Vec::new();
    let mut kept = Vec::new();
    for item in std::mem::take(&mut block.items) {
        match item {
            ImplItem::Type(t) => raw.push(ImplItem::Type(t)),
            ImplItem::Fn(mut f) if f.attrs.iter().any(|a| a.path().is_ident("raw")) => {
                f.attrs.retain(|a| !a.path().is_ident("raw"));
                if let Some((_, policy)) = take_auth(&mut f.attrs)? {
                    policies.push((f.sig.ident.clone(), policy));
                }
                raw.push(ImplItem::Fn(f));
            }
            other => kept.push(other),
        }
    }
    block.items = kept;
    Ok((raw, policies))
}

/// Reads one rpc method, removing its `#[http]` attribute.
fn rpc(item: &mut ImplItem) -> syn::Result<Rpc> {
    let ImplItem::Fn(f) = item else {
        return Err(Error::new(
            item.span(),
            "only rpc methods (and, for streaming rpcs, `type ...Stream` and #[raw] methods) belong in a #[truss::grpc] block",
        ));
    };
    let http = take_http(f)?;
    let standalone = take_auth(&mut f.attrs)?;
    let policy = rpc_policy(http.as_ref(), standalone)?;
    let (message, reply, with_context) = rpc_signature(&f.sig)?;
    Ok(Rpc {
        name: f.sig.ident.clone(),
        message,
        reply,
        with_context,
        http,
        policy,
    })
}

/// The policy of an rpc: its `#[auth(...)]` (with the attribute), or the options of its
/// `#[http(...)]`, but not both.
fn rpc_policy(
    http: Option<&Http>,
    standalone: Option<(Attribute, Policy)>,
) -> syn::Result<Option<Policy>> {
    let options = http.map(|h| &h.auth).filter(|a| !a.is_empty());
    match (standalone, options) {
        (Some((attr, _)), Some(_)) => Err(Error::new_spanned(
            attr,
            "this method's policy is given twice: keep either #[auth(...)] or the auth/scope \
             options of #[http(...)]",
        )),
        (Some((_, policy)), None) => Ok(Some(policy)),
        (None, Some(options)) => options.policy(),
        (None, None) => Ok(None),
    }
}

/// Removes the `#[auth(...)]` attribute from `attrs` and parses it: the attribute and its
/// policy. At most one.
fn take_auth(attrs: &mut Vec<Attribute>) -> syn::Result<Option<(Attribute, Policy)>> {
    let (mut found, kept): (Vec<Attribute>, Vec<Attribute>) = std::mem::take(attrs)
        .into_iter()
        .partition(|a| a.path().is_ident("auth"));
    *attrs = kept;
    if let Some(second) = found.get(1) {
        return Err(Error::new_spanned(
            second,
            "a method takes one #[auth(...)]",
        ));
    }
    match found.pop() {
        Some(attr) => {
            let policy = auth::standalone(&attr)?;
            Ok(Some((attr, policy)))
        }
        None => Ok(None),
    }
}

/// Removes the method's `#[http(...)]` attributes and parses them (the last one counts).
fn take_http(f: &mut ImplItemFn) -> syn::Result<Option<Http>> {
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
    match failure {
        Some(e) => Err(e),
        None => Ok(http),
    }
}

/// `async fn name(&self, message: M[, ctx: Context]) -> Result<R, E>`: `(M, R, has ctx)`.
fn rpc_signature(sig: &Signature) -> syn::Result<(Type, Type, bool)> {
    if sig.asyncness.is_none() {
        return Err(Error::new(
            sig.fn_token.span(),
            format!("rpc methods must be async (move helpers to another impl block): {SIGNATURE}"),
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
    let result = returned_result(sig, &format!("rpc methods return a Result: {SIGNATURE}"))?;
    let reply = ok_type(result).ok_or_else(|| {
        Error::new(
            result.span(),
            format!("cannot read the reply type: {SIGNATURE}"),
        )
    })?;
    Ok((message, reply, with_context))
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;
    use syn::parse_quote;

    use super::*;

    fn show(policy: Option<&Policy>) -> String {
        match policy {
            None => "-".to_owned(),
            Some(Policy::Public) => "public".to_owned(),
            Some(Policy::Authenticated) => "required".to_owned(),
            Some(Policy::Scope(s)) => format!("scope {}", s.value()),
        }
    }

    /// `#[truss::grpc(trait_path)]` on `impl Svc { methods }`: the parsed service or the error.
    fn parse(trait_path: TokenStream, methods: TokenStream) -> syn::Result<Service> {
        let block: ItemImpl = parse_quote! { impl Svc { #methods } };
        service(syn::parse2::<Args>(trait_path)?, block)
    }

    /// The policy of each rpc (then each raw method) of the block, or the error.
    fn policies(methods: TokenStream) -> String {
        match parse(quote!(pb::svc_server::Svc), methods) {
            Ok(s) => {
                let rpcs = s.rpcs.iter().map(|r| show(r.policy.as_ref()));
                let raw = s
                    .raw_policies
                    .iter()
                    .map(|(n, p)| format!("{n}: {}", show(Some(p))));
                rpcs.chain(raw).collect::<Vec<_>>().join(", ")
            }
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn auth_in_http_and_standalone() {
        let got = policies(quote! {
            #[http(post, "/a", scope = "a:w")]
            async fn a(&self, m: M) -> Result<R, E> { todo!() }
            #[http(get, "/b", auth = "public",)]
            async fn b(&self, m: M) -> Result<R, E> { todo!() }
            #[auth(required)]
            #[http(get, "/c")]
            async fn c(&self, m: M) -> Result<R, E> { todo!() }
            #[auth(scope = "d:r")]
            async fn d(&self, m: M) -> Result<R, E> { todo!() }
            #[http(get, "/e")]
            async fn e(&self, m: M) -> Result<R, E> { todo!() }
            #[raw]
            #[auth(public)]
            async fn watch(&self, r: Request<M>) -> Result<Response<S>, Status> { todo!() }
        });
        assert_eq!(
            got,
            "scope a:w, public, required, scope d:r, -, watch: public"
        );
    }

    #[test]
    fn auth_markers_are_removed() {
        let s = parse(
            quote!(pb::svc_server::Svc),
            quote! {
                #[auth(public)] #[http(get, "/a")] #[doc = "kept"]
                async fn a(&self, m: M) -> Result<R, E> { todo!() }
                #[raw] #[auth(public)]
                async fn w(&self, r: Request<M>) -> Result<Response<S>, Status> { todo!() }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ImplItem::Fn(a) = &s.block.items[0] else {
            panic!("not a fn")
        };
        assert_eq!(a.attrs.len(), 1);
        assert!(a.attrs[0].path().is_ident("doc"));
        let ImplItem::Fn(w) = &s.raw[0] else {
            panic!("not a fn")
        };
        assert!(w.attrs.is_empty());
        let name = s.service_name.map(|p| quote!(#p).to_string());
        assert_eq!(name.as_deref(), Some("pb :: svc_server :: SERVICE_NAME"));
    }

    #[test]
    fn no_policy_no_service_name() {
        let s = parse(
            quote!(Svc),
            quote! { async fn a(&self, m: M) -> Result<R, E> { todo!() } },
        );
        assert!(s.is_ok_and(|s| s.service_name.is_none()));
    }

    #[test]
    fn bad_auth() {
        let method = |attrs: TokenStream| {
            policies(quote! { #attrs async fn a(&self, m: M) -> Result<R, E> { todo!() } })
        };
        let twice = method(quote! { #[auth(public)] #[http(get, "/a", auth = "public")] });
        assert!(twice.contains("policy is given twice"), "{twice}");
        let two_attrs = method(quote! { #[auth(public)] #[auth(required)] });
        assert!(two_attrs.contains("one #[auth(...)]"), "{two_attrs}");
        let contradiction = method(quote! { #[http(get, "/a", auth = "public", scope = "x")] });
        assert!(contradiction.contains("contradict"), "{contradiction}");
        let unknown = method(quote! { #[http(get, "/a", auth = "admin")] });
        assert!(
            unknown.contains("unknown `auth` value \"admin\""),
            "{unknown}"
        );
        let option = method(quote! { #[http(get, "/a", timeout = "1s")] });
        assert!(
            option.contains("unknown #[http] option `timeout`"),
            "{option}"
        );
        let standalone = method(quote! { #[auth(admin)] });
        assert!(
            standalone.contains("unknown `auth` value `admin`"),
            "{standalone}"
        );
        let tokens = method(quote! { #[http(get, "/a" auth = "public")] });
        assert!(tokens.contains("unexpected tokens"), "{tokens}");
        let bare = parse(
            quote!(Svc),
            quote! { #[auth(public)] async fn a(&self, m: M) -> Result<R, E> { todo!() } },
        );
        let bare = bare.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            bare.contains("name the service trait with its module"),
            "{bare}"
        );
    }
}
