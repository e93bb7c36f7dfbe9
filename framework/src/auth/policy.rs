//! Who may call a route: [`RoutePolicy`], and the policies routes declare in their attributes.
//!
//! A route's policy comes from, first to last: `auth.routes."<route>"` in config, the route's
//! attribute (`#[truss::route(..., auth = "public")]`, `#[http(..., scope = "users:write")]`),
//! then `auth.default`. Attributes are compile-time facts of the code, so the macros declare
//! them in one process-wide table, collected at link time; [`declare`] adds to it at run time.
//!
//! Route keys are `"<METHOD> <template>"` for HTTP routes (`"POST /v1/users"`) and the method
//! path for gRPC (`"/user.v1.Users/CreateUser"`).

use std::collections::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};

/// Who may call a route.
///
/// ```
/// use truss::auth::RoutePolicy;
///
/// assert!(RoutePolicy::Public.allows::<&str>(None));
/// assert!(!RoutePolicy::Authenticated.allows::<&str>(None));
/// let writer = RoutePolicy::scope("users:write");
/// assert!(writer.allows(Some(&["users:read", "users:write"][..])));
/// assert!(!writer.allows(Some(&["users:read"][..])));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePolicy {
    /// Anyone. A valid token that is sent still reaches the handler as the caller's
    /// identity; an invalid one is ignored (a client holding an expired token can still call
    /// the login route).
    Public,
    /// A valid token.
    Authenticated,
    /// A valid token whose `scope` (space-separated) or `scp`/`roles`/`permissions` claims
    /// hold this value.
    Scope(String),
}

impl RoutePolicy {
    /// A policy requiring `scope`.
    pub fn scope(scope: impl Into<String>) -> Self {
        Self::Scope(scope.into())
    }

    /// Whether a caller with these scopes (`None`: no valid token) may call the route.
    pub fn allows<S: AsRef<str>>(&self, scopes: Option<&[S]>) -> bool {
        match (self, scopes) {
            (Self::Public, _) => true,
            (_, None) => false,
            (Self::Authenticated, Some(_)) => true,
            (Self::Scope(want), Some(have)) => have.iter().any(|s| s.as_ref() == want),
        }
    }
}

/// A policy written in a route attribute, collected at link time (the macros emit these).
#[doc(hidden)]
#[derive(Debug)]
pub struct Declared {
    /// Which route.
    pub route: DeclaredRoute,
    /// Its policy.
    pub policy: StaticPolicy,
}

/// The route of a [`Declared`] policy.
#[doc(hidden)]
#[derive(Debug)]
pub enum DeclaredRoute {
    /// An HTTP route: method (upper case) and template.
    Http(&'static str, &'static str),
    /// A gRPC method: the service's full name (`user.v1.Users`) and the method (`CreateUser`).
    Grpc(&'static str, &'static str),
}

/// A [`RoutePolicy`] in a `static`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum StaticPolicy {
    /// [`RoutePolicy::Public`].
    Public,
    /// [`RoutePolicy::Authenticated`].
    Authenticated,
    /// [`RoutePolicy::Scope`].
    Scope(&'static str),
}

inventory::collect!(Declared);

impl Declared {
    fn key(&self) -> String {
        match self.route {
            DeclaredRoute::Http(method, path) => format!("{method} {path}"),
            DeclaredRoute::Grpc(service, method) => format!("/{service}/{method}"),
        }
    }
}

impl From<StaticPolicy> for RoutePolicy {
    fn from(p: StaticPolicy) -> Self {
        match p {
            StaticPolicy::Public => Self::Public,
            StaticPolicy::Authenticated => Self::Authenticated,
            StaticPolicy::Scope(s) => Self::Scope(s.to_owned()),
        }
    }
}

fn declared_table() -> &'static RwLock<HashMap<String, RoutePolicy>> {
    static TABLE: OnceLock<RwLock<HashMap<String, RoutePolicy>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let table = inventory::iter::<Declared>
            .into_iter()
            .map(|d| (d.key(), RoutePolicy::from(d.policy)))
            .collect();
        RwLock::new(table)
    })
}

/// Declares the policy of a route at run time, for routers built without the macros (the
/// macros' own declarations are collected at link time). `route` is `"<METHOD> <template>"`
/// or a gRPC method path. Config (`auth.routes`) still overrides it.
///
/// ```
/// use truss::auth::{RoutePolicy, declare, declared};
///
/// declare("GET /docs/policy-example", RoutePolicy::Public);
/// assert_eq!(declared("GET /docs/policy-example"), Some(RoutePolicy::Public));
/// ```
pub fn declare(route: &str, policy: RoutePolicy) {
    declared_table()
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(route.to_owned(), policy);
}

/// The policy an attribute (or [`declare`]) gave `route`, if any.
pub fn declared(route: &str) -> Option<RoutePolicy> {
    declared_table()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(route)
        .cloned()
}

/// Every declared policy, by route key.
#[cfg_attr(not(feature = "auth"), allow(dead_code))]
pub(crate) fn all_declared() -> Vec<(String, RoutePolicy)> {
    declared_table()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The key of an HTTP route: `"<METHOD> <template>"`.
///
/// ```
/// assert_eq!(truss::auth::http_route_key(&http::Method::POST, "/v1/users"), "POST /v1/users");
/// ```
pub fn http_route_key(method: &http::Method, template: &str) -> String {
    format!("{method} {template}")
}
