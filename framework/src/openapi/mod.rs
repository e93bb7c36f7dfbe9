//! An OpenAPI 3.1 document of the app's HTTP routes, generated from what the code declares.
//!
//! ```sh
//! curl -s 127.0.0.1:8080/openapi.json | jq '.paths | keys'
//! user --openapi openapi.json        # write it and exit, without starting (see below)
//! ```
//!
//! Every route declared with `#[truss::route]` or `#[http(...)]` in a `#[truss::grpc]`
//! block is in it, with its template path, method, path and query parameters, request body,
//! success response and the error responses of the error model:
//!
//! * **Proto-backed routes** (`#[http]`) take their schemas from the service's descriptors,
//!   registered with [`AppBuilder::file_descriptor_set`](crate::AppBuilder::file_descriptor_set)
//!   (the same ones gRPC reflection serves), and describe the JSON those routes read and
//!   write in the [`JsonMapping`] the app names (by default the proto3 JSON mapping: proto
//!   field names, 64-bit integers as strings, enums as their names). Path parameters fill the fields they name; the other fields come
//!   from the query (`GET`, `DELETE`, ...) or the JSON body (`POST`, `PUT`, `PATCH`).
//!   Comments in the `.proto` file become descriptions.
//! * **Plain routes** (`#[truss::route]`) take them from the handler's Rust types with
//!   [schemars](https://docs.rs/schemars): `#[path]`, `#[query]` and `#[body]` parameters
//!   and the `Ok` type, each of which must implement `schemars::JsonSchema`
//!   (`#[derive(JsonSchema)]`, re-exported as `truss::JsonSchema`). schemars rather than
//!   utoipa: one derive that reads the serde attributes the types already have, JSON Schema
//!   2020-12 as OpenAPI 3.1 uses it, and no second set of route macros next to truss's.
//! * **Nothing is left out silently.** A type without `JsonSchema` does not compile; a route
//!   whose service has no registered descriptors, whose path names a field the message does
//!   not have, or whose query would need a nested message makes the app fail to start,
//!   naming the route.
//! * **Errors.** Each operation lists the statuses the framework's own layers return (400
//!   `INVALID_TIMEOUT`/`INVALID_ARGUMENT`, 413, 429 `RATE_LIMITED`, 503
//!   `OVERLOADED`/`CIRCUIT_OPEN`, 504 `DEADLINE_EXCEEDED`, 500 and, with `[auth]`, 401 and
//!   403 on protected routes) and `default` for the handler's own, all with the error body
//!   (`code`, `reason`, `message`, `metadata`). With `[auth]` on, protected operations
//!   require a bearer token (`components.securitySchemes.bearer`).
//!
//! Served at `GET /openapi.json` on the HTTP listener (public when `[auth]` is on) unless
//! `http.openapi = false`. [`AppBuilder::run`](crate::AppBuilder::run) given `--openapi
//! <file>` on the command line writes the document there and exits without binding
//! anything (`cargo truss openapi` runs that).
//!
//! **Swagger UI** at `GET /docs` with feature `openapi-ui` and `http.openapi_ui = true`: its
//! files come from the `utoipa-swagger-ui-vendored` crate (Swagger UI's release archive
//! inside a crate), so nothing is downloaded at build or run time.
//!
//! A route is listed once a router of the process mounts it (`truss::routes![...]`, the
//! generated `http_routes()`); an app in a binary that mounts several services' routes
//! (tests, mostly) keeps its own with
//! [`AppBuilder::openapi_crate`](crate::AppBuilder::openapi_crate).

mod document;
mod errors;
mod proto;
#[cfg(feature = "openapi-ui")]
pub(crate) mod ui;

pub use document::{Api, OpenApiError, document};

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use schemars::SchemaGenerator;
use serde_json::Value;

/// How the messages of proto-backed routes are written as JSON, so their schemas say so.
/// Set it with [`AppBuilder::json_mapping`](crate::AppBuilder::json_mapping) to match how
/// `build.rs` generates their serde code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JsonMapping {
    /// The proto3 JSON mapping, fields named as in the `.proto` file: what
    /// `pbjson_build::Builder::new().preserve_proto_field_names().emit_fields()` generates,
    /// as the examples and `cargo truss new --grpc` do. 64-bit integers are strings (numbers
    /// are accepted on input), enums are names (numbers accepted), bytes are base64,
    /// `google.protobuf` types have their canonical forms (RFC 3339 timestamps, `"1.5s"`
    /// durations, wrappers as their value), unknown fields are rejected, and either the
    /// proto name or the `json_name` of a field is accepted on input. The default.
    #[default]
    Proto3,
    /// The proto3 JSON mapping with lowerCamelCase names (each field's `json_name`):
    /// pbjson-build without `preserve_proto_field_names`.
    Proto3LowerCamel,
    /// `#[derive(serde::Serialize, serde::Deserialize)]` on prost's structs: Rust field
    /// names, 64-bit integers and enums as numbers, unknown fields ignored.
    SerdeDerive,
}

/// One route as a macro declared it. Submitted by the macros; not for hand use.
#[doc(hidden)]
#[derive(Debug)]
pub struct RouteDoc {
    /// The crate that declared it (`CARGO_CRATE_NAME`).
    pub krate: &'static str,
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The route template, `/v1/users/{id}`.
    pub path: &'static str,
    /// The success status.
    pub status: u16,
    /// Where its schemas come from.
    pub source: Source,
}

/// Where a route's schemas come from.
#[doc(hidden)]
#[derive(Debug)]
pub enum Source {
    /// An rpc served over HTTP: its service's full name and the method's proto name.
    Rpc {
        /// `user.v1.Users`.
        service: &'static str,
        /// `GetUser`.
        method: &'static str,
    },
    /// A `#[truss::route]` handler.
    Handler(Handler),
}

/// A schema function: `T`'s schema, its named parts added to the generator.
#[doc(hidden)]
pub type SchemaFn = fn(&mut SchemaGenerator) -> Value;

/// The typed parts of a `#[truss::route]` handler.
#[doc(hidden)]
#[derive(Debug)]
pub struct Handler {
    /// The function's name, the operation id.
    pub name: &'static str,
    /// `#[path]` parameters: name and type.
    pub path: &'static [(&'static str, SchemaFn)],
    /// The `#[query]` type: each property a query parameter.
    pub query: Option<SchemaFn>,
    /// The `#[body]` type.
    pub body: Option<SchemaFn>,
    /// The `Ok` type of the handler's result, written as JSON.
    pub response: SchemaFn,
}

inventory::collect!(RouteDoc);

/// The routes some router of this process serves: `truss::routes![...]` and the generated
/// `http_routes()` mark theirs, so the document leaves out routes that are linked in but
/// never mounted (another service's, in a test binary).
fn mounted_routes() -> &'static Mutex<BTreeSet<(&'static str, &'static str)>> {
    static MOUNTED: OnceLock<Mutex<BTreeSet<(&'static str, &'static str)>>> = OnceLock::new();
    MOUNTED.get_or_init(Default::default)
}

/// Marks `method path` as served by a router of this process. Used by the macros.
#[doc(hidden)]
pub fn mount(method: &'static str, path: &'static str) {
    mounted_routes()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((method, path));
}

/// Whether a router of this process serves `method path`.
pub(crate) fn mounted(method: &str, path: &str) -> bool {
    mounted_routes()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|(m, p)| *m == method && *p == path)
}

/// `T`'s schema in `generator` (a `$ref` for named types). Used by the macros.
#[doc(hidden)]
pub fn schema<T: schemars::JsonSchema + ?Sized>(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}
