//! Clients addressed by service name: calls are balanced with power-of-two-choices over
//! peak-EWMA latency across the instances discovery reports, through the client layer stack:
//! trace injection → metrics → deadline → retry (budgeted) → breaker (per method) →
//! balancer → per-attempt timeout → connection.
//!
//! Instances that disappear from discovery stop receiving calls; new ones start receiving
//! them. The set of instances comes from a `watch::Receiver<Vec<Instance>>`, as
//! [`registry::etcd::discover`](crate::registry) or [`static_instances`] provide.
//!
//! ```no_run
//! # async fn demo(rx: tokio::sync::watch::Receiver<Vec<truss::registry::Instance>>) {
//! use truss::client::{ClientConfig, grpc_client};
//!
//! let channel = grpc_client("user", rx, &ClientConfig::default()).unwrap();
//! // let mut users = UserClient::new(channel);
//! # let _ = channel; }
//! ```

use std::convert::Infallible;
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

use crate::BoxError;
use crate::config::ValidationError;
use crate::observe::metrics::ClientMetricsLayer;
use crate::observe::trace::InjectTraceLayer;
use crate::registry::Instance;
use crate::resilience::breaker::{BreakerConfig, Breakers, ClientBreakerLayer, DefaultClassifier};
use crate::resilience::deadline::PropagateDeadlineLayer;
use crate::resilience::retry::{RetryConfig, RetryLayer};

/// A gRPC client service: give it to a tonic-generated client's `new`.
pub type GrpcChannel =
    BoxCloneSyncService<Request<tonic::body::Body>, Response<tonic::body::Body>, BoxError>;

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
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            deadline_margin: Duration::from_millis(5),
            attempt_timeout: Duration::from_secs(5),
            queue: 1024,
        }
    }
}

/// A watch of fixed instances, for services without a registry.
pub fn static_instances(instances: Vec<Instance>) -> watch::Receiver<Vec<Instance>> {
    let (tx, rx) = watch::channel(instances);
    // Keep the sender alive for as long as anyone watches.
    tokio::spawn(async move { tx.closed().await });
    rx
}

/// A balanced, resilient gRPC client for `service`, following `instances`. Call inside a
/// tokio runtime.
pub fn grpc_client(
    service: &str,
    instances: watch::Receiver<Vec<Instance>>,
    config: &ClientConfig,
) -> Result<GrpcChannel, ValidationError> {
    let discover = discover_grpc(instances, config.attempt_timeout);
    let balance = Balance::new(discover);
    let (buffer, worker) = Buffer::pair(balance, config.queue.max(1));
    tokio::spawn(worker);
    let breakers = Breakers::new(config.breaker.clone(), Arc::new(DefaultClassifier))?;
    let stack = ServiceBuilder::new()
        .layer(InjectTraceLayer)
        .layer(ClientMetricsLayer::new(service))
        .layer(PropagateDeadlineLayer::new(config.deadline_margin))
        .layer(RetryLayer::new(service, &config.retry)?)
        .layer(ClientBreakerLayer::new(service.to_owned(), breakers))
        .service(buffer);
    Ok(BoxCloneSyncService::new(stack))
}

type Endpoint = PeakEwma<tower::timeout::Timeout<tonic::transport::Channel>, CompleteOnResponse>;

/// Turns instance sets into insert/remove changes of peak-EWMA-measured channels.
fn discover_grpc(
    mut instances: watch::Receiver<Vec<Instance>>,
    attempt_timeout: Duration,
) -> impl tower::discover::Discover<Key = String, Service = Endpoint, Error = Infallible> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut current = std::collections::HashMap::<String, std::net::SocketAddr>::new();
        loop {
            let next: std::collections::HashMap<String, std::net::SocketAddr> = instances
                .borrow_and_update()
                .iter()
                .filter_map(|i| Some((i.id.clone(), i.grpc?)))
                .collect();
            for (id, addr) in &current {
                if next.get(id) != Some(addr) {
                    tracing::info!(instance = %id, %addr, "client: instance removed");
                    let _ = tx.send(Change::Remove(id.clone()));
                }
            }
            for (id, addr) in &next {
                if current.get(id) != Some(addr) {
                    match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
                        Ok(endpoint) => {
                            tracing::info!(instance = %id, %addr, "client: instance added");
                            let channel = tower::timeout::Timeout::new(
                                endpoint.connect_lazy(),
                                attempt_timeout,
                            );
                            let service = PeakEwma::new(
                                channel,
                                Duration::from_millis(30),
                                Duration::from_secs(10).as_nanos() as f64,
                                CompleteOnResponse::default(),
                            );
                            let _ = tx.send(Change::Insert(id.clone(), service));
                        }
                        Err(error) => tracing::warn!(%addr, %error, "client: bad instance address"),
                    }
                }
            }
            current = next;
            if instances.changed().await.is_err() || tx.is_closed() {
                return;
            }
        }
    });
    UnboundedReceiverStream::new(rx).map(Ok::<_, Infallible>)
}
