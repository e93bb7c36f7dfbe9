use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

/// The label a request is counted and configured under: the gRPC method path
/// (`/pkg.Service/Method`) for gRPC, the axum route template (`/users/{id}`) for HTTP, and
/// `unmatched` for a request no route matched. Never the raw HTTP path, so the set of labels
/// stays bounded by the routes the app declares.
///
/// A request is gRPC here when [`GrpcRoutesLayer`] marked it (the app's gRPC listener
/// does) and its route is a tonic service's mount (`/{service}/{*rest}`): an HTTP route of
/// that shape (`/files/{*rest}`) keeps its template, whatever the request's headers say.
pub fn route_label<B>(req: &Request<B>) -> &str {
    match req.extensions().get::<MatchedPath>() {
        Some(matched) if is_grpc_mount(matched, req) => req.uri().path(),
        Some(matched) => matched.as_str(),
        None => "unmatched",
    }
}

/// Whether `req` matched an HTTP route (an axum template, not a gRPC service's mount): its
/// responses are plain HTTP unless their content type says gRPC (see
/// [`is_grpc_response`](super::headers::is_grpc_response)).
pub(crate) fn is_http_route<B>(req: &Request<B>) -> bool {
    req.extensions()
        .get::<MatchedPath>()
        .is_some_and(|m| !is_grpc_mount(m, req))
}

/// Whether `matched` is a tonic service's mount (`/{service}/{*rest}`) on routes marked by
/// [`GrpcRoutesLayer`]: its label is the method's URI path rather than the template.
fn is_grpc_mount<B>(matched: &MatchedPath, req: &Request<B>) -> bool {
    matched.as_str().ends_with("/{*rest}") && req.extensions().get::<GrpcRoutes>().is_some()
}

/// The mark [`GrpcRoutesLayer`] leaves on a request.
#[derive(Debug, Clone, Copy)]
struct GrpcRoutes;

/// Marks requests as served by tonic services, so truss's layers inside it label them by
/// gRPC method (`/pkg.Greeter/SayHello`) rather than by tonic's route template
/// (`/pkg.Greeter/{*rest}`), and treat their answers as gRPC.
///
/// The app's gRPC listener applies it, outermost in its stack. Apply it yourself, outermost,
/// when you put truss's server layers around tonic routes outside an [`App`](crate::App);
/// never on HTTP routes, where a route such as `/files/{*rest}` would then be labelled by
/// its raw paths (unbounded, and missing its own per-route policies).
///
/// ```
/// use truss::observe::metrics::MetricsLayer;
/// use truss::wire::{GrpcRoutesLayer, Transport};
///
/// let grpc = tonic::service::Routes::default().into_axum_router();
/// let protected: axum::Router = grpc
///     .layer(MetricsLayer::new(Transport::Grpc))
///     .layer(GrpcRoutesLayer::new());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GrpcRoutesLayer {
    on: bool,
}

impl GrpcRoutesLayer {
    /// The layer.
    pub fn new() -> Self {
        Self { on: true }
    }

    /// A layer that marks only when `on`: the app's stack is one type for both listeners.
    pub(crate) fn when(on: bool) -> Self {
        Self { on }
    }
}

impl Default for GrpcRoutesLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for GrpcRoutesLayer {
    type Service = GrpcRoutesService<S>;

    fn layer(&self, inner: S) -> GrpcRoutesService<S> {
        GrpcRoutesService { inner, on: self.on }
    }
}

/// The service built by [`GrpcRoutesLayer`].
#[derive(Debug, Clone)]
pub struct GrpcRoutesService<S> {
    inner: S,
    on: bool,
}

impl<S, B> Service<Request<B>> for GrpcRoutesService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if self.on {
            req.extensions_mut().insert(GrpcRoutes);
        }
        self.inner.call(req)
    }
}

/// A request's [`route_label`], kept by a response future after the request is gone.
///
/// Small on purpose (48 bytes): it lives in every request's future (the access line, a
/// deadline's timeout counter), where `MatchedPath` and a whole `Uri` took 104. Cloning it
/// from a request is usually a reference-count increment (a path still held in a `Vec`
/// is moved to shared storage once, as any `Bytes` clone does).
#[derive(Debug, Clone)]
pub(crate) enum RouteLabel {
    /// An HTTP route's template (`/users/{id}`).
    Template(MatchedPath),
    /// A gRPC method (`/pkg.Service/Method`).
    Method(http::uri::PathAndQuery),
    /// No route matched.
    Unmatched,
}

impl RouteLabel {
    /// The label of `req`, as [`route_label`] gives it.
    pub(crate) fn of<B>(req: &Request<B>) -> Self {
        match req.extensions().get::<MatchedPath>() {
            Some(matched) if is_grpc_mount(matched, req) => match req.uri().path_and_query() {
                Some(path) => RouteLabel::Method(path.clone()),
                None => RouteLabel::Template(matched.clone()),
            },
            Some(matched) => RouteLabel::Template(matched.clone()),
            None => RouteLabel::Unmatched,
        }
    }

    /// Whether it is an HTTP route's, as [`is_http_route`] says of the request.
    pub(crate) fn is_http_route(&self) -> bool {
        matches!(self, RouteLabel::Template(_))
    }

    /// The label as text.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RouteLabel::Template(matched) => matched.as_str(),
            RouteLabel::Method(path) => path.path(),
            RouteLabel::Unmatched => "unmatched",
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{any, get};
    use http::Request;
    use tower::ServiceExt;

    use super::*;

    /// The label each route's handler sees, kept and read back as the futures do.
    async fn kept(uri: &str) -> String {
        let label = |req: Request<Body>| async move {
            let kept = RouteLabel::of(&req);
            assert_eq!(kept.as_str(), route_label(&req));
            kept.as_str().to_owned()
        };
        let grpc = Router::new()
            .route("/pkg.Greeter/{*rest}", any(label))
            .layer(GrpcRoutesLayer::new());
        let app = Router::new()
            .route("/users/{id}", get(label))
            .route("/files/{*rest}", get(label))
            .merge(grpc)
            .fallback(label);
        let response = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_kept_label_is_the_template_the_grpc_method_or_unmatched() {
        assert_eq!(kept("/users/7?x=1").await, "/users/{id}");
        assert_eq!(kept("/pkg.Greeter/SayHello").await, "/pkg.Greeter/SayHello");
        assert_eq!(kept("/nowhere/7").await, "unmatched");
        // An HTTP route of a tonic mount's shape keeps its template.
        assert_eq!(kept("/files/a/b.txt").await, "/files/{*rest}");
    }
}
