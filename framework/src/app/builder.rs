//! [`AppBuilder`]: what the team hands the framework.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::Route;
use tonic::server::NamedService;
use tower_layer::Layer;
use tower_service::Service;

use super::Hook;
use crate::config::{Config, ConfigLoader, NoAppConfig};
use crate::observe::health::Health;
use crate::registry::Registrar;
use crate::resilience::CpuSource;
use crate::shutdown::ShutdownHandle;

/// A team layer, applied to a listener's router when the app starts.
pub(super) type RouterMap = Box<dyn FnOnce(Router) -> Router + Send>;

/// Configures an [`App`](super::App). Created by [`App::builder`](super::App::builder).
pub struct AppBuilder {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) config: Option<Config<NoAppConfig>>,
    pub(super) loader: ConfigLoader,
    pub(super) http: Option<Router>,
    pub(super) grpc: Option<tonic::service::Routes>,
    pub(super) grpc_names: Vec<&'static str>,
    pub(super) descriptor_sets: Vec<&'static [u8]>,
    pub(super) admin: Router,
    pub(super) http_layers: Vec<RouterMap>,
    pub(super) grpc_layers: Vec<RouterMap>,
    pub(super) before_stop: Vec<Hook>,
    pub(super) after_stop: Vec<Hook>,
    pub(super) registrar: Option<Arc<dyn Registrar>>,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) health: Health,
    pub(super) handle: ShutdownHandle,
    pub(super) cpu: Option<Arc<dyn CpuSource>>,
    /// Changes the installed subscriber's `[log]` on reload (only with `run`).
    pub(super) log: Option<crate::observe::log::LogControl>,
    /// Whether SIGHUP reloads the config (only with `run`).
    pub(super) sighup: bool,
    /// The crate whose declared routes the OpenAPI document lists (`None`: all).
    pub(super) openapi_crate: Option<&'static str>,
    /// How proto-backed routes write JSON, for the OpenAPI document.
    pub(super) json_mapping: crate::openapi::JsonMapping,
    /// The message consumers, one listener each.
    pub(super) consumers: Vec<crate::queue::Consumer>,
    /// Consumers whose backend and settings come from `[consumers]` at start.
    pub(super) configured_consumers: Vec<super::consumers::Configured>,
}

impl AppBuilder {
    pub(super) fn new(name: String) -> Self {
        AppBuilder {
            name,
            version: "0.0.0".to_owned(),
            config: None,
            loader: ConfigLoader::new(),
            http: None,
            grpc: None,
            grpc_names: Vec::new(),
            descriptor_sets: Vec::new(),
            admin: Router::new(),
            http_layers: Vec::new(),
            grpc_layers: Vec::new(),
            before_stop: Vec::new(),
            after_stop: Vec::new(),
            registrar: None,
            metadata: Default::default(),
            health: Health::new(),
            handle: ShutdownHandle::new(),
            cpu: None,
            log: None,
            sighup: false,
            openapi_crate: None,
            json_mapping: Default::default(),
            consumers: Vec::new(),
            configured_consumers: Vec::new(),
        }
    }

    /// Lists in the OpenAPI document only the routes declared in `krate` (pass
    /// `env!("CARGO_CRATE_NAME")`): for a binary that links several services' routes, as
    /// tests do. By default every route declared with the macros is listed.
    pub fn openapi_crate(mut self, krate: &'static str) -> Self {
        self.openapi_crate = Some(krate);
        self
    }

    /// How the `#[http]` routes' messages are written as JSON (what `build.rs` generates),
    /// so the OpenAPI document describes exactly that. Default
    /// [`JsonMapping::Proto3`](crate::openapi::JsonMapping::Proto3).
    pub fn json_mapping(mut self, mapping: crate::openapi::JsonMapping) -> Self {
        self.json_mapping = mapping;
        self
    }

    /// Consumes `subscription` from `backend` with `handler`, an async function of a
    /// [`Message<T>`](crate::queue::Message) (a JSON body) returning `Result<(), E>`; the
    /// consumer is one more listener of the app, stopped and drained in the shutdown
    /// phases. See [`queue`](crate::queue) for what each message goes through.
    pub fn consume<T, H: crate::queue::Handler<T>>(
        mut self,
        subscription: impl Into<String>,
        backend: Arc<dyn crate::queue::Backend>,
        config: crate::queue::ConsumerConfig,
        handler: H,
    ) -> Self {
        self.consumers.push(crate::queue::Consumer {
            subscription: subscription.into().into(),
            backend,
            handler: handler.erase(),
            config,
        });
        self
    }

