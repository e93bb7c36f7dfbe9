//! Clients addressed by service name: calls are balanced with power-of-two-choices over
//! peak-EWMA latency across the instances discovery reports, through the client layer stack:
//! credentials (feature `auth`: the caller's token or this service's) → trace injection →
//! metrics → retry (budgeted) → deadline (each attempt sends the time left) → breaker (per
//! method) → balancer → per-attempt timeout → connection.
//!
//! Instances that disappear from discovery stop receiving calls; new ones start receiving
//! them. An instance that refuses connections is ejected for 1 s (doubling to 30 s while it
//! keeps refusing) before one probe call, so a dead instance discovery still lists does not
//! attract calls (`truss_client_ejections_total` counts ejections). When every instance is
//! ejected, calls go through anyway and fail fast rather than wait for their deadline. When
//! discovery reports no instance at all, calls fail at once with `UNAVAILABLE` (until its
//! first report they wait, so a call made as the app starts is not refused for being early).
//! The set of instances comes from a `watch::Receiver<Vec<Instance>>`, as
//! [`registry::etcd::discover`](crate::registry) or
//! [`StaticDiscovery`](crate::registry::StaticDiscovery) provide.
//!
//! ```no_run
//! # async fn demo(rx: tokio::sync::watch::Receiver<Vec<truss::registry::Instance>>) {
//! use truss::client::{ClientConfig, grpc_client};
//!
//! let channel = grpc_client("user", rx, &ClientConfig::default()).unwrap();
//! // let mut users = UserClient::new(channel);
//! # let _ = channel; }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower::ServiceBuilder;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PeakEwma};
use tower::util::BoxCloneSyncService;

mod eject;
mod empty;

use eject::{Eject, Pool};
use empty::{FailEmpty, Live};

use crate::BoxError;
use crate::observe::metrics::ClientMetricsLayer;
use crate::observe::trace::InjectTraceLayer;
use crate::registry::Instance;
use crate::resilience::breaker::{BreakerConfig, Breakers, ClientBreakerLayer, DefaultClassifier};
use crate::resilience::deadline::PropagateDeadlineLayer;
use crate::resilience::retry::{RetryConfig, RetryLayer};
use crate::section::ValidationError;

/// A gRPC client service: give it to a tonic-generated client's `new`.
///
/// Its error is a [`ClientError`] rather than a bare `BoxError`, so calls made with it can be
/// awaited inside `Send` futures (spawned tasks, `impl Future + Send` trait methods): with a
/// boxed trait object as the error type, rustc cannot prove those futures `Send`.
#[derive(Clone)]
pub struct GrpcChannel {
    inner: BoxCloneSyncService<Request<tonic::body::Body>, Response<tonic::body::Body>, BoxError>,
}

impl std::fmt::Debug for GrpcChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrpcChannel")
    }
}

impl tower::Service<Request<tonic::body::Body>> for GrpcChannel {
    type Response = Response<tonic::body::Body>;
    type Error = ClientError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, ClientError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ClientError>> {
        self.inner.poll_ready(cx).map_err(ClientError)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        let call = self.inner.call(req);
        Box::pin(async move { call.await.map_err(ClientError) })
    }
}

/// Why a client call failed before a response came: a transport error, or a local decision
/// (breaker open, deadline passed) carrying a `tonic::Status` in its source chain — tonic
/// finds it there, so the caller sees that status.
#[derive(Debug)]
pub struct ClientError(pub BoxError);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// What the client stack is built from (the app's `[retry]`, `[breaker]` and `[timeout]`
/// sections fit here).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Retry policy and budget.
    pub retry: RetryConfig,
    /// Breaker per method.
    pub breaker: BreakerConfig,
    /// Kept back from the deadline sent downstream.
    pub deadline_margin: Duration,
    /// Timeout of one attempt. Default `5s`.
    pub attempt_timeout: Duration,
    /// Calls waiting for an instance to be ready. Default 1024.
    pub queue: usize,
    /// What calls send as `authorization`: nothing (default), the caller's token, or this
    /// service's own.
    #[cfg(feature = "auth")]
    pub auth: crate::auth::ClientAuth,
    /// The app config this came from ([`from_config`](Self::from_config)): a reload of
    /// `[retry]` reaches the client's retry policy.
    pub origin: crate::config::ConfigOrigin,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            deadline_margin: Duration::from_millis(5),
            attempt_timeout: Duration::from_secs(5),
            queue: 1024,
            #[cfg(feature = "auth")]
            auth: crate::auth::ClientAuth::None,
            origin: Default::default(),
        }
    }
}

