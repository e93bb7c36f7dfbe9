//! The service builder and the run loop.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::Route;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{Config, ConfigError, ConfigLoader, NoAppConfig};
use crate::observe::health::Health;
use crate::observe::metrics::MetricsLayer;
use crate::observe::trace::TraceLayer;
use crate::registry::{BoxFuture, Instance, Registrar};
use crate::resilience::breaker::{BreakerLayer, Breakers, DefaultClassifier};
use crate::resilience::deadline::DeadlineLayer;
use crate::resilience::{CpuSource, admission_layer, shed::SystemCpu};
use crate::shutdown::{Level, ShutdownHandle, listen_for_signals};
use crate::transport::admin;
use crate::transport::server::{Protocol, Server};

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;
type RouterMap = Box<dyn FnOnce(Router) -> Router + Send>;

/// A truss service: the team's routes and services plus everything the framework wires
/// around them. Build one with [`App::builder`].
///
/// A complete service (see `examples/hello` for the gRPC half):
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use serde::Deserialize;
/// use truss::config::{Config, Validate};
///
/// #[derive(Debug, Default, Deserialize)]
/// #[serde(deny_unknown_fields, default)]
/// struct Hello {
///     greeting: String,
/// }
/// impl Validate for Hello {}
///
/// #[tokio::main]
/// async fn main() -> Result<(), truss::AppError> {
///     // defaults < --config file < TRUSS_* environment variables
///     let config = Config::<Hello>::load()?;
///     let greeting = config.app.greeting.clone();
///     let routes = Router::new().route("/", get(move || async move { greeting }));
///
///     truss::App::builder("hello")
///         .config(&config)
///         .http(routes)
///         // .grpc(GreeterServer::new(MyGreeter))
///         .run() // until SIGTERM / SIGINT, then a graceful, bounded shutdown
///         .await
/// }
/// ```
pub struct App {
    builder: AppBuilder,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("name", &self.builder.name)
            .finish_non_exhaustive()
    }
}

/// Configures an [`App`]. Created by [`App::builder`].
pub struct AppBuilder {
    name: String,
    version: String,
    config: Option<Config<NoAppConfig>>,
    loader: ConfigLoader,
    http: Option<Router>,
    grpc: Option<tonic::service::Routes>,
    grpc_names: Vec<&'static str>,
    admin: Router,
    http_layers: Vec<RouterMap>,
    grpc_layers: Vec<RouterMap>,
    before_stop: Vec<Hook>,
    after_stop: Vec<Hook>,
    registrar: Option<Arc<dyn Registrar>>,
    metadata: std::collections::BTreeMap<String, String>,
    health: Health,
    handle: ShutdownHandle,
    cpu: Option<Arc<dyn CpuSource>>,
}

impl App {
    /// Starts building the service called `name` (used in logs, metrics and the registry).
    pub fn builder(name: impl Into<String>) -> AppBuilder {
        AppBuilder {
            name: name.into(),
            version: "0.0.0".to_owned(),
            config: None,
            loader: ConfigLoader::new(),
            http: None,
            grpc: None,
            grpc_names: Vec::new(),
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
        }
    }