    /// Consumes `subscription` as `[consumers."<subscription>"]` says (backend, stream,
    /// group, limits; defaults when absent: the process-wide
    /// [`MemoryBackend::shared`](crate::queue::MemoryBackend::shared) queue of that name).
    ///
    /// ```no_run
    /// # #[derive(serde::Deserialize)] struct OrderCreated { order_id: u64 }
    /// async fn notify(msg: truss::queue::Message<OrderCreated>) -> Result<(), truss::Error> {
    ///     Ok(())
    /// }
    /// let app = truss::App::builder("notify").consumer("order.created", notify);
    /// # let _ = app;
    /// ```
    pub fn consumer<T, H: crate::queue::Handler<T>>(
        mut self,
        subscription: impl Into<String>,
        handler: H,
    ) -> Self {
        self.configured_consumers
            .push(super::consumers::Configured {
                subscription: subscription.into(),
                handler: handler.erase(),
                relay: false,
            });
        self
    }

    /// Relays `subscription` to `producer`: each message, consumed as
    /// `[consumers."<subscription>"]` says (typically `backend = "sql"`: this service's
    /// transactional outbox), is published unchanged and acknowledged only once the publish
    /// succeeded. A crash between the two publishes it again, with the same `message-id`,
    /// which consumers' [`first_delivery`](crate::queue::first_delivery) absorbs; a broker
    /// that is down leaves the messages in the outbox, retried with backoff (up to
    /// `backoff_max`) for as long as it stays down: a relay never dead-letters a failure
    /// that may pass, whatever `max_attempts` says. Every error of a publish is one (503 or
    /// 504): a message the broker keeps refusing (too large, say) stays in the outbox too,
    /// retried, and shows in the subscription's lag.
    ///
    /// ```no_run
    /// # async fn demo(config: truss::Config) -> Result<(), truss::AppError> {
    /// // [consumers."order.created"] backend = "sql"     (the outbox)
    /// // [producers."order.created"] backend = "redis"   (the broker)
    /// let to_broker = truss::queue::Producer::from_config(&config, "order.created").await?;
    /// let app = truss::App::builder("order")
    ///     .config(&config)
    ///     .relay("order.created", to_broker);
    /// # Ok(()) }
    /// ```
    pub fn relay(
        mut self,
        subscription: impl Into<String>,
        producer: crate::queue::Producer,
    ) -> Self {
        self.configured_consumers
            .push(super::consumers::Configured {
                subscription: subscription.into(),
                handler: producer.relay_handler(),
                relay: true,
            });
        self
    }

    /// The service's name, as given to [`App::builder`](super::App::builder).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AppBuilder {
    /// The service version, announced to the registry. Default `0.0.0`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Uses the framework sections of an already loaded config. Without it, the app loads
    /// config itself with [`ConfigLoader::new`] (and an empty `[app]` section).
    pub fn config<T>(mut self, config: &Config<T>) -> Self {
        self.config = Some(config.framework());
        self
    }

    /// The loader used when no [`config`](Self::config) is given.
    pub fn config_loader(mut self, loader: ConfigLoader) -> Self {
        self.loader = loader;
        self
    }

    /// Serves these routes on the HTTP listener. Called again, the routers are merged.
    pub fn http(mut self, router: Router) -> Self {
        self.http = Some(match self.http.take() {
            Some(existing) => existing.merge(router),
            None => router,
        });
        self
    }

    /// Serves a tonic service on the gRPC listener. Call once per service.
    pub fn grpc<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: IntoResponse,
        S::Future: Send + 'static,
    {
        let routes = self.grpc.take().unwrap_or_default();
        self.grpc = Some(routes.add_service(service));
        self.grpc_names.push(S::NAME);
        self
    }