impl ClientConfig {
    /// The client settings of an app's config: its `[retry]` and `[breaker]` sections and
    /// `[timeout].margin`. When the config was loaded from sources, the client follows
    /// reloads of `[retry]` (see [`reload`](crate::reload)).
    ///
    /// ```
    /// let config = truss::Config::<truss::config::NoAppConfig>::default();
    /// let client = truss::client::ClientConfig::from_config(&config);
    /// assert_eq!(client.retry, config.retry);
    /// ```
    pub fn from_config<T>(config: &crate::Config<T>) -> Self {
        Self {
            retry: config.retry.clone(),
            breaker: config.breaker.clone(),
            deadline_margin: config.timeout.margin,
            origin: config.origin.clone(),
            ..Self::default()
        }
    }
}

/// A balanced, resilient gRPC client for `service`, following `instances`. Call inside a
/// tokio runtime.
pub fn grpc_client(
    service: &str,
    instances: watch::Receiver<Vec<Instance>>,
    config: &ClientConfig,
) -> Result<GrpcChannel, ValidationError> {
    let timeout = config.attempt_timeout;
    let live = Live::new();
    let discover = discover(
        instances,
        live.clone(),
        |i| i.grpc,
        move |addr| {
            let endpoint =
                tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?;
            Some(tower::timeout::Timeout::new(
                endpoint.connect_lazy(),
                timeout,
            ))
        },
    );
    let inner = stack(service, discover, live, config)?;
    Ok(GrpcChannel { inner })
}

/// An HTTP client service: requests carry a path (and query); the scheme and authority are
/// set to the chosen instance's HTTP address.
pub type HttpClient =
    BoxCloneSyncService<Request<axum::body::Body>, Response<hyper::body::Incoming>, BoxError>;

/// A balanced, resilient HTTP client for `service`, following `instances`. Call inside a
/// tokio runtime.
///
/// ```no_run
/// # async fn demo(rx: tokio::sync::watch::Receiver<Vec<truss::registry::Instance>>) {
/// use tower::{Service, ServiceExt};
/// use truss::client::{ClientConfig, http_client};
///
/// let mut users = http_client("user", rx, &ClientConfig::default()).unwrap();
/// let req = http::Request::get("/users/7").body(axum::body::Body::empty()).unwrap();
/// let resp = users.ready().await.unwrap().call(req).await.unwrap();
/// # let _ = resp; }
/// ```
pub fn http_client(
    service: &str,
    instances: watch::Receiver<Vec<Instance>>,
    config: &ClientConfig,
) -> Result<HttpClient, ValidationError> {
    let timeout = config.attempt_timeout;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<axum::body::Body>();
    let live = Live::new();
    let discover = discover(
        instances,
        live.clone(),
        |i| i.http,
        move |addr| {
            Some(tower::timeout::Timeout::new(
                HttpEndpoint {
                    addr,
                    client: client.clone(),
                },
                timeout,
            ))
        },
    );
    stack(service, discover, live, config)
}

/// Balancer, buffer and the client layer stack over discovered endpoints; `live` counts
/// them, so a service discovery reports empty fails fast.
fn stack<S, B, R>(
    service: &str,
    discover: impl tower::discover::Discover<
        Key = String,
        Service = PeakEwma<Eject<S>>,
        Error = Infallible,
    > + Send
    + Unpin
    + 'static,
    live: Arc<Live>,
    config: &ClientConfig,
) -> Result<BoxCloneSyncService<Request<B>, Response<R>, BoxError>, ValidationError>
where
    S: tower::Service<Request<B>, Response = Response<R>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: crate::resilience::retry::ReplayBody + Unpin,
    B::Error: Into<BoxError>,
    R: Send + 'static,
{
    // Metrics recorded before the app installs the recorder would be lost.
    let _ = crate::observe::metrics::install();
    let balance = Balance::new(discover);
    let (buffer, worker) = Buffer::pair(balance, config.queue.max(1));
    tokio::spawn(worker);
    let breakers = Breakers::new(config.breaker.clone(), Arc::new(DefaultClassifier))?;
    #[cfg(feature = "auth")]
    let auth = crate::auth::ClientAuthLayer::new(config.auth.clone());
    #[cfg(not(feature = "auth"))]
    let auth = tower::layer::util::Identity::new();
    let retry = RetryLayer::new(service, &config.retry)?;
    follow_retry(&config.origin, &retry);
    let stack = ServiceBuilder::new()
        .layer(auth)
        .layer(InjectTraceLayer)
        .layer(ClientMetricsLayer::new(service))
        .layer(retry)
        // Inside the retry: each attempt sends the time left then, not the first's budget.
        .layer(PropagateDeadlineLayer::new(config.deadline_margin))
        .layer(ClientBreakerLayer::new(service.to_owned(), breakers))
        .service(FailEmpty::new(buffer, live, service));
    Ok(BoxCloneSyncService::new(stack))
}