    /// Binds every listener and starts serving; returns once the app is ready.
    ///
    /// The returned [`RunningApp`] tells the bound addresses (ports may be 0 in config) and
    /// controls shutdown. Unlike [`run`](Self::run), it installs neither logging nor signal
    /// handlers, which suits tests and embedding.
    pub async fn start(self) -> Result<RunningApp, AppError> {
        let b = self.builder;
        let config = match b.config {
            Some(config) => config,
            None => b.loader.load::<NoAppConfig>()?,
        };

        config.check_framework().map_err(|e| {
            ConfigError::one(
                e.field,
                "the configuration given to the app builder",
                e.message,
            )
        })?;
        let cpu: Option<Arc<dyn CpuSource>> = match (config.admission.shed.enabled, b.cpu) {
            (false, _) => None,
            (true, Some(cpu)) => Some(cpu),
            (true, None) => Some(SystemCpu::spawn(
                config.admission.shed.cpu_interval,
                config.admission.shed.cpu_smoothing,
            )),
        };
        let protect =
            |router: Router, transport| server_stack(router, transport, &config, cpu.as_ref());
        let prometheus = crate::observe::metrics::install();

        let bind = |name: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| AppError::Bind {
                    listener: name,
                    addr,
                    source,
                })
        };

        let mut servers = Vec::new();
        let mut addrs = Addrs {
            http: None,
            grpc: None,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        if let Some(mut router) = b.http {
            for layer in b.http_layers {
                router = layer(router);
            }
            let router = protect(router, "http")?;
            let listener = bind("http", config.http.addr).await?;
            addrs.http = Some(local_addr(&listener, "http")?);
            servers.push(Server {
                name: "http",
                listener,
                router,
                protocol: Protocol::Auto {
                    header_read_timeout: config.http.header_read_timeout,
                },
            });
        }
        let mut grpc_health = None;
        if let Some(routes) = b.grpc {
            // The standard grpc.health.v1 service, SERVING until shutdown begins.
            let (reporter, health_service) = tonic_health::server::health_reporter();
            for name in b.grpc_names.iter().copied().chain([""]) {
                reporter
                    .set_service_status(name, tonic_health::ServingStatus::Serving)
                    .await;
            }
            grpc_health = Some((reporter, b.grpc_names.clone()));
            let mut router = routes.add_service(health_service).into_axum_router();
            for layer in b.grpc_layers {
                router = layer(router);
            }
            let router = protect(router, "grpc")?;
            let listener = bind("grpc", config.grpc.addr).await?;
            addrs.grpc = Some(local_addr(&listener, "grpc")?);
            servers.push(Server {
                name: "grpc",
                listener,
                router,
                protocol: Protocol::Http2 {
                    max_concurrent_streams: config.grpc.max_concurrent_streams,
                },
            });
        }
        let admin_listener = bind("admin", config.admin.addr).await?;
        addrs.admin = local_addr(&admin_listener, "admin")?;
        let admin_server = Server {
            name: "admin",
            listener: admin_listener,
            router: admin::router(b.health.clone(), prometheus.clone()).merge(b.admin),
            protocol: Protocol::Auto {
                header_read_timeout: config.http.header_read_timeout,
            },
        };

        let grace = config.shutdown.grace;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
        let mut closed = Vec::new();
        let mut tasks = Vec::new();
        for server in servers {
            let (closed_tx, closed_rx) = oneshot::channel();
            closed.push(closed_rx);
            let serve = server.serve(stop_rx.clone(), closed_tx, grace, b.handle.clone());
            tasks.push(tokio::spawn(serve));
        }
        // The admin listener keeps answering (readyz = 503) until the others have drained.
        let admin_task = tokio::spawn(admin_server.serve(
            admin_stop_rx,
            oneshot::channel().0,
            grace.min(Duration::from_secs(1)),
            b.handle.clone(),
        ));

        let advertise = |addr: Option<SocketAddr>| {
            addr.map(|mut a| {
                if a.ip().is_unspecified() {
                    a.set_ip(
                        config
                            .registry
                            .advertise_host
                            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
                    );
                }
                a
            })
        };
        let instance = Instance {
            id: instance_id(&b.name),
            name: b.name.clone(),
            version: b.version.clone(),
            http: advertise(addrs.http),
            grpc: advertise(addrs.grpc),
            metadata: b.metadata,
        };
        #[cfg(feature = "etcd")]
        let registrar = b.registrar.or_else(|| {
            config.registry.etcd.clone().map(|etcd| {
                Arc::new(
                    crate::registry::etcd::EtcdRegistrar::new(etcd).with_health(b.health.clone()),
                ) as Arc<dyn Registrar>
            })
        });
        #[cfg(not(feature = "etcd"))]
        let registrar = b.registrar;
        if let Some(registrar) = &registrar {
            let registered =
                tokio::time::timeout(config.shutdown.hook_timeout, registrar.register(&instance))
                    .await;
            match registered {
                Ok(Ok(())) => tracing::info!(id = %instance.id, "registered"),
                Ok(Err(error)) => tracing::error!(%error, "registration failed"),
                Err(_) => tracing::error!("registration timed out"),
            }
        }

        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        b.health.set_ready(true);
        let lifecycle = Lifecycle {
            config: config.clone(),
            health: b.health.clone(),
            handle: b.handle.clone(),
            registrar,
            before_stop: b.before_stop,
            after_stop: b.after_stop,
            stop_tx,
            admin_stop_tx,
            closed,
            tasks,
            admin_task,
            phase_tx,
            grpc_health,
        };
        let upkeep = crate::observe::metrics::spawn_upkeep(prometheus, Duration::from_secs(5));
        let task = tokio::spawn(async move {
            lifecycle.run().await;
            upkeep.abort();
        });
        Ok(RunningApp {
            name: b.name,
            addrs,
            instance,
            handle: b.handle,
            health: b.health,
            phase: phase_rx,
            task,
        })
    }

    /// Runs the service until SIGTERM or SIGINT (or its [`ShutdownHandle`]), then shuts down
    /// gracefully within the configured bounds.
    ///
    /// Installs the `tracing` subscriber from `[log]` and logs, in one line, the addresses it
    /// bound.
    pub async fn run(mut self) -> Result<(), AppError> {
        let config = match self.builder.config.take() {
            Some(config) => config,
            None => self.builder.loader.load::<NoAppConfig>()?,
        };
        let guard = crate::observe::log::init(
            &config.log,
            &config.trace,
            &self.builder.name,
            &self.builder.version,
        )?;
        self.builder.config = Some(config);
        listen_for_signals(self.builder.handle.clone()).map_err(AppError::Signal)?;
        let running = self.start().await?;
        let fmt_addr = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_owned(), |a| a.to_string());
        tracing::info!(
            service = %running.name,
            http = %fmt_addr(running.http_addr()),
            grpc = %fmt_addr(running.grpc_addr()),
            admin = %running.admin_addr(),
            "listening"
        );
        let result = running.wait().await;
        guard.shutdown().await;
        result
    }
}

