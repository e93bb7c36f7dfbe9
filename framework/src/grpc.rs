//! What a [`#[truss::grpc]`](macro@crate::grpc) method can see about its call.

use http::Extensions;
use tonic::metadata::MetadataMap;

use crate::observe::trace::TraceContext;
use crate::resilience::deadline::Deadline;

/// The call's metadata, deadline and trace, as a second parameter of an rpc method.
///
/// ```
/// async fn handler(ctx: truss::grpc::Context) {
///     let tenant = ctx.metadata().get("x-tenant").and_then(|v| v.to_str().ok());
///     let budget = ctx.deadline().map(|d| d.remaining());
///     let trace = ctx.trace().map(|t| t.trace_id.to_string());
///     # let _ = (tenant, budget, trace);
/// }
/// ```
#[derive(Debug, Default)]
pub struct Context {
    metadata: MetadataMap,
    extensions: Extensions,
}

impl Context {
    /// Splits a tonic request into its context and message.
    pub fn from_request<M>(request: tonic::Request<M>) -> (Self, M) {
        let (metadata, extensions, message) = request.into_parts();
        (
            Self {
                metadata,
                extensions,
            },
            message,
        )
    }

    /// The context of an HTTP request served through `http_routes` (headers as metadata).
    pub fn from_http(parts: http::request::Parts) -> Self {
        Self {
            metadata: MetadataMap::from_headers(parts.headers),
            extensions: parts.extensions,
        }
    }

    /// The request metadata (HTTP headers for HTTP/JSON calls).
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }

    /// The request extensions.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The call's deadline (the server's timeout or the caller's `grpc-timeout`, whichever is
    /// sooner), when it has one. Outgoing calls made while serving pick it up on their own.
    pub fn deadline(&self) -> Option<Deadline> {
        self.extensions
            .get::<Deadline>()
            .copied()
            .or_else(Deadline::current)
    }

    /// The caller, when the call carried a valid token (see [`crate::auth`]).
    pub fn identity(&self) -> Option<&crate::auth::Identity> {
        self.extensions
            .get::<std::sync::Arc<crate::auth::Identity>>()
            .map(|who| &**who)
    }

    /// The caller's claims as `T`: 401 `TOKEN_MISSING` without a valid token, 401
    /// `TOKEN_INVALID` when they do not fit `T`.
    ///
    /// ```
    /// # #[derive(serde::Deserialize)] struct Caller { sub: String }
    /// async fn create(ctx: truss::grpc::Context) -> Result<(), truss::Error> {
    ///     let caller: Caller = ctx.claims()?;
    ///     # let _ = caller.sub;
    ///     Ok(())
    /// }
    /// ```
    pub fn claims<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::Error> {
        match self.identity() {
            Some(who) => who.claims_as(),
            None => Err(crate::auth::identity_missing()),
        }
    }

    /// The call's trace.
    pub fn trace(&self) -> Option<TraceContext> {
        self.extensions
            .get::<TraceContext>()
            .cloned()
            .or_else(TraceContext::current)
    }
}
