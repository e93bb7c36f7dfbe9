//! The smallest truss service: an HTTP route, a gRPC Greeter and a route that sleeps.
//!
//! ```text
//! GET /hello?name=Ada      -> "Hello, Ada!"
//! GET /sleep?ms=250        -> waits 250 ms, then "slept 250ms"
//! gRPC hello.v1.Greeter/SayHello
//! ```

use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use truss::config::{Live, Section, ValidationError};

/// Generated gRPC types for `proto/hello.proto`.
pub mod pb {
    tonic::include_proto!("hello.v1");

    /// The encoded `FileDescriptorSet` of `proto/hello.proto` (written by `build.rs`), served
    /// through gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hello_descriptor.bin"));
}

/// The longest `/sleep` accepts, so a request cannot pin a connection for ever.
pub const MAX_SLEEP_MS: u64 = 60_000;

/// The `[app]` section of hello's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HelloConfig {
    /// The word greetings start with. Default `Hello`.
    pub greeting: String,
}

impl Default for HelloConfig {
    fn default() -> Self {
        Self {
            greeting: "Hello".to_owned(),
        }
    }
}

/// A fixed config, for tests and code that does not reload: `routes(&config)`.
impl From<&HelloConfig> for Live<HelloConfig> {
    fn from(config: &HelloConfig) -> Self {
        Live::new(config.clone())
    }
}

impl Section for HelloConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.greeting.trim().is_empty() {
            return Err(ValidationError::new("greeting", "must not be empty"));
        }
        Ok(())
    }
}

fn greet(greeting: &str, name: &str) -> String {
    let name = if name.is_empty() { "world" } else { name };
    format!("{greeting}, {name}!")
}

#[derive(Deserialize)]
struct NameQuery {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct SleepQuery {
    ms: u64,
}

/// The HTTP routes: `/hello` and `/sleep`. The greeting is read per request, so a reload
/// of `app.greeting` shows at once (pass [`Config::live_app`](truss::Config::live_app)).
pub fn routes(config: impl Into<Live<HelloConfig>>) -> Router {
    let config = config.into();
    Router::new()
        .route(
            "/hello",
            get(move |Query(q): Query<NameQuery>| async move {
                greet(&config.get().greeting, &q.name)
            }),
        )
        .route("/sleep", get(sleep))
}

async fn sleep(Query(q): Query<SleepQuery>) -> Result<String, (StatusCode, String)> {
    if q.ms > MAX_SLEEP_MS {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("ms must be at most {MAX_SLEEP_MS}"),
        ));
    }
    tokio::time::sleep(Duration::from_millis(q.ms)).await;
    Ok(format!("slept {}ms", q.ms))
}

/// The gRPC Greeter.
#[derive(Debug, Clone)]
pub struct Greeter {
    config: Live<HelloConfig>,
}

impl Greeter {
    /// A greeter using the configured greeting, read per call.
    pub fn new(config: impl Into<Live<HelloConfig>>) -> Self {
        Self {
            config: config.into(),
        }
    }

    /// The tonic service to hand to [`truss::AppBuilder::grpc`].
    pub fn into_service(self) -> pb::greeter_server::GreeterServer<Self> {
        pb::greeter_server::GreeterServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::greeter_server::Greeter for Greeter {
    async fn say_hello(
        &self,
        request: tonic::Request<pb::HelloRequest>,
    ) -> Result<tonic::Response<pb::HelloReply>, tonic::Status> {
        let name = request.into_inner().name;
        if name.len() > 256 {
            return Err(tonic::Status::invalid_argument(
                "name must be at most 256 bytes",
            ));
        }
        Ok(tonic::Response::new(pb::HelloReply {
            message: greet(&self.config.get().greeting, &name),
        }))
    }
}
