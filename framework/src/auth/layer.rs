//! The server layer: reads the bearer token, verifies it, applies the route's policy, and
//! hands the [`Identity`] to the handler. Placed after trace and metrics (rejections are
//! traced and counted) and before admission.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::IntoResponse;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use pin_project::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;

use super::config::{AuthConfig, DefaultPolicy};
use super::verify::{AuthError, Verifier};
use super::{Identity, RoutePolicy, policy};
use crate::labels::BoundedMap;
use crate::wire::{is_grpc, route_label};

/// gRPC methods that are public unless config says otherwise: probes and tooling call
/// them without tokens.
const PUBLIC_GRPC: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Route policies: config above attributes above the default.
#[derive(Debug, Default)]
struct Policies {
    /// By route template or gRPC path; `None` method: any method.
    by_route: HashMap<String, Vec<(Option<Method>, RoutePolicy)>>,
    default: Option<RoutePolicy>,
}

impl Policies {
    fn new(config: &AuthConfig) -> Self {
        let mut p = Self {
            by_route: HashMap::new(),
            default: Some(match config.default {
                DefaultPolicy::Protected => RoutePolicy::Authenticated,
                DefaultPolicy::Public => RoutePolicy::Public,
            }),
        };
        for path in PUBLIC_GRPC {
            p.insert(path, RoutePolicy::Public);
        }
        for (route, policy) in policy::all_declared() {
            p.insert(&route, policy);
        }
        for (route, policy) in &config.routes {
            p.insert(route, policy.policy());
        }
        p
    }

    /// `route` is `"METHOD /template"` or `"/template"` (any method).
    fn insert(&mut self, route: &str, policy: RoutePolicy) {
        let (method, path) = match route.split_once(' ') {
            Some((m, path)) => (Method::from_bytes(m.trim().as_bytes()).ok(), path.trim()),
            None => (None, route.trim()),
        };
        let entries = self.by_route.entry(path.to_owned()).or_default();
        entries.retain(|(m, _)| *m != method);
        entries.push((method, policy));
    }

    /// The policy of `method` on `route`: its own entry; for `HEAD`, which axum answers
    /// with the `GET` handler, the `GET` entry next; then the any-method entry; then the
    /// default.
    fn of(&self, method: &Method, route: &str) -> &RoutePolicy {
        let entries = self
            .by_route
            .get(route)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let exact = |wanted: &Method| entries.iter().find(|(m, _)| m.as_ref() == Some(wanted));
        exact(method)
            .or_else(|| {
                (*method == Method::HEAD)
                    .then(|| exact(&Method::GET))
                    .flatten()
            })
            .or_else(|| entries.iter().find(|(m, _)| m.is_none()))
            .map(|(_, p)| p)
            .or(self.default.as_ref())
            .unwrap_or(&RoutePolicy::Authenticated)
    }
}

const RESULTS: [&str; 7] = [
    "ok",
    "public",
    "missing",
    "expired",
    "invalid",
    "forbidden",
    "unavailable",
];

struct Shared {
    verifier: Arc<Verifier>,
    policies: Policies,
    counters: BoundedMap<[metrics::Counter; 7]>,
}

impl Shared {
    fn count(&self, route: &str, result: &str) {
        let i = RESULTS.iter().position(|r| *r == result).unwrap_or(4);
        self.counters.with(
            route,
            |label| {
                RESULTS.map(|r| {
                    metrics::counter!("truss_auth_total", "route" => label.to_owned(), "result" => r)
                })
            },
            |c| c[i].increment(1),
        );
    }
}

