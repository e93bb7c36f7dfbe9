//! Who called: the verified token's claims, for handlers and outgoing calls.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;

/// The caller of a request whose token verified: its subject, scopes and every claim.
/// The auth layer puts it in the request's extensions (an `Arc<Identity>`), on HTTP and gRPC.
///
/// Its `Debug` output leaves the token out: `tracing::debug!(?who)` never logs a credential.
#[derive(Clone)]
pub struct Identity {
    subject: Option<String>,
    scopes: Vec<String>,
    claims: Value,
    token: Arc<str>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity of `claims`, carried by `token`. Scopes come from `scope` (a
    /// space-separated string, as OAuth 2 sends it), `scp`, `roles` and `permissions`
    /// (strings or arrays of strings).
    ///
    /// ```
    /// use truss::auth::Identity;
    ///
    /// let claims = serde_json::json!({"sub": "ada", "scope": "users:read users:write"});
    /// let who = Identity::new(claims, "header.payload.signature".into());
    /// assert_eq!(who.subject(), Some("ada"));
    /// assert!(who.has_scope("users:write"));
    /// ```
    pub fn new(claims: Value, token: Arc<str>) -> Self {
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        let mut scopes = Vec::new();
        for name in ["scope", "scp", "roles", "permissions"] {
            match claims.get(name) {
                Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(str::to_owned)),
                Some(Value::Array(items)) => {
                    scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                _ => {}
            }
        }
        Self {
            subject,
            scopes,
            claims,
            token,
        }
    }

    /// The `sub` claim.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The scopes and roles the token grants.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Every claim, as JSON.
    pub fn claims(&self) -> &Value {
        &self.claims
    }

    /// The claims as the team's own type.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        T::deserialize(&self.claims).map_err(|e| {
            Error::new(
                401,
                "TOKEN_INVALID",
                format!("the token's claims do not fit: {e}"),
            )
        })
    }

    /// The token itself, to forward it. Never log it.
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// The caller's claims as `T`, in an axum handler; 401 `TOKEN_MISSING` when the request
/// carried no valid token (a public route called anonymously). `Option<Claims<T>>` is `None`
/// then instead.
///
/// ```
/// use serde::Deserialize;
/// use truss::auth::Claims;
///
/// #[derive(Deserialize)]
/// struct Caller { sub: String, tenant: String }
///
/// async fn whoami(Claims(caller): Claims<Caller>) -> String {
///     format!("{} of {}", caller.sub, caller.tenant)
/// }
/// let _: axum::Router = axum::Router::new().route("/whoami", axum::routing::get(whoami));
/// ```
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

impl<T: DeserializeOwned, S: Sync> FromRequestParts<S> for Claims<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        match parts.extensions.get::<Arc<Identity>>() {
            Some(who) => who
                .claims_as()
                .map(Claims)
                .map_err(IntoResponse::into_response),
            None => Err(missing().into_response()),
        }
    }
}

impl<T: DeserializeOwned, S: Sync> OptionalFromRequestParts<S> for Claims<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Response> {
        match parts.extensions.get::<Arc<Identity>>() {
            Some(who) => who
                .claims_as()
                .map(|c| Some(Claims(c)))
                .map_err(IntoResponse::into_response),
            None => Ok(None),
        }
    }
}

/// The error of a request without a valid token where one is needed.
pub(crate) fn missing() -> Error {
    Error::new(401, "TOKEN_MISSING", "this route needs a bearer token")
}

tokio::task_local! {
    static CURRENT: Arc<Identity>;
}

impl Identity {
    /// The identity of the request being served on this task, if it had one. Outgoing calls
    /// made while serving use it to forward the caller's token.
    pub fn current() -> Option<Arc<Identity>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// Runs `fut` with `identity` as [`current`](Self::current).
    pub fn scope<F: Future>(
        identity: Arc<Identity>,
        fut: F,
    ) -> tokio::task::futures::TaskLocalFuture<Arc<Identity>, F> {
        CURRENT.scope(identity, fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_leaves_the_token_out() {
        let who = Identity::new(
            serde_json::json!({"sub": "ada", "scope": "users:read"}),
            "eyJhbGciOi.secret-payload.signature".into(),
        );
        let text = format!("{who:?}");
        assert!(
            text.contains("ada") && text.contains("users:read"),
            "{text}"
        );
        assert!(!text.contains("secret-payload"), "{text}");
    }
}
