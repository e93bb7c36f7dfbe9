use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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
use crate::wire::{grpc_status, is_connect_error};

/// Retries calls to one target within a shared budget. Clones share the budget.
#[derive(Clone)]
pub struct RetryLayer {
    shared: Arc<Shared>,
}

struct Shared {
    target: String,
    config: RetryConfig,
    budget: TpsBudget,
    backoff: ExponentialBackoffMaker<HasherRng>,
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
        config.validate()?;
        let backoff = ExponentialBackoffMaker::new(
            config.backoff_min,
            config.backoff_max,
            config.jitter,
            HasherRng::default(),
        )
        .map_err(|e| ValidationError::new("backoff_min", e.to_string()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                target: target.into(),
                config: config.clone(),
                budget: TpsBudget::new(
                    config.budget_window,
                    config.budget_min_per_sec,
                    config.budget_ratio,
                ),
                backoff,
            }),
        })
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
    shared.budget.deposit();
    let config = &shared.config;
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
    let mut backoff = shared.backoff.clone().make_backoff();
    let mut attempt = 1;
    loop {
        let req = Request::from_parts(
            parts.clone(),
            B::from_replay(Replay::buffered(&chunks, trailers.as_ref())),
        );
        let ready = inner.ready().await.map(|_| ()).map_err(Into::into);
        let result = match ready {
            Ok(()) => inner.call(req).await.map_err(Into::into),
            Err(e) => Err(e),
        };
        if !retryable(&result, idempotent, config) {
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
        if !shared.budget.withdraw() {
            record(&shared, "budget_exhausted");
            return result;
        }
        record(&shared, "retried");
        sleep.await;
        attempt += 1;
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
                return config.grpc_codes.contains(&(status.code() as i32));
            }
            is_connect_error(error.as_ref()) || idempotent
        }
    }
}