    /// Registers an encoded `google.protobuf.FileDescriptorSet` (the bytes `protox` or
    /// `protoc --descriptor_set_out --include_imports` write) with gRPC server reflection.
    /// Call once per set; sets may overlap (a file is kept once, by name).
    ///
    /// When the app has a gRPC listener and `grpc.reflection` is on (the default), it serves
    /// `grpc.reflection.v1` and `grpc.reflection.v1alpha`, so clients such as `grpcurl` can
    /// list the services and describe their methods and messages without the `.proto` files.
    /// The standard health and reflection services are always described; every other
    /// service is described only through a set registered here. Every service of a
    /// registered set is listed, served or not: register the sets of the services you serve.
    ///
    /// The sets are decoded when an app with gRPC services starts, reflection on or not: bytes
    /// that are not a valid `FileDescriptorSet` make [`start`](Self::start) and
    /// [`run`](Self::run) fail with an [`AppError::Config`](super::AppError::Config) naming
    /// `file_descriptor_set[i]` (counted from 0, in call order).
    ///
    /// From `build.rs`, next to the generated code:
    ///
    /// ```ignore
    /// // build.rs
    /// use protox::prost::Message as _;
    ///
    /// let fds = protox::compile(["greeter.proto"], ["proto"])?;
    /// let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    /// std::fs::write(out.join("greeter_descriptor.bin"), fds.encode_to_vec())?;
    /// tonic_prost_build::configure().compile_fds(fds)?;
    ///
    /// // src/lib.rs
    /// pub mod pb {
    ///     tonic::include_proto!("greeter.v1");
    ///     /// The encoded `FileDescriptorSet` of `proto/greeter.proto`, for reflection.
    ///     pub const FILE_DESCRIPTOR_SET: &[u8] =
    ///         include_bytes!(concat!(env!("OUT_DIR"), "/greeter_descriptor.bin"));
    /// }
    /// ```
    ///
    /// then:
    ///
    /// ```no_run
    /// # mod pb { pub const FILE_DESCRIPTOR_SET: &[u8] = &[]; }
    /// # async fn demo() -> Result<(), truss::AppError> {
    /// truss::App::builder("greeter")
    ///     .file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
    ///     // .grpc(pb::greeter_server::GreeterServer::new(MyGreeter))
    ///     .run()
    ///     .await
    /// # }
    /// ```
    pub fn file_descriptor_set(mut self, encoded: &'static [u8]) -> Self {
        self.descriptor_sets.push(encoded);
        self
    }

    /// Wraps every HTTP route in `layer` (after routing, so the route template is known).
    /// The first layer added is the innermost.
    pub fn http_layer(mut self, layer: impl RouteLayer) -> Self {
        self.http_layers.push(Box::new(move |r| layer.apply(r)));
        self
    }

    /// Wraps every gRPC service in `layer`. The first layer added is the innermost.
    pub fn grpc_layer(mut self, layer: impl RouteLayer) -> Self {
        self.grpc_layers.push(Box::new(move |r| layer.apply(r)));
        self
    }

    /// Adds routes to the admin listener (next to `/healthz` and `/readyz`). The admin
    /// listener bypasses every layer added with `http_layer` and `grpc_layer`.
    pub fn admin(mut self, router: Router) -> Self {
        self.admin = self.admin.merge(router);
        self
    }

    /// Runs `hook` at the start of shutdown, after readiness went false and the registrar
    /// deregistered, before the drain delay. Bounded by `shutdown.hook_timeout`.
    pub fn before_stop<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.before_stop.push(Box::new(move || Box::pin(hook())));
        self
    }

    /// Runs `hook` after every listener has stopped, before `run` returns. Bounded by
    /// `shutdown.hook_timeout`.
    pub fn after_stop<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.after_stop.push(Box::new(move || Box::pin(hook())));
        self
    }

    /// Registers the instance once bound; deregisters it first thing on shutdown.
    pub fn registrar(mut self, registrar: impl Registrar) -> Self {
        self.registrar = Some(Arc::new(registrar));
        self
    }

    /// Adds a metadata entry announced with the instance (zone, weight, ...).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The app's readiness state, to add checks of your own.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// A handle that shuts the app down, usable before it starts.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Uses `cpu` as the load shedder's CPU figure instead of sampling the system (for tests
    /// and for platforms where truss cannot read CPU usage).
    pub fn cpu_source(mut self, cpu: Arc<dyn CpuSource>) -> Self {
        self.cpu = Some(cpu);
        self
    }
}

/// A tower layer that axum can apply to every route, as [`AppBuilder::http_layer`] and
/// [`AppBuilder::grpc_layer`] take: any `Layer<Route>` whose service axum can serve.
pub trait RouteLayer: Send + 'static {
    /// Applies the layer to every route of `router`.
    fn apply(self, router: Router) -> Router;
}

impl<L> RouteLayer for L
where
    L: Layer<Route> + Clone + Send + Sync + 'static,
    L::Service: Service<Request> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Response: IntoResponse + 'static,
    <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    fn apply(self, router: Router) -> Router {
        router.layer(self)
    }
}