/// Wraps a listener's router in the server stack the config asks for, as the app does for
/// its HTTP and gRPC listeners, outermost first: trace context, request metrics, in-flight
/// limit, rate limits, load shedding, circuit breaker (per route), deadline. `transport` is
/// the metrics label (`http` or `grpc`); `cpu` replaces the CPU sampler of load shedding.
///
/// One `Router::layer` call: axum boxes each layer it applies. Useful to measure the stack
/// or to serve a router with it outside an [`App`]:
///
/// ```
/// use axum::{Router, routing::get};
/// use truss::config::{Config, NoAppConfig};
///
/// let router = Router::new().route("/", get(|| async { "ok" }));
/// let protected = truss::app::server_stack(router, "http", &Config::<NoAppConfig>::default(), None)
///     .unwrap();
/// # let _ = protected;
/// ```
pub fn server_stack(
    router: Router,
    transport: &'static str,
    config: &Config<NoAppConfig>,
    cpu: Option<&Arc<dyn CpuSource>>,
) -> Result<Router, AppError> {
    let invalid = |section: &str, e: crate::config::ValidationError| {
        AppError::Config(ConfigError::one(
            format!("{section}.{}", e.field),
            "the configuration given to the app builder",
            e.message,
        ))
    };
    let admission =
        admission_layer(&config.admission, cpu.cloned()).map_err(|e| invalid("admission", e))?;
    let breaker = if config.breaker.enabled {
        let breakers = Breakers::new(config.breaker.clone(), Arc::new(DefaultClassifier))
            .map_err(|e| invalid("breaker", e))?;
        Some(BreakerLayer::new(breakers))
    } else {
        None
    };
    let stack = tower::ServiceBuilder::new()
        .layer(TraceLayer::new(config.log.access).sample_ratio(config.trace.sample_ratio))
        .layer(MetricsLayer::new(transport))
        .layer(admission)
        .option_layer(breaker)
        .layer(DeadlineLayer::new(config.timeout.clone()));
    // `with_state(())` turns every handler into a finished service now; a `Router<()>` that
    // skips it rebuilds each handler with its layers on every request (found profiling the
    // load harness: a clone, the stack's layer calls and a drop per request).
    Ok(router.layer(stack).with_state(()))
}

