//! Procedural macros for [truss](https://docs.rs/truss).
//!
//! Re-exported by `truss`: depend on `truss` alone and write `#[truss::route]`,
//! `#[truss::grpc]` and `#[derive(truss::Error)]`.

#![deny(clippy::too_many_lines)]

mod error;
mod grpc;
mod route;
mod shared;

use proc_macro::TokenStream;
use syn::{DeriveInput, ItemFn, ItemImpl, parse_macro_input};

/// Declares an error enum: an HTTP-style code and a machine-readable reason per variant.
///
/// ```
/// #[derive(Debug, truss::Error)]
/// pub enum UserError {
///     #[error(code = 404, reason = "USER_NOT_FOUND", message = "user {0} not found")]
///     NotFound(u64),
///     #[error(code = 409, reason = "EMAIL_TAKEN", message = "{email} is already registered")]
///     EmailTaken { email: String },
///     #[error(code = 400, reason = "BAD_NAME")] // the message defaults to the reason
///     BadName,
///     /// An error from a downstream call, passed on as it came.
///     #[error(transparent)]
///     Upstream(truss::Error),
/// }
///
/// let err = truss::Error::from(UserError::NotFound(7));
/// assert_eq!((err.code(), err.reason(), err.message()), (404, "USER_NOT_FOUND", "user 7 not found"));
/// assert_eq!(tonic::Status::from(UserError::BadName).code(), tonic::Code::InvalidArgument);
/// ```
///
/// It replaces, per enum:
///
/// ```text
/// impl Display for UserError { /* one arm per variant, formatting the message */ }
/// impl std::error::Error for UserError {}
/// impl From<UserError> for truss::Error { /* code, reason and message per variant */ }
/// impl From<UserError> for tonic::Status { /* through truss::Error: code table + ErrorInfo */ }
/// impl IntoResponse for UserError { /* through truss::Error: status + JSON body */ }
/// impl From<truss::Error> for UserError { /* for each #[error(transparent)] variant */ }
/// ```
///
/// Options: `code` (400–599), `reason` (SCREAMING_SNAKE_CASE), `message` (a format string
/// over the variant's fields: `{name}` or `{0}`), or `transparent` on a one-field variant
/// whose value converts into `truss::Error`.
#[proc_macro_derive(Error, attributes(error))]
pub fn derive_error(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    error::expand(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Turns an async fn into an HTTP handler: decoding, validation, the call, the answer.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use truss::validate::{FieldErrors, Validate};
///
/// // JsonSchema: `/openapi.json` describes the body and the reply (see truss::openapi).
/// #[derive(Deserialize, truss::JsonSchema)]
/// struct Rename { name: String }
///
/// impl Validate for Rename {
///     fn validate(&self) -> Result<(), FieldErrors> {
///         let mut errors = FieldErrors::new();
///         if self.name.is_empty() { errors.add("name", "must not be empty"); }
///         errors.into_result()
///     }
/// }
///
/// #[derive(Serialize, truss::JsonSchema)]
/// struct User { id: u64, name: String }
///
/// #[truss::route(put, "/users/{id}", timeout = "2s", rate_limit = 50, breaker = false)]
/// async fn rename(#[path] id: u64, #[body] req: Rename) -> Result<User, truss::Error> {
///     if id == 0 {
///         return Err(truss::Error::not_found("USER_NOT_FOUND", "no user 0"));
///     }
///     Ok(User { id, name: req.name })
/// }
///
/// let router: axum::Router = truss::routes![rename];
/// ```
///
/// The function stays callable as written (for unit tests). The macro adds what a
/// hand-written axum handler holds:
///
/// ```text
/// async fn rename_handler(
///     path: Result<Path<u64>, PathRejection>,
///     body: Result<Json<Rename>, JsonRejection>,
/// ) -> Response {
///     let id = match path { Ok(Path(v)) => v, Err(e) => return /* 400 JSON error */ };
///     let req = match body { Ok(Json(v)) => v, Err(e) => return /* 400/415/422 JSON error */ };
///     if let Err(fields) = req.validate() { return truss::Error::invalid(fields).into_response() }
///     match rename(id, req).await {
///         Ok(user) => (StatusCode::OK, Json(user)).into_response(),
///         Err(e) => truss::Error::from(e).into_response(),
///     }
/// }
/// // and, in the router: .route("/users/{id}", put(rename_handler)
/// //     .layer(timeout 2s).layer(rate limit 50/s).layer(no breaker))
/// ```
///
/// Parameters: `#[path] name: T` (one per `{name}` in the path; checked at compile time),
/// `#[query] q: T` and `#[body] b: T` (JSON; both validated when `T` implements
/// [`Validate`](../truss/validate/trait.Validate.html)), `#[state] s: T` (axum state), and any
/// other axum extractor unmarked. The function returns `Result<T, E>` with `T: Serialize`
/// and `E: Into<truss::Error>` (a `#[derive(truss::Error)]` enum, or `truss::Error`).
///
/// Options after method and path: `timeout = "2s"` (the request's deadline is at most this;
/// a caller's shorter `grpc-timeout` still wins), `rate_limit = 100` (requests per second on
/// this route, 429 beyond) with `burst = 20`, `breaker = false` (never counted by, nor
/// rejected by, the server's circuit breaker), `status = 201` (the success code), and who
/// may call the route:
///
/// * `auth = "public"`: anyone, with or without a token (a token that is sent is still
///   verified);
/// * `auth = "required"`: a valid token;
/// * `scope = "users:write"`: a valid token holding that scope (implies `auth = "required"`;
///   `auth = "public"` with a `scope` does not compile).
///
/// ```
/// #[truss::route(post, "/v1/users", scope = "users:write")]
/// async fn create_user() -> Result<&'static str, truss::Error> {
///     Ok("created")
/// }
///
/// #[truss::route(get, "/health/details", auth = "public")]
/// async fn details() -> Result<&'static str, truss::Error> {
///     Ok("fine")
/// }
///
/// use truss::auth::{RoutePolicy, declared};
/// assert_eq!(declared("POST /v1/users"), Some(RoutePolicy::scope("users:write")));
/// assert_eq!(declared("GET /health/details"), Some(RoutePolicy::Public));
/// ```
///
/// The policy is declared under the key `"<METHOD> <template>"` (`"POST /v1/users"`, the path
/// as written). A route's policy comes from, first to last: `auth.routes."<route>"` in config,
/// then the attribute, then `auth.default`; so config can open or close a route without a
/// rebuild.
#[proc_macro_attribute]
pub fn route(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(attr as route::Args);
    let func = parse_macro_input!(item as ItemFn);
    route::expand(args, func)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements a tonic service trait from plain async methods.
///
/// ```
/// # mod proto {
/// #     #[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
/// #     #[serde(default)]
/// #     pub struct HelloRequest { #[prost(string, tag = "1")] pub name: String }
/// #     #[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
/// #     pub struct HelloReply { #[prost(string, tag = "1")] pub message: String }
/// #     pub mod greeter_server {
/// #         pub const SERVICE_NAME: &str = "hello.Greeter";
/// #         #[tonic::async_trait]
/// #         pub trait Greeter: Send + Sync + 'static {
/// #             async fn say_hello(&self, request: tonic::Request<super::HelloRequest>)
/// #                 -> Result<tonic::Response<super::HelloReply>, tonic::Status>;
/// #         }
/// #     }
/// # }
/// use proto::{HelloReply, HelloRequest};
///
/// struct Greeter;
///
/// #[truss::grpc(proto::greeter_server::Greeter)]
/// impl Greeter {
///     #[http(post, "/v1/hello")] // the same method over HTTP/JSON too (optional)
///     async fn say_hello(&self, req: HelloRequest, ctx: truss::grpc::Context) -> Result<HelloReply, truss::Error> {
///         if req.name.is_empty() {
///             return Err(truss::Error::bad_request("NAME_REQUIRED", "say who"));
///         }
///         let _budget = ctx.deadline().map(|d| d.remaining());
///         Ok(HelloReply { message: format!("hello {}", req.name) })
///     }
/// }
///
/// let http: axum::Router = std::sync::Arc::new(Greeter).http_routes();
/// ```
///
/// It replaces the tonic boilerplate per method:
///
/// ```text
/// #[tonic::async_trait]
/// impl proto::greeter_server::Greeter for Greeter {
///     async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
///         let (ctx, req) = truss::grpc::Context::from_request(request);
///         if let Err(fields) = req.validate() { return Err(truss::Error::invalid(fields).into()) }
///         match Greeter::say_hello(self, req, ctx).await {
///             Ok(reply) => Ok(Response::new(reply)),
///             Err(e) => Err(truss::Error::from(e).into()), // code table + ErrorInfo
///         }
///     }
/// }
/// ```
///
/// Each method is `async fn name(&self, req: Message) -> Result<Reply, E>`, optionally with
/// `ctx: truss::grpc::Context` (metadata, deadline, trace) as a second parameter; `E:
/// Into<truss::Error>`. Messages implementing `truss::validate::Validate` are checked first
/// (`INVALID_ARGUMENT` listing the fields). `#[http(method, "/path/{field}")]` on a method
/// also serves it as HTTP/JSON from `Arc<Self>::http_routes()`: path parameters and (for
/// GET/DELETE) query parameters fill message fields of the same name, the JSON body the
/// rest; the message types need serde derives with `#[serde(default)]`.
///
/// Streaming rpcs are written in tonic's own form inside the same block, marked `#[raw]`,
/// with their stream type; both are moved into the trait impl unchanged:
///
/// ```text
/// type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;
/// #[raw]
/// async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> { ... }
/// ```
///
/// Who may call a method, as for `#[truss::route]`: `auth = "public"`, `auth = "required"` or
/// `scope = "users:write"` after the path of `#[http(...)]`, or, with or without `#[http]`
/// (`#[raw]` methods too), a method attribute `#[auth(public)]`, `#[auth(required)]` or
/// `#[auth(scope = "users:write")]` (one of the two forms per method). The policy covers
/// both the gRPC method, keyed `"/<service>/<Method>"` (`"/user.v1.Users/CreateUser"`: the
/// service's full name is read from `SERVICE_NAME` in the trait's module, so name the trait
/// with its module path, and the method is the UpperCamelCase of the Rust method), and the
/// HTTP route, keyed `"<METHOD> <template>"`:
///
/// ```text
/// #[truss::grpc(pb::users_server::Users)]
/// impl UsersApi {
///     #[http(post, "/v1/users", scope = "users:write")] // "/user.v1.Users/CreateUser" and "POST /v1/users"
///     async fn create_user(&self, req: CreateUserRequest) -> Result<User, UserError> { ... }
///
///     #[auth(public)] // "/user.v1.Users/Ping" only
///     async fn ping(&self, req: PingRequest) -> Result<Pong, UserError> { ... }
/// }
/// ```
///
/// Config's `auth.routes."<route>"` overrides the attribute, which overrides `auth.default`.
#[proc_macro_attribute]
pub fn grpc(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(attr as grpc::Args);
    let block = parse_macro_input!(item as ItemImpl);
    grpc::expand(args, block)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
