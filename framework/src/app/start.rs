//! Start-up: config, listeners, registration, lifecycle — one named step each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::Router;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::builder::RouterMap;
use super::lifecycle::Lifecycle;
use super::reflection::add_reflection;
use super::running::Addrs;
use super::stack::{StackShared, build};
use super::{AppBuilder, AppError, Phase, RunningApp};
use crate::config::{Config, ConfigError, NoAppConfig};
use crate::registry::{self, Instance, Registrar};
use crate::reload::{self, LiveStack};
use crate::resilience::{CpuSource, shed::SystemCpu};
use crate::shutdown::{ShutdownHandle, listen_for_signals};
use crate::transport::admin;
use crate::transport::listener::{Drain, Listener};
use crate::transport::server::{Protocol, Server};
use crate::wire::Transport;

/// The gRPC health service's reporter and the names it reports for.
type GrpcHealth = (tonic_health::server::HealthReporter, Vec<&'static str>);

impl AppBuilder {
    /// Binds every listener and starts serving; returns once the app is ready.
    ///
    /// The returned [`RunningApp`] tells the bound addresses (ports may be 0 in config) and
    /// controls shutdown. Unlike [`run`](Self::run), it installs neither logging nor signal
    /// handlers, which suits tests and embedding.
    pub async fn start(mut self) -> Result<RunningApp, AppError> {
        let config = self.resolve_config()?;
        let prometheus = crate::observe::metrics::install();
        let logged = (config.log.level.clone(), config.log.format);
        let initial = reload::initial(config).await?;
        let config = initial.config;
        if logged != (config.log.level.clone(), config.log.format) {
            // `run` installed the subscriber from the file; etcd's `[log]` wins.
            self.apply_log(&config)?;
        }
        let cpu = cpu_source(&config, self.cpu.take());
        let shared = StackShared::start(&config, cpu, &self.name).await?;
        let (listeners, grpc_health, stacks) = self.bind_listeners(&config, &shared).await?;
        let status = reload::Status::new(&config, &initial.shown);
        let admin = self
            .bind_admin(&config, prometheus.clone(), &status)
            .await?;
        let addrs = addresses(&listeners, &admin);
        let serving = Serving::spawn(listeners, admin, grpc_health, &config, &self.handle);
        let instance = self.instance(&config, &addrs);
        let registrar =
            registry::registrar_from(&config.registry, self.registrar.take(), &self.health);
        register(
            registrar.as_deref(),
            &instance,
            config.shutdown.hook_timeout,
        )
        .await;
        self.health.set_ready(true);
        let upkeep = crate::observe::metrics::spawn_upkeep(prometheus, Duration::from_secs(5));
        let reloading = match config.origin.0.clone() {
            Some(origin) => {
                let engine = reload::Engine {
                    origin,
                    current: config.clone(),
                    shown: initial.shown,
                    overlay: initial.overlay,
                    stacks,
                    shared,
                    log: self.log.take(),
                    status,
                };
                reload::Reloading::spawn(engine, initial.revision, self.sighup)
            }
            None => reload::Reloading::default(),
        };
        Ok(self.launch(
            config,
            serving,
            registrar,
            addrs,
            instance,
            (upkeep, reloading),
        ))
    }

    /// Runs the service until SIGTERM or SIGINT (or its [`ShutdownHandle`]), then shuts down
    /// gracefully within the configured bounds.
    ///
    /// Installs the `tracing` subscriber from `[log]` and logs, in one line, the addresses it
    /// bound.
    ///
    /// Given `--openapi <file>` (or `--openapi=<file>`) on the command line, it writes the
    /// app's OpenAPI document there instead and returns, binding nothing (`cargo truss
    /// openapi` runs that). Code that runs before `run` (opening a database, say) still
    /// runs.
    pub async fn run(mut self) -> Result<(), AppError> {
        let config = self.resolve_config()?;
        if let Some(path) = openapi_flag() {
            return self.write_openapi(&config, &path);
        }
        let guard =
            crate::observe::log::init(&config.log, &config.trace, &self.name, &self.version)?;
        self.config = Some(config);
        self.log = guard.control();
        self.sighup = true;
        listen_for_signals(self.handle.clone()).map_err(AppError::Signal)?;
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

    /// `[log]` as an etcd source set it at start, on the subscriber `run` installed.
    fn apply_log(&self, config: &Config<NoAppConfig>) -> Result<(), AppError> {
        match &self.log {
            Some(log) => Ok(log.apply(&config.log, "the etcd config source")?),
            None => Ok(()),
        }
    }

    /// The config given to the builder, or loaded now; checked either way.
    fn resolve_config(&mut self) -> Result<Config<NoAppConfig>, AppError> {
        let config = match self.config.take() {
            Some(config) => config,
            None => self.loader.load::<NoAppConfig>()?,
        };
        config.check_framework().map_err(|e| {
            ConfigError::one(
                e.field,
                "the configuration given to the app builder",
                e.message,
            )
        })?;
        Ok(config)
    }

    /// The HTTP and gRPC listeners the team asked for, each behind the server stack.
    async fn bind_listeners(
        &mut self,
        config: &Config<NoAppConfig>,
        shared: &StackShared,
    ) -> Result<(Vec<Box<dyn Listener>>, Option<GrpcHealth>, Vec<LiveStack>), AppError> {
        let mut listeners: Vec<Box<dyn Listener>> = Vec::new();
        let mut stacks = Vec::new();
        if let Some(router) = self.http.take() {
            let mut base = apply(router, std::mem::take(&mut self.http_layers));
            if config.http.openapi {
                base = base.merge(openapi_route(self.openapi_document(config)?));
            }
            #[cfg(feature = "openapi-ui")]
            if config.http.openapi_ui {
                base = base.merge(crate::openapi::ui::router(&self.name));
            }
            let stack = live_stack(base, Transport::Http, config, shared)?;
            let protocol = Protocol::Auto {
                header_read_timeout: config.http.header_read_timeout,
            };
            let slot = stack.slot.clone();
            listeners.push(Box::new(
                Server::bind("http", config.http.addr, slot, protocol).await?,
            ));
            stacks.push(stack);
        }
        let mut grpc_health = None;
        if let Some(routes) = self.grpc.take() {
            let (health, base) = self.grpc_router(routes, config).await?;
            grpc_health = Some(health);
            let stack = live_stack(base, Transport::Grpc, config, shared)?;
            let protocol = Protocol::Http2 {
                max_concurrent_streams: config.grpc.max_concurrent_streams,
                handshake_timeout: config.grpc.handshake_timeout,
            };
            let slot = stack.slot.clone();
            listeners.push(Box::new(
                Server::bind("grpc", config.grpc.addr, slot, protocol).await?,
            ));
            stacks.push(stack);
        }
        for consumer in std::mem::take(&mut self.consumers) {
            listeners.push(Box::new(consumer));
        }
        for configured in std::mem::take(&mut self.configured_consumers) {
            let consumer = self.configured_consumer(config, configured).await?;
            listeners.push(Box::new(consumer));
        }
        Ok((listeners, grpc_health, stacks))
    }

    /// The OpenAPI document of the routes this app declares.
    fn openapi_document(
        &self,
        config: &Config<NoAppConfig>,
    ) -> Result<serde_json::Value, AppError> {
        let api = crate::openapi::Api {
            title: &self.name,
            version: &self.version,
            descriptor_sets: &self.descriptor_sets,
            krate: self.openapi_crate,
            auth: &config.auth,
            mapping: self.json_mapping,
        };
        crate::openapi::document(&api).map_err(AppError::OpenApi)
    }

    /// `--openapi <file>`: the document written, nothing started.
    fn write_openapi(
        &self,
        config: &Config<NoAppConfig>,
        path: &std::path::Path,
    ) -> Result<(), AppError> {
        let document = self.openapi_document(config)?;
        let text = serde_json::to_string_pretty(&document)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|e| AppError::Dependency {
            name: "openapi",
            message: format!("cannot write {}: {e}", path.display()),
        })?;
        println!(
            "wrote the OpenAPI document of {} to {}",
            self.name,
            path.display()
        );
        Ok(())
    }

    /// The team's gRPC services plus the standard `grpc.health.v1` service, SERVING until
    /// shutdown begins, and server reflection (v1 and v1alpha) unless `grpc.reflection` is
    /// off. Both standard services go through the same stack as the team's (auth lets them
    /// through without a token).
    async fn grpc_router(
        &mut self,
        routes: tonic::service::Routes,
        config: &Config<NoAppConfig>,
    ) -> Result<(GrpcHealth, Router), AppError> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        for name in self.grpc_names.iter().copied().chain([""]) {
            reporter
                .set_service_status(name, tonic_health::ServingStatus::Serving)
                .await;
        }
        let routes = add_reflection(
            routes.add_service(health_service),
            &self.descriptor_sets,
            config.grpc.reflection,
        )?;
        let router = apply(
            routes.into_axum_router(),
            std::mem::take(&mut self.grpc_layers),
        );
        Ok(((reporter, self.grpc_names.clone()), router))
    }

    /// The admin listener: health, readiness, metrics and the team's admin routes.
    async fn bind_admin(
        &mut self,
        config: &Config<NoAppConfig>,
        prometheus: metrics_exporter_prometheus::PrometheusHandle,
        status: &reload::Status,
    ) -> Result<Server, AppError> {
        let extra = std::mem::take(&mut self.admin);
        #[cfg_attr(not(feature = "profiling"), allow(unused_mut))]
        let mut router = admin::router(self.health.clone(), prometheus)
            .merge(status.router())
            .merge(extra);
        #[cfg(feature = "profiling")]
        if config.admin.profiling {
            router = router.merge(crate::observe::profile::router());
        }
        let protocol = Protocol::Auto {
            header_read_timeout: config.http.header_read_timeout,
        };
        let slot = Arc::new(ArcSwap::from_pointee(router));
        Ok(Server::bind("admin", config.admin.addr, slot, protocol).await?)
    }

    /// What is announced to the registry.
    fn instance(&mut self, config: &Config<NoAppConfig>, addrs: &Addrs) -> Instance {
        let advertise =
            |addr: Option<SocketAddr>| addr.map(|a| registry::advertise(&config.registry, a));
        Instance {
            id: instance_id(&self.name),
            name: self.name.clone(),
            version: self.version.clone(),
            http: advertise(addrs.http),
            grpc: advertise(addrs.grpc),
            metadata: std::mem::take(&mut self.metadata),
        }
    }

    /// Hands everything shutdown needs to the lifecycle task.
    fn launch(
        self,
        config: Config<NoAppConfig>,
        serving: Serving,
        registrar: Option<Arc<dyn Registrar>>,
        addrs: Addrs,
        instance: Instance,
        (upkeep, reloading): (JoinHandle<()>, reload::Reloading),
    ) -> RunningApp {
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        let lifecycle = Lifecycle {
            config,
            health: self.health.clone(),
            handle: self.handle.clone(),
            registrar,
            before_stop: self.before_stop,
            after_stop: self.after_stop,
            stop_tx: serving.stop_tx,
            admin_stop_tx: serving.admin_stop_tx,
            closed: serving.closed,
            tasks: serving.tasks,
            admin_task: serving.admin_task,
            phase_tx,
            grpc_health: serving.grpc_health,
        };
        let reload = reloading.tx.clone();
        let task = tokio::spawn(async move {
            lifecycle.run().await;
            reloading.stop();
            upkeep.abort();
        });
        RunningApp {
            name: self.name,
            addrs,
            instance,
            handle: self.handle,
            health: self.health,
            phase: phase_rx,
            task,
            reload,
        }
    }
}

