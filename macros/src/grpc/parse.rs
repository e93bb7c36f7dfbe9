//! Attribute and impl block -> [`Service`]: every check of `#[truss::grpc]` happens here.

use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Error, FnArg, ImplItem, ImplItemFn, ItemImpl, Path, Signature, Token, Type};

use super::model::{Args, Http, Rpc, Service};
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
        let usage = "expected #[http(get, \"/users/{id}\")]";
        let (method, path) = method_and_path(input, usage)?;
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

/// Checks the block and reads its rpc methods.
pub fn service(args: Args, mut block: ItemImpl) -> syn::Result<Service> {
    if let Some((_, path, _)) = &block.trait_ {
        return Err(Error::new(
            path.span(),
            "put #[truss::grpc(Trait)] on a plain `impl MyService { ... }` block; the macro writes the trait impl",
        ));
    }
    let raw = take_raw(&mut block);
    let rpcs = block
        .items
        .iter_mut()
        .map(rpc)
        .collect::<syn::Result<Vec<_>>>()?;
    Ok(Service {
        service: args.service,
        block,
        raw,
        rpcs,
    })
}

/// Moves the items written in tonic's own form (streaming rpcs, marked `#[raw]`, and
/// their stream types) out of the block, removing the `#[raw]` markers.
fn take_raw(block: &mut ItemImpl) -> Vec<ImplItem> {
    let mut raw = Vec::new();
    let mut kept = Vec::new();
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
    raw
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
    let (message, reply, with_context) = rpc_signature(&f.sig)?;
    Ok(Rpc {
        name: f.sig.ident.clone(),
        message,
        reply,
        with_context,
        http,
    })
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
