use axum::extract::MatchedPath;
use http::Request;

/// The label a request is counted and configured under: the gRPC method path
/// (`/pkg.Service/Method`) for gRPC, the axum route template (`/users/{id}`) for HTTP, and
/// `unmatched` for a request no route matched. Never the raw HTTP path, so the set of labels
/// stays bounded by the routes the app declares.
pub fn route_label<B>(req: &Request<B>) -> &str {
    label_of(req.extensions().get::<MatchedPath>(), req.uri())
}

/// Whether `req` matched an HTTP route (an axum template, not a gRPC service's mount): its
/// responses are plain HTTP unless their content type says gRPC (see
/// [`is_grpc_response`](super::headers::is_grpc_response)).
pub(crate) fn is_http_route<B>(req: &Request<B>) -> bool {
    req.extensions()
        .get::<MatchedPath>()
        .is_some_and(|m| !is_grpc_mount(m))
}

/// [`route_label`] from its parts.
fn label_of<'a>(matched: Option<&'a MatchedPath>, uri: &'a http::Uri) -> &'a str {
    match matched {
        Some(matched) if is_grpc_mount(matched) => uri.path(),
        Some(matched) => matched.as_str(),
        None => "unmatched",
    }
}

/// Whether `matched` is a tonic service's mount (`/{service}/{*rest}`), whose label is the
/// method's URI path rather than the template.
fn is_grpc_mount(matched: &MatchedPath) -> bool {
    matched.as_str().ends_with("/{*rest}")
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
            Some(matched) if is_grpc_mount(matched) => match req.uri().path_and_query() {
                Some(path) => RouteLabel::Method(path.clone()),
                None => RouteLabel::Template(matched.clone()),
            },
            Some(matched) => RouteLabel::Template(matched.clone()),
            None => RouteLabel::Unmatched,
        }
    }

    /// Whether it is an HTTP route's, as [`is_http_route`] says of the request.
    pub(crate) fn is_http_route(&self) -> bool {
        matches!(self, RouteLabel::Template(matched) if !is_grpc_mount(matched))
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
        let app = Router::new()
            .route("/users/{id}", get(label))
            .route("/pkg.Greeter/{*rest}", any(label))
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
    }
}