/// The listeners, serving, and how to stop them: the public ones first, the admin listener
/// (readyz = 503 while draining) once they have drained.
struct Serving {
    stop_tx: watch::Sender<bool>,
    admin_stop_tx: watch::Sender<bool>,
    closed: Vec<oneshot::Receiver<()>>,
    tasks: Vec<JoinHandle<()>>,
    admin_task: JoinHandle<()>,
    /// The standard gRPC health service's reporter, turned NOT_SERVING when shutdown begins.
    grpc_health: Option<GrpcHealth>,
}

impl Serving {
    fn spawn(
        listeners: Vec<Box<dyn Listener>>,
        admin: Server,
        grpc_health: Option<GrpcHealth>,
        config: &Config<NoAppConfig>,
        handle: &ShutdownHandle,
    ) -> Self {
        let grace = config.shutdown.grace;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
        let mut closed = Vec::new();
        let mut tasks = Vec::new();
        for listener in listeners {
            let (closed_tx, closed_rx) = oneshot::channel();
            closed.push(closed_rx);
            let drain = Drain {
                stop: stop_rx.clone(),
                closed: closed_tx,
                grace,
                force: handle.clone(),
            };
            tasks.push(tokio::spawn(listener.serve(drain)));
        }
        let admin_drain = Drain {
            stop: admin_stop_rx,
            closed: oneshot::channel().0,
            grace: grace.min(Duration::from_secs(1)),
            force: handle.clone(),
        };
        let admin_task = tokio::spawn(Box::new(admin).serve(admin_drain));
        Serving {
            stop_tx,
            admin_stop_tx,
            closed,
            tasks,
            admin_task,
            grpc_health,
        }
    }
}

