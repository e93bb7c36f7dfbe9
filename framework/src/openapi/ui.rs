//! Swagger UI for the document, at `/docs` (feature `openapi-ui`, `http.openapi_ui = true`).
//!
//! The page's files come from the `utoipa-swagger-ui-vendored` crate, which carries Swagger
//! UI's release archive: nothing is downloaded, at build time or at run time. They are read
//! out of the archive on the first request and kept in memory (about 1.8 MB).

use std::io::Read;
use std::sync::OnceLock;

use axum::Router;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};

/// The files the page needs, by the name they are served under.
const FILES: &[(&str, &str)] = &[
    ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    (
        "swagger-ui-standalone-preset.js",
        "text/javascript; charset=utf-8",
    ),
    ("swagger-ui.css", "text/css; charset=utf-8"),
];

/// The page: Swagger UI reading `/openapi.json`.
fn page(title: &str) -> String {
    let title = title.replace(['<', '>', '&', '"'], "");
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}: API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
    }});
  </script>
</body>
</html>
"##
    )
}

/// `GET /docs` and its files, public when `[auth]` is on.
pub(crate) fn router(title: &str) -> Router {
    crate::auth::declare("GET /docs", crate::auth::RoutePolicy::Public);
    crate::auth::declare("GET /docs/{file}", crate::auth::RoutePolicy::Public);
    let html = page(title);
    Router::new()
        .route("/docs", get(move || async move { Html(html) }))
        .route("/docs/{file}", get(file))
}

async fn file(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let Some(&(name, content_type)) = FILES.iter().find(|(n, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match assets() {
        Ok(files) => match files.iter().find(|(n, _)| *n == name) {
            Some((_, bytes)) => {
                ([(header::CONTENT_TYPE, content_type)], bytes.clone()).into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        },
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.clone()).into_response(),
    }
}

type Files = Vec<(&'static str, bytes::Bytes)>;

/// The files, read from the vendored archive once.
fn assets() -> &'static Result<Files, String> {
    static ASSETS: OnceLock<Result<Files, String>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let archive = std::io::Cursor::new(utoipa_swagger_ui_vendored::SWAGGER_UI_VENDORED);
        let mut zip = zip::ZipArchive::new(archive)
            .map_err(|e| format!("the vendored Swagger UI archive is unreadable: {e}"))?;
        let mut files = Vec::new();
        for (name, _) in FILES {
            let path = (0..zip.len())
                .filter_map(|i| zip.name_for_index(i).map(str::to_owned))
                .find(|p| p.ends_with(&format!("/dist/{name}")))
                .ok_or_else(|| format!("{name} is not in the vendored Swagger UI"))?;
            let mut entry = zip.by_name(&path).map_err(|e| format!("{name}: {e}"))?;
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{name}: {e}"))?;
            files.push((*name, bytes::Bytes::from(bytes)));
        }
        Ok(files)
    })
}