fn local_addr(listener: &TcpListener, name: &'static str) -> Result<SocketAddr, AppError> {
    listener.local_addr().map_err(|source| AppError::Bind {
        listener: name,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

fn instance_id(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{name}-{}-{nanos:08x}", std::process::id())
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
        self.config = Some(Config {
            http: config.http.clone(),
            grpc: config.grpc.clone(),
            admin: config.admin.clone(),
            shutdown: config.shutdown.clone(),
            log: config.log.clone(),
            admission: config.admission.clone(),
            timeout: config.timeout.clone(),
            breaker: config.breaker.clone(),
            retry: config.retry.clone(),
            trace: config.trace.clone(),
            registry: config.registry.clone(),
            app: NoAppConfig {},
        });
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

    /// Wraps every HTTP route in `layer` (after routing, so the route template is known).
    /// The first layer added is the innermost.
    pub fn http_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.http_layers
            .push(Box::new(move |r: Router| r.layer(layer)));
        self
    }

    /// Wraps every gRPC service in `layer`. The first layer added is the innermost.
    pub fn grpc_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.grpc_layers
            .push(Box::new(move |r: Router| r.layer(layer)));
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

    /// Finishes building.
    pub fn build(self) -> App {
        App { builder: self }
    }

    /// Shorthand for `build().start()`.
    pub async fn start(self) -> Result<RunningApp, AppError> {
        self.build().start().await
    }

    /// Shorthand for `build().run()`.
    pub async fn run(self) -> Result<(), AppError> {
        self.build().run().await
    }
}

#[derive(Debug, Clone, Copy)]
struct Addrs {
    http: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
    admin: SocketAddr,
}

/// Where a running app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Listeners bound, ready.
    Serving,
    /// Shutdown began: not ready, hooks and the drain delay run, listeners still accept.
    Draining,
    /// Listeners closed (new connections are refused); in-flight requests finish.
    Stopping,
    /// Everything closed, after-stop hooks done.
    Stopped,
}

/// A started app. Dropping it does not stop the app; call [`wait`](Self::wait) or
/// [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct RunningApp {
    name: String,
    addrs: Addrs,
    instance: Instance,
    handle: ShutdownHandle,
    health: Health,
    phase: watch::Receiver<Phase>,
    task: JoinHandle<()>,
}

impl RunningApp {
    /// The bound HTTP address, when the app serves HTTP.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.addrs.http
    }

    /// The bound gRPC address, when the app serves gRPC.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.addrs.grpc
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.addrs.admin
    }

    /// What was (or would be) announced to the registry.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// A handle that starts (or forces) shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// The app's readiness state.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Completes once the app has reached `phase` (or a later one).
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.clone();
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    /// Waits until the app has shut down.
    pub async fn wait(self) -> Result<(), AppError> {
        self.task
            .await
            .map_err(|e| AppError::Internal(e.to_string()))
    }

    /// Starts graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) -> Result<(), AppError> {
        self.handle.shutdown();
        self.wait().await
    }
}

