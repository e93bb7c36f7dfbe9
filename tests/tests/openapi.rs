//! The OpenAPI documents of the `user` and `order` examples: valid OpenAPI 3.1 (checked by
//! `openapi-spec-validator`, installed by scripts/setup.sh), listing exactly the routes the
//! examples declare, each of which is served, with the error model and the auth policies.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_json::Value;
use truss_tests::{BoxError, call_as};

async fn document(http: SocketAddr) -> Result<Value, BoxError> {
    let (code, body) = truss_tests::get(http, "/openapi.json").await?;
    assert_eq!(code, http::StatusCode::OK, "{body}");
    Ok(serde_json::from_str(&body)?)
}

/// Validates `document` against the OpenAPI 3.1 schema with a real validator.
fn validate(document: &Value) {
    truss_tests::validate_openapi(&document.to_string());
}

/// The routes a crate's source declares: `#[http(method, "path"` and
/// `#[truss::route(method, "path"`, as `METHOD path`.
fn declared(src: &str) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("example sources") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).unwrap_or_default();
        for start in ["#[http(", "#[truss::route("] {
            for piece in text.split(start).skip(1) {
                let mut parts = piece.splitn(2, ',');
                let method = parts.next().unwrap_or_default().trim().to_uppercase();
                let path = parts
                    .next()
                    .unwrap_or_default()
                    .split('"')
                    .nth(1)
                    .unwrap_or_default();
                routes.insert(format!("{method} {path}"));
            }
        }
    }
    routes
}

/// The operations of a document, as `METHOD path`.
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (path, methods) in doc["paths"].as_object().into_iter().flatten() {
        for method in methods.as_object().into_iter().flatten().map(|(m, _)| m) {
            out.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    out
}

/// Every operation is served: answered by its handler, not by the router's 404 or 405.
async fn all_served(http: SocketAddr, doc: &Value, token: &str) -> Result<(), BoxError> {
    for op in operations(doc) {
        let (method, path) = op.split_once(' ').ok_or("operation")?;
        let path = path.replace("{id}", "1");
        let body = matches!(method, "POST" | "PUT" | "PATCH").then_some("{}");
        let (code, _, text) = call_as(http, method, &path, body, Some(token)).await?;
        assert_ne!(code, http::StatusCode::METHOD_NOT_ALLOWED, "{op}: {text}");
        // A handler's 404 carries the error body; the router's has none.
        assert!(
            code != http::StatusCode::NOT_FOUND || text.contains("\"reason\""),
            "{op} is not served: {text}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn user_documents_exactly_its_routes_and_they_are_served() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let config =
        truss_tests::example_config_in::<user::UserConfig>(user::DEFAULTS, "user", dir.path());
    let app = user::app(&config).await?.start().await?;
    let http = app.http_addr().ok_or("http")?;
    let doc = document(http).await?;
    validate(&doc);

    let mut expected = declared(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/user/src"));
    expected.insert("GET /openapi.json".to_owned());
    assert_eq!(operations(&doc), expected);
    let token = truss_tests::demo_token(http).await?;
    all_served(http, &doc, &token).await?;

    // Proto-backed: the path parameter and the query from the message's fields.
    let get = &doc["paths"]["/v1/users/{id}"]["get"];
    assert_eq!(get["parameters"][0]["name"], "id");
    assert_eq!(get["parameters"][0]["in"], "path");
    // uint64 in the proto3 JSON mapping: a decimal string.
    assert_eq!(get["parameters"][0]["schema"]["type"], "string");
    assert_eq!(get["parameters"][0]["schema"]["pattern"], "^[0-9]{1,20}$");
    let list = &doc["paths"]["/v1/users"]["get"];
    let query: Vec<&str> = list["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(query, ["page_size", "page_token"]);
    assert_eq!(
        list["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/user.v1.ListUsersResponse"
    );
    let users = &doc["components"]["schemas"]["user.v1.ListUsersResponse"]["properties"]["users"];
    assert_eq!(users["items"]["$ref"], "#/components/schemas/user.v1.User");
    // Comments in the .proto file describe the fields.
    assert!(
        list["parameters"][0]["schema"]["description"]
            .as_str()
            .unwrap_or_default()
            .contains("0 means 20"),
        "{list}"
    );
    // Plain route: its Rust types.
    let login = &doc["paths"]["/v1/login"]["post"];
    assert_eq!(
        login["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Login"
    );
    assert!(doc["components"]["schemas"]["Login"]["properties"]["password"].is_object());
    // The error model, and auth: login is public, creating a user needs a token.
    for status in ["400", "413", "429", "500", "503", "504", "default"] {
        assert_eq!(
            login["responses"][status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "{status}"
        );
    }
    assert!(login["responses"]["401"].is_null());
    assert_eq!(login["security"], serde_json::json!([]));
    let create = &doc["paths"]["/v1/users"]["post"];
    assert!(create["responses"]["401"].is_object() && create["responses"]["403"].is_object());
    assert_eq!(create["security"], serde_json::json!([{"bearer": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn order_documents_exactly_its_routes_and_they_are_served() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let (user_app, app) = truss_tests::user_and_order(dir.path()).await?;
    let http = app.http_addr().ok_or("http")?;
    let doc = document(http).await?;
    validate(&doc);
    let mut expected = declared(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/order/src"
    ));
    expected.insert("GET /openapi.json".to_owned());
    assert_eq!(
        operations(&doc),
        expected,
        "no user route leaks into order's document"
    );
    let token = truss_tests::demo_token(user_app.http_addr().ok_or("user http")?).await?;
    all_served(http, &doc, &token).await?;
    app.shutdown().await?;
    user_app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn openapi_off_is_not_served() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let mut config =
        truss_tests::example_config_in::<user::UserConfig>(user::DEFAULTS, "user", dir.path());
    config.http.openapi = false;
    let app = user::app(&config).await?.start().await?;
    let (code, _) = truss_tests::get(app.http_addr().ok_or("http")?, "/openapi.json").await?;
    assert_eq!(
        code,
        http::StatusCode::UNAUTHORIZED,
        "no such route: protected by default"
    );
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn swagger_ui_is_served_from_vendored_files_without_a_token() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let mut config =
        truss_tests::example_config_in::<user::UserConfig>(user::DEFAULTS, "user", dir.path());
    config.http.openapi_ui = true;
    let app = user::app(&config).await?.start().await?;
    let http = app.http_addr().ok_or("http")?;
    let (code, headers, page) = call_as(http, "GET", "/docs", None, None).await?;
    assert_eq!(code, http::StatusCode::OK, "public under [auth]: {page}");
    assert!(
        headers[http::header::CONTENT_TYPE]
            .to_str()?
            .starts_with("text/html")
    );
    assert!(page.contains("/openapi.json") && page.contains("/docs/swagger-ui-bundle.js"));
    for (file, kind) in [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui-standalone-preset.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
    ] {
        let (code, headers, body) =
            call_as(http, "GET", &format!("/docs/{file}"), None, None).await?;
        assert_eq!(code, http::StatusCode::OK, "{file}");
        assert!(
            headers[http::header::CONTENT_TYPE]
                .to_str()?
                .starts_with(kind),
            "{file}"
        );
        assert!(body.len() > 10_000, "{file}: {} bytes", body.len());
    }
    let (code, _, _) = call_as(http, "GET", "/docs/secrets.txt", None, None).await?;
    assert_eq!(code, http::StatusCode::NOT_FOUND);
    app.shutdown().await?;
    Ok(())
}