/// Authenticates requests; see the [module docs](crate::auth).
#[derive(Clone)]
pub struct AuthLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer").finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// The layer for `[auth]`, verifying with `verifier`. Route policies declared by
    /// attributes or [`declare`](super::declare) are read now.
    pub fn new(config: &AuthConfig, verifier: Arc<Verifier>) -> Self {
        Self {
            shared: Arc::new(Shared {
                verifier,
                policies: Policies::new(config),
                counters: BoundedMap::default(),
            }),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service built by [`AuthLayer`].
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What the bearer token of a request said, before the route's policy.
enum Presented {
    None,
    Verified(Identity),
    Refused(AuthError),
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = AuthFuture<S::Future, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // A header that is not `Bearer <token>` (say `Basic`, for a login route) is refused
        // like a bad token: ignored on a public route, a 401 elsewhere.
        let presented = match bearer(req.headers()) {
            Err(e) => Presented::Refused(e),
            Ok(None) => Presented::None,
            Ok(Some(token)) => match self.shared.verifier.verify_now(token) {
                Ok(Ok(identity)) => Presented::Verified(identity),
                Ok(Err(e)) => Presented::Refused(e),
                Err(_needs_refresh) => return self.slow(req),
            },
        };
        self.decide(req, presented)
    }
}

impl<S> Auth<S> {
    fn decide<B>(
        &mut self,
        mut req: Request<B>,
        presented: Presented,
    ) -> AuthFuture<S::Future, S::Error>
    where
        S: Service<Request<B>, Response = Response<Body>>,
    {
        let policy = self.shared.policies.of(req.method(), route_label(&req));
        match presented {
            // On a public route a refused token is ignored: a client holding an expired
            // token can still log in.
            Presented::None | Presented::Refused(_) if *policy == RoutePolicy::Public => {
                self.shared.count(route_label(&req), "public");
                AuthFuture::Inner {
                    inner: self.inner.call(req),
                }
            }
            Presented::Refused(e) => self.reject(&req, e),
            Presented::None => self.reject(&req, AuthError::Missing),
            Presented::Verified(who) if !policy.allows(Some(who.scopes())) => {
                self.reject(&req, AuthError::InsufficientScope)
            }
            Presented::Verified(who) => {
                self.shared.count(route_label(&req), "ok");
                let who = Arc::new(who);
                req.extensions_mut().insert(who.clone());
                AuthFuture::Scoped {
                    record: Some(who.clone()),
                    inner: Identity::scope(who, self.inner.call(req)),
                }
            }
        }
    }

    fn reject<B>(&self, req: &Request<B>, e: AuthError) -> AuthFuture<S::Future, S::Error>
    where
        S: Service<Request<B>>,
    {
        self.shared.count(route_label(req), e.label());
        let policy = self.shared.policies.of(req.method(), route_label(req));
        AuthFuture::Ready {
            response: Some(rejection(is_grpc(req.headers()), e, policy)),
        }
    }

    /// The token names an unknown key id: refresh the JWKS (rate-limited), then decide.
    fn slow<B>(&mut self, req: Request<B>) -> AuthFuture<S::Future, S::Error>
    where
        S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
        S::Future: Send,
        B: Send + 'static,
    {
        let clone = self.inner.clone();
        let mut this = Auth {
            inner: std::mem::replace(&mut self.inner, clone),
            shared: self.shared.clone(),
        };
        AuthFuture::Slow {
            inner: Box::pin(async move {
                let token = bearer(req.headers())
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                    .to_owned();
                let presented = match this.shared.verifier.verify(&token).await {
                    Ok(who) => Presented::Verified(who),
                    Err(e) => Presented::Refused(e),
                };
                this.decide(req, presented).await
            }),
        }
    }
}

/// The token of `Authorization: Bearer <token>` (gRPC sends the same header as metadata).
fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Invalid("the authorization header is not text"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(AuthError::Invalid(
            "the authorization header is not `Bearer <token>`",
        )),
    }
}

/// The error response: JSON with `WWW-Authenticate` on HTTP, a status on gRPC.
fn rejection(grpc: bool, e: AuthError, policy: &RoutePolicy) -> Response<Body> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    if grpc {
        return crate::wire::reject::reject(true, status, e.reason(), e.message(), None);
    }
    let mut response = crate::Error::from(e).into_response();
    let challenge = match (e, policy) {
        (AuthError::Missing, _) => "Bearer".to_owned(),
        (AuthError::InsufficientScope, RoutePolicy::Scope(scope)) => {
            format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"")
        }
        (AuthError::Unavailable, _) => return response,
        (e, _) => format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            e.message()
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The response future of [`Auth`].
#[pin_project(project = AuthProj)]
pub enum AuthFuture<F, E> {
    /// Refused before the handler.
    Ready {
        /// The rejection.
        response: Option<Response<Body>>,
    },
    /// Anonymous on a public route.
    Inner {
        /// The handler's future.
        #[pin]
        inner: F,
    },
    /// Authenticated: the identity is current while the handler runs.
    Scoped {
        /// Recorded in the request span at the first poll.
        record: Option<Arc<Identity>>,
        /// The handler's future.
        #[pin]
        inner: TaskLocalFuture<Arc<Identity>, F>,
    },
    /// Waiting for a JWKS refresh first.
    Slow {
        /// The whole decision and the handler.
        inner: Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>,
    },
}

impl<F, E> Future for AuthFuture<F, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AuthProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| Response::new(Body::empty())))),
            AuthProj::Inner { inner } => inner.poll(cx),
            AuthProj::Scoped { record, inner } => {
                if let Some(who) = record.take()
                    && let Some(subject) = who.subject()
                {
                    tracing::Span::current().record("subject", tracing::field::display(subject));
                }
                inner.poll(cx)
            }
            AuthProj::Slow { inner } => inner.as_mut().poll(cx),
        }
    }
}
