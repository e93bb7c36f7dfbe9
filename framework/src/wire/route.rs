use axum::extract::MatchedPath;
use http::Request;

/// The label a request is counted and configured under: the gRPC method path
/// (`/pkg.Service/Method`) for gRPC, the axum route template (`/users/{id}`) for HTTP, and
/// `unmatched` for a request no route matched. Never the raw HTTP path, so the set of labels
/// stays bounded by the routes the app declares.
pub fn route_label<B>(req: &Request<B>) -> &str {
    label_of(req.extensions().get::<MatchedPath>(), req.uri())
}

/// [`route_label`] from its parts, for futures that keep them after the request is gone.
pub(crate) fn label_of<'a>(matched: Option<&'a MatchedPath>, uri: &'a http::Uri) -> &'a str {
    match matched {
        // tonic services are mounted as `/{service}/{*rest}`: the method is the URI path.
        Some(matched) if matched.as_str().ends_with("/{*rest}") => uri.path(),
        Some(matched) => matched.as_str(),
        None => "unmatched",
    }
}