struct Lifecycle {
    config: Config<NoAppConfig>,
    health: Health,
    handle: ShutdownHandle,
    registrar: Option<Arc<dyn Registrar>>,
    before_stop: Vec<Hook>,
    after_stop: Vec<Hook>,
    stop_tx: watch::Sender<bool>,
    admin_stop_tx: watch::Sender<bool>,
    closed: Vec<oneshot::Receiver<()>>,
    tasks: Vec<JoinHandle<()>>,
    admin_task: JoinHandle<()>,
    phase_tx: watch::Sender<Phase>,
    grpc_health: Option<(tonic_health::server::HealthReporter, Vec<&'static str>)>,
}

impl Lifecycle {
    async fn run(self) {
        self.handle.reached(Level::Graceful).await;
        let hook_timeout = self.config.shutdown.hook_timeout;
        let _ = self.phase_tx.send(Phase::Draining);
        self.health.set_ready(false);
        if let Some((reporter, names)) = &self.grpc_health {
            for name in names.iter().copied().chain([""]) {
                reporter
                    .set_service_status(name, tonic_health::ServingStatus::NotServing)
                    .await;
            }
        }
        tracing::info!("shutdown: not ready, running before-stop hooks");

        if let Some(registrar) = &self.registrar {
            match bounded_by(
                &self.handle,
                "deregister",
                hook_timeout,
                registrar.deregister(),
            )
            .await
            {
                Some(Err(error)) => tracing::error!(%error, "deregistration failed"),
                Some(Ok(())) => tracing::info!("deregistered"),
                None => {}
            }
        }
        for hook in self.before_stop {
            bounded_by(&self.handle, "before-stop hook", hook_timeout, hook()).await;
        }
        let drain = self.config.shutdown.drain_delay;
        bounded_by(
            &self.handle,
            "drain delay",
            drain,
            std::future::pending::<()>(),
        )
        .await;

        let _ = self.stop_tx.send(true);
        for closed in self.closed {
            let _ = closed.await;
        }
        let _ = self.phase_tx.send(Phase::Stopping);
        tracing::info!(grace = ?self.config.shutdown.grace, "shutdown: listeners closed, draining requests");
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "server task failed");
            }
        }
        let _ = self.admin_stop_tx.send(true);
        if let Err(error) = self.admin_task.await {
            tracing::error!(%error, "admin server task failed");
        }

        for hook in self.after_stop {
            bounded_by(&self.handle, "after-stop hook", hook_timeout, hook()).await;
        }
        let _ = self.phase_tx.send(Phase::Stopped);
        tracing::info!("shutdown complete");
    }
}

/// Runs `fut` for at most `limit`, or until shutdown is forced.
async fn bounded_by<T>(
    handle: &ShutdownHandle,
    what: &'static str,
    limit: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        out = tokio::time::timeout(limit, fut) => match out {
            Ok(out) => Some(out),
            Err(_) => {
                // The drain delay is a pending future: running out is its normal end.
                if what != "drain delay" {
                    tracing::warn!(?limit, "{what} timed out");
                }
                None
            }
        },
        _ = handle.forced() => None,
    }
}

/// Why an app could not start or run.
pub enum AppError {
    /// Configuration could not be loaded.
    Config(ConfigError),
    /// A listener could not be bound.
    Bind {
        /// `http`, `grpc` or `admin`.
        listener: &'static str,
        /// The address it tried.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    Signal(std::io::Error),
    /// The app's own task failed (a bug in truss).
    Internal(String),
}

impl From<ConfigError> for AppError {
    fn from(e: ConfigError) -> Self {
        AppError::Config(e)
    }
}

/// A value checked in code (a client built from config sections, say) that is not usable.
impl From<crate::config::ValidationError> for AppError {
    fn from(e: crate::config::ValidationError) -> Self {
        AppError::Config(ConfigError::one(e.field, "the service's code", e.message))
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Config(e) => e.fmt(f),
            AppError::Bind {
                listener,
                addr,
                source,
            } => write!(f, "cannot bind the {listener} listener on {addr}: {source}"),
            AppError::Signal(e) => write!(f, "cannot install signal handlers: {e}"),
            AppError::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

/// Shows the message, so `fn main() -> Result<(), AppError>` prints something readable.
impl fmt::Debug for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AppError::Config(e) => Some(e),
            AppError::Bind { source, .. } | AppError::Signal(source) => Some(source),
            AppError::Internal(_) => None,
        }
    }
}
