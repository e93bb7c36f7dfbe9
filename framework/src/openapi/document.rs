//! Assembling the document: one operation per declared route.

use std::collections::BTreeMap;
use std::fmt;

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::errors;
use super::proto::{FieldKind, Index, Schemas};
use super::{Handler, JsonMapping, RouteDoc, Source};
use crate::auth::{AuthConfig, RoutePolicy};

/// Why the document could not be made: a route that cannot be described, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenApiError(String);

impl fmt::Display for OpenApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot describe the HTTP API: {}", self.0)
    }
}

impl std::error::Error for OpenApiError {}

/// What a document is made from, besides the routes the macros declared.
#[derive(Debug, Clone, Copy)]
pub struct Api<'a> {
    /// `info.title`: the service's name.
    pub title: &'a str,
    /// `info.version`.
    pub version: &'a str,
    /// The encoded descriptor sets of the proto-backed routes.
    pub descriptor_sets: &'a [&'a [u8]],
    /// Only routes declared in this crate; `None`: every route linked in.
    pub krate: Option<&'a str>,
    /// `[auth]`: which operations need a token.
    pub auth: &'a AuthConfig,
    /// How proto-backed routes write their messages.
    pub mapping: JsonMapping,
}

/// The OpenAPI 3.1 document of every route declared with the macros (see the
/// [module docs](super)).
///
/// ```
/// use truss::openapi::{Api, document};
///
/// #[truss::route(get, "/docs-example/{id}")]
/// async fn find(#[path] id: u64) -> Result<String, truss::Error> {
///     Ok(format!("#{id}"))
/// }
///
/// let _router: axum::Router = truss::routes![find]; // mounted: listed
/// let auth = truss::auth::AuthConfig::default();
/// let api = Api {
///     title: "demo",
///     version: "1.0.0",
///     descriptor_sets: &[],
///     krate: None,
///     auth: &auth,
///     mapping: Default::default(),
/// };
/// let doc = document(&api).unwrap();
/// assert_eq!(doc["openapi"], "3.1.0");
/// assert!(doc["paths"]["/docs-example/{id}"]["get"].is_object());
/// ```
pub fn document(api: &Api<'_>) -> Result<serde_json::Value, OpenApiError> {
    let index = Index::new(api.descriptor_sets, api.mapping).map_err(OpenApiError)?;
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = SchemaGenerator::new(settings);
    let mut schemas = Schemas::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut routes: Vec<&RouteDoc> = inventory::iter::<RouteDoc>
        .into_iter()
        .filter(|r| api.krate.is_none_or(|k| k == r.krate))
        .filter(|r| super::mounted(r.method, r.path))
        .collect();
    routes.sort_by_key(|r| (r.path, r.method));
    for route in routes {
        let name = format!("{} {}", route.method, route.path);
        let protected = protected(api.auth, &name);
        let mut op = match &route.source {
            Source::Rpc { service, method } => {
                rpc_operation(route, service, method, &index, &mut schemas)
            }
            Source::Handler(h) => Ok(handler_operation(route, h, &mut generator)),
        }
        .map_err(|e| OpenApiError(format!("route {name}: {e}")))?;
        finish(&mut op, protected, api.auth.is_on());
        let methods = paths.entry(openapi_path(route.path)).or_default();
        if methods
            .insert(route.method.to_ascii_lowercase(), Value::Object(op))
            .is_some()
        {
            return Err(OpenApiError(format!("route {name} is declared twice")));
        }
    }
    paths
        .entry("/openapi.json".to_owned())
        .or_default()
        .insert("get".to_owned(), self_operation());
    for (name, schema) in generator.take_definitions(true) {
        schemas.insert(name, schema);
    }
    schemas.insert("Error".to_owned(), errors::error_schema());
    let mut components = json!({"schemas": schemas});
    if api.auth.is_on() {
        components["securitySchemes"] =
            json!({"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}});
    }
    Ok(json!({
        "openapi": "3.1.0",
        "info": {"title": api.title, "version": api.version},
        "paths": paths,
        "components": components,
    }))
}

/// Whether `route` ("GET /v1/users") needs a token: config, then the macros, then the
/// default.
fn protected(auth: &AuthConfig, route: &str) -> bool {
    if !auth.is_on() {
        return false;
    }
    let policy = auth
        .routes
        .get(route)
        .map(|r| r.policy())
        .or_else(|| crate::auth::declared(route));
    match policy {
        Some(policy) => policy != RoutePolicy::Public,
        None => auth.default != crate::auth::DefaultPolicy::Public,
    }
}

/// The error responses and security every operation has.
fn finish(op: &mut Map<String, Value>, protected: bool, auth_on: bool) {
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut all = errors::responses(protected);
    all.extend(responses);
    op.insert("responses".to_owned(), Value::Object(all));
    if auth_on {
        let security = if protected {
            json!([{"bearer": []}])
        } else {
            json!([])
        };
        op.insert("security".to_owned(), security);
    }
}

/// An rpc's route: path parameters fill the fields they name, the rest come from the query
/// or the body.
fn rpc_operation(
    route: &RouteDoc,
    service: &str,
    method: &str,
    index: &Index,
    schemas: &mut Schemas,
) -> Result<Map<String, Value>, String> {
    let (input, output, comment) = index.method(service, method).ok_or_else(|| {
        format!(
            "rpc {service}/{method} is not in the registered descriptors: register them \
             with AppBuilder::file_descriptor_set, or set `http.openapi = false`"
        )
    })?;
    let (input, output, comment) = (input.clone(), output.clone(), comment.clone());
    let fields = index.fields(&input, schemas)?;
    let in_path = template_params(route.path);
    let mut parameters = Vec::new();
    for name in &in_path {
        let field = fields
            .iter()
            .find(|f| f.name == *name || f.proto == *name)
            .ok_or_else(|| format!("the path names `{name}`, which {input} does not have"))?;
        if field.kind != FieldKind::Scalar {
            return Err(format!(
                "`{name}` in the path is not a scalar field of {input}"
            ));
        }
        parameters.push(parameter(name, "path", true, field.schema.clone()));
    }
    let rest = fields
        .into_iter()
        .filter(|f| !in_path.contains(&f.name) && !in_path.contains(&f.proto));
    let mut op = Map::new();
    if takes_body(route.method) {
        let properties: Map<String, Value> = rest.map(|f| (f.name, f.schema)).collect();
        op.insert(
            "requestBody".to_owned(),
            json!({
                "required": false,
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "description": format!("{input}, without the fields in the path."),
                    "properties": properties,
                    "additionalProperties": index.mapping() == JsonMapping::SerdeDerive,
                }}},
            }),
        );
    } else {
        for field in rest {
            if field.kind != FieldKind::Scalar {
                return Err(format!(
                    "field `{}` of {input} cannot come from the query string (it is a \
                     message or repeated): use POST, PUT or PATCH, or name it in the path",
                    field.name
                ));
            }
            parameters.push(parameter(&field.name, "query", false, field.schema));
        }
    }
    op.insert(
        "operationId".to_owned(),
        json!(format!("{service}.{method}")),
    );
    op.insert("tags".to_owned(), json!([service]));
    if !comment.is_empty() {
        op.insert("description".to_owned(), json!(comment));
    }
    op.insert("parameters".to_owned(), Value::Array(parameters));
    let reply = index.reference(&output, schemas)?;
    op.insert("responses".to_owned(), success(route.status, reply));
    Ok(op)
}