/// `GET /openapi.json` serving `document`, public when `[auth]` is on.
fn openapi_route(document: serde_json::Value) -> Router {
    crate::auth::declare("GET /openapi.json", crate::auth::RoutePolicy::Public);
    let body = bytes::Bytes::from(document.to_string());
    let serve = move || {
        let body = body.clone();
        async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
    };
    Router::new().route("/openapi.json", axum::routing::get(serve))
}

/// The path after `--openapi` on the command line, if any.
fn openapi_flag() -> Option<std::path::PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--openapi" {
            return args.next().map(Into::into);
        }
        if let Some(path) = text.strip_prefix("--openapi=") {
            return Some(path.into());
        }
    }
    None
}

/// A listener's router behind the server stack, kept with what rebuilds it on reload.
fn live_stack(
    base: Router,
    transport: Transport,
    config: &Config<NoAppConfig>,
    shared: &StackShared,
) -> Result<LiveStack, AppError> {
    let protected = build(base.clone(), transport, config, shared)?;
    Ok(LiveStack {
        transport,
        base,
        slot: Arc::new(ArcSwap::from_pointee(protected)),
    })
}

/// Applies the team's own layers; the first added is the innermost.
fn apply(mut router: Router, layers: Vec<RouterMap>) -> Router {
    for layer in layers {
        router = layer(router);
    }
    router
}

