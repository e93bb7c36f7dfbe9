//! A `#[truss::grpc]` block as checked by [`parse`](super::parse) and read by
//! [`generate`](super::generate).

use syn::{Ident, ImplItem, ItemImpl, LitStr, Path, Type};

use crate::shared::auth::{AuthOptions, Policy};

/// The attribute's argument: the tonic service trait.
pub struct Args {
    /// `proto::user_server::User`.
    pub service: Path,
}

/// `#[http(method, "/path", auth = "...", scope = "...")]` on an rpc method.
pub struct Http {
    /// The HTTP method, lower case.
    pub method: Ident,
    /// The route path, checked.
    pub path: LitStr,
    /// `auth = "public"`, `scope = "users:write"`: combined into [`Rpc::policy`].
    pub auth: AuthOptions,
}

/// One rpc written as a plain async method.
pub struct Rpc {
    /// The method's name, also the trait method's.
    pub name: Ident,
    /// The request message type.
    pub message: Type,
    /// The reply message type: `T` of the `Result<T, E>` returned.
    pub reply: Type,
    /// Whether the method takes a `truss::grpc::Context` after the message.
    pub with_context: bool,
    /// The HTTP/JSON route serving it too, if any.
    pub http: Option<Http>,
    /// Who may call it (over gRPC and over its HTTP route), from `#[auth(...)]` or the
    /// options of `#[http(...)]`.
    pub policy: Option<Policy>,
}

/// A checked `#[truss::grpc]` block.
pub struct Service {
    /// The tonic service trait.
    pub service: Path,
    /// The block, kept as written except for the `#[http]` attributes and the raw items.
    pub block: ItemImpl,
    /// Items in tonic's own form (`type ...Stream`, `#[raw]` methods, marker removed),
    /// moved into the trait impl unchanged.
    pub raw: Vec<ImplItem>,
    /// The rpc methods, in order.
    pub rpcs: Vec<Rpc>,
    /// The policies of `#[raw]` methods given with `#[auth(...)]` (marker removed).
    pub raw_policies: Vec<(Ident, Policy)>,
    /// `path::to::SERVICE_NAME` (the service's full name, next to the trait in tonic's
    /// generated module), when a method declares a policy.
    pub service_name: Option<Path>,
}
