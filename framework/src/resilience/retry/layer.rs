use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower::ServiceExt;
use tower::retry::backoff::{Backoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::rng::HasherRng;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{Buffered, Replay, ReplayBody, buffer};
use super::config::RetryConfig;
use crate::BoxError;
use crate::resilience::deadline::Deadline;
use crate::section::{Section, ValidationError};
use crate::wire::headers::is_not_sent;
use crate::wire::{grpc_status, is_connect_error};

/// Retries calls to one target within a shared budget. Clones share the budget.
#[derive(Clone)]
pub struct RetryLayer {
    shared: Arc<Shared>,
}

struct Shared {
    target: String,
    /// Replaced whole by [`RetryLayer::set_config`] (a config reload); each call reads it once.
    policy: ArcSwap<Policy>,
}

/// One retry config with its budget and backoff.
struct Policy {
    config: RetryConfig,
    budget: TpsBudget,
    backoff: ExponentialBackoffMaker<HasherRng>,
}

impl Policy {
    fn new(config: &RetryConfig) -> Result<Self, ValidationError> {
        config.validate()?;
        let backoff = ExponentialBackoffMaker::new(
            config.backoff_min,
            config.backoff_max,
            config.jitter,
            HasherRng::default(),
        )
        .map_err(|e| ValidationError::new("backoff_min", e.to_string()))?;
        Ok(Self {
            config: config.clone(),
            budget: TpsBudget::new(
                config.budget_window,
                config.budget_min_per_sec,
                config.budget_ratio,
            ),
            backoff,
        })
    }
}

impl std::fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryLayer")
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

impl RetryLayer {
    /// Retries for calls to `target` (used as a metric label), checking `config` first.
    pub fn new(target: impl Into<String>, config: &RetryConfig) -> Result<Self, ValidationError> {
        Ok(Self {
            shared: Arc::new(Shared {
                target: target.into(),
                policy: ArcSwap::from_pointee(Policy::new(config)?),
            }),
        })
    }

    /// Replaces the policy of this layer and every service it built, as a config reload
    /// does; calls already running finish with the old one. An unchanged config keeps the
    /// budget; a changed one starts a fresh budget.
    ///
    /// ```
    /// use truss::resilience::retry::{RetryConfig, RetryLayer};
    ///
    /// let layer = RetryLayer::new("user", &RetryConfig::default()).unwrap();
    /// let fewer = RetryConfig { max_attempts: 2, ..RetryConfig::default() };
    /// layer.set_config(&fewer).unwrap();
    /// assert_eq!(layer.config().max_attempts, 2);
    /// ```
    pub fn set_config(&self, config: &RetryConfig) -> Result<(), ValidationError> {
        if self.shared.policy.load().config != *config {
            self.shared.policy.store(Arc::new(Policy::new(config)?));
        }
        Ok(())
    }

    /// The policy in force.
    pub fn config(&self) -> RetryConfig {
        self.shared.policy.load().config.clone()
    }

    /// A handle that does not keep the layer's services alive.
    pub(crate) fn downgrade(&self) -> WeakRetry {
        WeakRetry(Arc::downgrade(&self.shared))
    }
}

/// A [`RetryLayer`] that may be gone.
pub(crate) struct WeakRetry(std::sync::Weak<Shared>);

impl WeakRetry {
    pub(crate) fn upgrade(&self) -> Option<RetryLayer> {
        self.0.upgrade().map(|shared| RetryLayer { shared })
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service built by [`RetryLayer`].
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<Request<B>> for Retry<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: ReplayBody + Unpin,
    B::Error: Into<BoxError>,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<R>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Keep the service that was driven to readiness for the first attempt.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(run(inner, req, self.shared.clone()))
    }
}

fn record(shared: &Shared, decision: &'static str) {
    metrics::counter!(
        "truss_retry_decisions_total",
        "target" => shared.target.clone(),
        "decision" => decision
    )
    .increment(1);
}

async fn run<S, B, R>(
    mut inner: S,
    req: Request<B>,
    shared: Arc<Shared>,
) -> Result<Response<R>, BoxError>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
    B: ReplayBody + Unpin,
    B::Error: Into<BoxError>,
{
    let policy = shared.policy.load_full();
    policy.budget.deposit();
    let config = &policy.config;
    if !config.enabled || config.max_attempts <= 1 {
        return inner.call(req).await.map_err(Into::into);
    }
    let (parts, body) = req.into_parts();
    let (chunks, trailers) = match buffer(body, config.max_body).await? {
        Buffered::Whole { chunks, trailers } => (chunks, trailers),
        Buffered::Partial(replay) => {
            // Too large to keep: sent once.
            let req = Request::from_parts(parts, B::from_replay(replay));
            inner.ready().await.map(|_| ()).map_err(Into::into)?;
            return inner.call(req).await.map_err(Into::into);
        }
    };
    let deadline = parts
        .extensions
        .get::<Deadline>()
        .copied()
        .or_else(Deadline::current);
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    let mut backoff = policy.backoff.clone().make_backoff();
    let mut attempt = 1;
    loop {
        let req = Request::from_parts(
            parts.clone(),
            B::from_replay(Replay::buffered(&chunks, trailers.as_ref())),
        );
        // Bounded by the deadline: attempts wait for an instance in the balancer's queue.
        let ready = async { inner.ready().await.map(|_| ()).map_err(Into::into) };
        let ready = match deadline {
            Some(d) => tokio::time::timeout_at(d.instant(), ready)
                .await
                .unwrap_or_else(|_| Err(deadline_passed())),
            None => ready.await,
        };
        let result = match ready {
            Ok(()) => inner.call(req).await.map_err(Into::into),
            Err(e) => Err(e),
        };
        if !retryable(&result, idempotent, config) {
            if failed(&result) {
                record(&shared, "not_retryable");
            }
            return result;
        }
        if attempt >= config.max_attempts {
            record(&shared, "attempts_exhausted");
            return result;
        }
        let sleep = backoff.next_backoff();
        if deadline.is_some_and(|d| sleep.deadline() >= d.instant()) {
            record(&shared, "no_time_left");
            return result;
        }
        if !policy.budget.withdraw() {
            record(&shared, "budget_exhausted");
            return result;
        }
        record(&shared, "retried");
        sleep.await;
        attempt += 1;
    }
}

/// A call whose deadline passed while it waited to be sent.
fn deadline_passed() -> BoxError {
    Box::new(tonic::Status::deadline_exceeded(
        "deadline exceeded before the call could be sent",
    ))
}

/// Whether a result is a failure (retryable or not): an error, a 5xx, a gRPC error status.
fn failed<R>(result: &Result<Response<R>, BoxError>) -> bool {
    match result {
        Err(_) => true,
        Ok(resp) => {
            resp.status().is_server_error()
                || grpc_status(resp.headers()).is_some_and(|code| code != tonic::Code::Ok)
        }
    }
}

/// Whether a result may be retried.
fn retryable<R>(
    result: &Result<Response<R>, BoxError>,
    idempotent: bool,
    config: &RetryConfig,
) -> bool {
    match result {
        Ok(resp) => {
            if let Some(code) = grpc_status(resp.headers()) {
                return config.grpc_codes.contains(&(code as i32));
            }
            idempotent && config.http_statuses.contains(&resp.status().as_u16())
        }
        Err(error) => {
            if let Some(status) = error.downcast_ref::<tonic::Status>() {
                // Refused here before being sent (an open breaker): refused again at once.
                if is_not_sent(status) {
                    return false;
                }
                return config.grpc_codes.contains(&(status.code() as i32));
            }
            is_connect_error(error.as_ref()) || idempotent
        }
    }
}