/// The load shedder's CPU figure: none when shedding is off, the one given in code, or a
/// sampler of this process's cgroup / system.
fn cpu_source(
    config: &Config<NoAppConfig>,
    given: Option<Arc<dyn CpuSource>>,
) -> Option<Arc<dyn CpuSource>> {
    let shed = &config.admission.shed;
    if !shed.enabled {
        return None;
    }
    given.or_else(|| Some(SystemCpu::spawn(shed.cpu_interval, shed.cpu_smoothing)))
}

fn addresses(listeners: &[Box<dyn Listener>], admin: &Server) -> Addrs {
    let find = |name: &str| {
        listeners
            .iter()
            .find(|l| l.name() == name)
            .and_then(|l| l.local_addr())
    };
    Addrs {
        http: find("http"),
        grpc: find("grpc"),
        admin: admin
            .local_addr()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
    }
}

/// Registers once, bounded by `limit`; a failure is logged, never fatal (the registrar keeps
/// trying on its own).
async fn register(registrar: Option<&dyn Registrar>, instance: &Instance, limit: Duration) {
    let Some(registrar) = registrar else { return };
    match tokio::time::timeout(limit, registrar.register(instance)).await {
        Ok(Ok(())) => tracing::info!(id = %instance.id, "registered"),
        Ok(Err(error)) => tracing::error!(%error, "registration failed"),
        Err(_) => tracing::error!("registration timed out"),
    }
}

pub(super) fn instance_id(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{name}-{}-{nanos:08x}", std::process::id())
}
