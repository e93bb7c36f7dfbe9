//! Authentication and authorization: who is calling, and may they call this route.
//!
//! With `[auth]` configured (feature `auth`), the app verifies `Authorization: Bearer`
//! tokens on HTTP and `authorization` metadata on gRPC, applies each route's
//! [`RoutePolicy`], and hands the caller's [`Identity`] to handlers ([`Claims`] in axum,
//! [`Context::claims`](crate::grpc::Context::claims) in `#[truss::grpc]` methods).
//!
//! ```toml
//! [auth]
//! [[auth.keys]]
//! kid = "2026-12"
//! alg = "HS256"
//! secret = "change-me"
//! ```
//!
//! Refusals follow the error model: 401 `TOKEN_MISSING`, `TOKEN_EXPIRED`, `TOKEN_INVALID`
//! (with `WWW-Authenticate` on HTTP), 403 `INSUFFICIENT_SCOPE`; gRPC gets `UNAUTHENTICATED`
//! / `PERMISSION_DENIED` with the same reasons. `truss_auth_total{route,result}` counts every
//! decision.
//!
//! [`RoutePolicy`], [`Identity`], [`Claims`] and the route-policy table are available without
//! the feature, so handlers and the macros' `auth = "public"` / `scope = "..."` options
//! compile either way.

mod config;
mod identity;
mod policy;

pub use config::{AuthConfig, DefaultPolicy, JwksConfig, KeyConfig, RouteConfig, TokenConfig};
pub(crate) use identity::missing as identity_missing;
pub use identity::{Claims, Identity};
#[doc(hidden)]
pub use policy::{Declared, DeclaredRoute, StaticPolicy};
pub use policy::{RoutePolicy, declare, declared, http_route_key};

#[cfg(feature = "auth")]
mod jwks;
#[cfg(feature = "auth")]
mod keys;
#[cfg(feature = "auth")]
mod layer;
#[cfg(feature = "auth")]
mod token;
#[cfg(feature = "auth")]
mod verify;

#[cfg(feature = "auth")]
pub use layer::{Auth, AuthFuture, AuthLayer};
#[cfg(feature = "auth")]
pub use token::{ClientAuth, ClientAuthLayer, ClientAuthService, TokenIssuer};
#[cfg(feature = "auth")]
pub use verify::{AuthError, MAX_TOKEN_BYTES, Verifier};