/// Keeps `retry` on the `[retry]` section in force, for as long as the client lives.
fn follow_retry(origin: &crate::config::ConfigOrigin, retry: &RetryLayer) {
    let Some(origin) = &origin.0 else { return };
    let weak = retry.downgrade();
    origin.follow(move |config| match weak.upgrade() {
        Some(retry) => {
            if let Err(error) = retry.set_config(&config.retry) {
                tracing::error!(%error, "reloaded [retry] not applied to a client");
            }
            true
        }
        None => false,
    });
}

/// One instance's HTTP address, reached through a shared connection pool.
#[derive(Clone)]
struct HttpEndpoint {
    addr: SocketAddr,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        axum::body::Body,
    >,
}

impl tower::Service<Request<axum::body::Body>> for HttpEndpoint {
    type Response = Response<hyper::body::Incoming>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<axum::body::Body>) -> Self::Future {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let client = self.client.clone();
        let uri = format!("http://{}{path}", self.addr);
        Box::pin(async move {
            *req.uri_mut() = uri.parse()?;
            Ok(client.request(req).await?)
        })
    }
}

/// Turns instance sets into insert/remove changes of peak-EWMA-measured endpoint services:
/// `addr` picks the address an instance is reached on, `make` builds its service. `live`
/// follows how many there are, once discovery has reported.
fn discover<S>(
    mut instances: watch::Receiver<Vec<Instance>>,
    live: Arc<Live>,
    addr: fn(&Instance) -> Option<SocketAddr>,
    make: impl Fn(SocketAddr) -> Option<S> + Send + 'static,
) -> impl tower::discover::Discover<Key = String, Service = PeakEwma<Eject<S>>, Error = Infallible>
+ Send
+ Unpin
+ 'static
where
    S: Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let pool = Arc::new(Pool::default());
    tokio::spawn(async move {
        let mut current = HashMap::<String, SocketAddr>::new();
        // The first set is discovery's answer only when it names instances: etcd's starts
        // out empty until its first listing. Every set sent after it is an answer.
        let mut reported = false;
        loop {
            let next: HashMap<String, SocketAddr> = instances
                .borrow_and_update()
                .iter()
                .filter_map(|i| Some((i.id.clone(), addr(i)?)))
                .collect();
            for (id, at) in &current {
                if next.get(id) != Some(at) {
                    tracing::info!(instance = %id, addr = %at, "client: instance removed");
                    let _ = tx.send(Change::Remove(id.clone()));
                }
            }
            for (id, at) in &next {
                if current.get(id) != Some(at) {
                    match make(*at) {
                        Some(service) => {
                            tracing::info!(instance = %id, addr = %at, "client: instance added");
                            // A new instance starts out looking fast (1 ms), so it is
                            // tried and measured at once rather than starved by a
                            // measured-fast neighbour.
                            let service = PeakEwma::new(
                                Eject::new(service, *at, pool.clone()),
                                Duration::from_millis(1),
                                Duration::from_secs(10).as_nanos() as f64,
                                CompleteOnResponse::default(),
                            );
                            let _ = tx.send(Change::Insert(id.clone(), service));
                        }
                        None => tracing::warn!(addr = %at, "client: bad instance address"),
                    }
                }
            }
            current = next;
            reported |= !current.is_empty();
            if reported {
                live.set(current.len());
            }
            if instances.changed().await.is_err() || tx.is_closed() {
                return;
            }
            reported = true;
        }
    });
    UnboundedReceiverStream::new(rx).map(Ok::<_, Infallible>)
}