/// A `#[truss::route]` handler's operation, from its Rust types.
fn handler_operation(
    route: &RouteDoc,
    h: &Handler,
    generator: &mut SchemaGenerator,
) -> Map<String, Value> {
    let mut parameters = Vec::new();
    for (name, schema) in h.path {
        parameters.push(parameter(name, "path", true, schema(generator)));
    }
    if let Some(query) = h.query {
        let schema = query(generator);
        let schema = resolve(&schema, generator);
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                let needed = required.contains(&name.as_str());
                parameters.push(parameter(name, "query", needed, property.clone()));
            }
        }
    }
    let mut op = Map::new();
    if let Some(body) = h.body {
        op.insert(
            "requestBody".to_owned(),
            json!({
                "required": true,
                "content": {"application/json": {"schema": body(generator)}},
            }),
        );
    }
    op.insert("operationId".to_owned(), json!(h.name));
    op.insert("tags".to_owned(), json!([route.krate]));
    op.insert("parameters".to_owned(), Value::Array(parameters));
    op.insert(
        "responses".to_owned(),
        success(route.status, (h.response)(generator)),
    );
    op
}

/// The schema `schema` points to, when it is a `$ref` into the generator's definitions.
fn resolve(schema: &Value, generator: &SchemaGenerator) -> Value {
    let Some(name) = schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    else {
        return schema.clone();
    };
    generator
        .definitions()
        .get(name)
        .cloned()
        .unwrap_or_else(|| schema.clone())
}

fn success(status: u16, schema: Value) -> Value {
    json!({
        status.to_string(): {
            "description": "Success.",
            "content": {"application/json": {"schema": schema}},
        }
    })
}

fn parameter(name: &str, place: &str, required: bool, schema: Value) -> Value {
    json!({"name": name, "in": place, "required": required, "schema": schema})
}

/// `GET /openapi.json` itself.
fn self_operation() -> Value {
    json!({
        "operationId": "openapi",
        "tags": ["truss"],
        "description": "This document.",
        "security": [],
        "responses": {"200": {
            "description": "The OpenAPI 3.1 document of this service.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }},
    })
}

fn takes_body(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH")
}

/// A route template as an OpenAPI path: a catch-all `{*rest}` is the parameter `{rest}`
/// (OpenAPI has no wildcard; validators refuse a path whose parameters it does not name).
fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

/// The parameter names of a route template: `{id}` and `{*rest}`.
fn template_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|s| s.trim_start_matches('*').to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_all_templates_become_plain_parameters() {
        assert_eq!(openapi_path("/files/{*rest}"), "/files/{rest}");
        assert_eq!(openapi_path("/users/{id}"), "/users/{id}");
        assert_eq!(template_params("/files/{*rest}"), ["rest"]);
    }
}
