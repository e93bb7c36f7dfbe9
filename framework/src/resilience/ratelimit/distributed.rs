use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::bucket::RedisRule;
use super::layer::limited;
use super::limiter::{Limiter, RequestKey};
use super::rule::{Backend, RateLimitRule};
use crate::labels::FirstLabel;
use crate::redis::Redis;
use crate::resilience::counters::{DecisionCounters, Pair};
use crate::section::ValidationError;
use crate::wire::reject::reject;
use crate::wire::{GuardedFuture, is_grpc, route_label};

/// One rule of [`RedisRateLimits`], where its buckets live.
#[derive(Debug)]
enum Rule {
    Local(Limiter),
    Redis(Arc<RedisRule>),
}

impl Rule {
    fn new(
        name: &str,
        rule: &RateLimitRule,
        redis: &Redis,
        namespace: &str,
    ) -> Result<Self, ValidationError> {
        Ok(match rule.backend {
            Backend::Local => Rule::Local(Limiter::new(rule)?),
            Backend::Redis => Rule::Redis(Arc::new(RedisRule::new(name, rule, redis, namespace)?)),
        })
    }
}

/// Every limit of one listener when some of them (`backend = "redis"`) keep their buckets in
/// Redis; the others stay in this process, as in [`RateLimits`](super::RateLimits).
#[derive(Debug)]
pub struct RedisRateLimits {
    global: Option<Rule>,
    routes: HashMap<String, Rule>,
}

impl RedisRateLimits {
    /// Builds the limits; an invalid rule is an error naming its route. Bucket keys are
    /// `truss:rl:<namespace>:<rule>:<key>` (`<rule>` is `global` or the route label): every
    /// instance that uses the same `namespace` shares them. The app's namespace is
    /// `<service>/<transport>` (`orders/http`).
    pub fn new(
        global: Option<&RateLimitRule>,
        routes: &BTreeMap<String, RateLimitRule>,
        redis: &Redis,
        namespace: &str,
    ) -> Result<Self, ValidationError> {
        let global = global
            .map(|rule| Rule::new("global", rule, redis, namespace).map_err(|e| e.within("global")))
            .transpose()?;
        let mut built = HashMap::with_capacity(routes.len());
        for (route, rule) in routes {
            let built_rule = Rule::new(route, rule, redis, namespace)
                .map_err(|e| e.within(&format!("routes.\"{route}\"")))?;
            built.insert(route.clone(), built_rule);
        }
        Ok(Self {
            global,
            routes: built,
        })
    }
}

/// Applies [`RedisRateLimits`]: the same 429 `RATE_LIMITED` (gRPC `RESOURCE_EXHAUSTED`, with
/// `Retry-After`) as [`RateLimitLayer`](super::RateLimitLayer), decided in Redis for the
/// rules kept there. Clones share state.
#[derive(Debug, Clone)]
pub struct RedisRateLimitLayer {
    limits: Arc<RedisRateLimits>,
    counters: Arc<DecisionCounters>,
}

impl RedisRateLimitLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: RedisRateLimits) -> Self {
        Self {
            limits: Arc::new(limits),
            counters: Arc::new(DecisionCounters::new("ratelimit")),
        }
    }
}

impl<S> Layer<S> for RedisRateLimitLayer {
    type Service = RedisRateLimit<S>;

    fn layer(&self, inner: S) -> RedisRateLimit<S> {
        RedisRateLimit {
            inner,
            limits: self.limits.clone(),
            counters: self.counters.clone(),
            pair: FirstLabel::default(),
        }
    }
}

/// The service built by [`RedisRateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RedisRateLimit<S> {
    inner: S,
    limits: Arc<RedisRateLimits>,
    counters: Arc<DecisionCounters>,
    /// This route's decision counters, resolved on its first request.
    pair: FirstLabel<Arc<Pair>>,
}

/// The Redis decisions one request waits for: the global rule's and its route's.
type Pending = [Option<(Arc<RedisRule>, RequestKey)>; 2];

impl<S, B> Service<Request<B>> for RedisRateLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = RedisRateLimitFuture<S::Future, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = route_label(&req);
        let pair = self.counters.pair_for(&self.pair, route);
        let rules = [self.limits.global.as_ref(), self.limits.routes.get(route)];
        let mut pending: Pending = [None, None];
        for (slot, rule) in pending.iter_mut().zip(rules) {
            match rule {
                Some(Rule::Local(limiter)) => {
                    if let Err(wait) = limiter.check(&req) {
                        pair.record(false);
                        return RedisRateLimitFuture::Decided(GuardedFuture::rejected(
                            rate_limited(&req, wait),
                        ));
                    }
                }
                Some(Rule::Redis(rule)) => *slot = Some((rule.clone(), rule.key_of(&req))),
                None => {}
            }
        }
        if pending.iter().all(Option::is_none) {
            pair.record(true);
            return RedisRateLimitFuture::Decided(GuardedFuture::admitted(
                self.inner.call(req),
                (),
            ));
        }
        // The ready service serves this request; its clone waits for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        RedisRateLimitFuture::Deciding(Box::pin(decide_then_call(pending, pair, inner, req)))
    }
}

/// Waits for the Redis decisions, then rejects or calls `inner`.
async fn decide_then_call<S, B>(
    pending: Pending,
    pair: Arc<Pair>,
    mut inner: S,
    req: Request<B>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    for (rule, key) in pending.into_iter().flatten() {
        if let Err(wait) = rule.decide(key).await {
            pair.record(false);
            return Ok(rate_limited(&req, wait));
        }
    }
    pair.record(true);
    inner.call(req).await
}

fn rate_limited<B>(req: &Request<B>, wait: Duration) -> Response<Body> {
    let r = limited(wait);
    reject(
        is_grpc(req.headers()),
        r.status,
        r.reason,
        r.message,
        r.retry_after,
    )
}

/// The response future of [`RedisRateLimit`]: decided at once (no rule of the request is in
/// Redis, or a local one rejected it), or waiting for Redis first.
#[pin_project(project = Proj)]
pub enum RedisRateLimitFuture<F, E> {
    /// Decided without Redis.
    Decided(#[pin] GuardedFuture<F, ()>),
    /// Asking Redis, then calling the inner service.
    Deciding(Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>),
}

impl<F, E> std::fmt::Debug for RedisRateLimitFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisRateLimitFuture::Decided(_) => "RedisRateLimitFuture::Decided",
            RedisRateLimitFuture::Deciding(_) => "RedisRateLimitFuture::Deciding",
        })
    }
}

impl<F, E> Future for RedisRateLimitFuture<F, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Decided(future) => future.poll(cx),
            Proj::Deciding(future) => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::RedisConfig;
    use tower::ServiceExt;

    async fn limited_by(url: String, rule: RateLimitRule) -> axum::Router {
        let config = RedisConfig {
            url: Some(url),
            ..RedisConfig::default()
        };
        let redis = Redis::connect(&config).await.unwrap();
        let limits = RedisRateLimits::new(Some(&rule), &BTreeMap::new(), &redis, "t/http").unwrap();
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .layer(RedisRateLimitLayer::new(limits))
    }

    /// Statuses of `n` requests, and the slowest answer.
    async fn statuses(app: &axum::Router, n: usize) -> (Vec<u16>, Duration) {
        let mut out = Vec::new();
        let mut slowest = Duration::ZERO;
        for _ in 0..n {
            let start = std::time::Instant::now();
            let req = Request::get("/").body(Body::empty()).unwrap();
            let response = app.clone().oneshot(req).await.unwrap();
            slowest = slowest.max(start.elapsed());
            out.push(response.status().as_u16());
        }
        (out, slowest)
    }

    fn rule() -> RateLimitRule {
        // Two instances share 0.01/s with a burst of 8: this one alone allows 4.
        RateLimitRule {
            rps: 0.01,
            burst: Some(8),
            backend: Backend::Redis,
            instances: 2,
            ..RateLimitRule::default()
        }
    }

    #[tokio::test]
    async fn redis_down_falls_back_to_this_instances_share() {
        // Nothing listens on port 1.
        let app = limited_by("redis://127.0.0.1:1/0".to_owned(), rule()).await;
        let (statuses, _) = statuses(&app, 6).await;
        assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    }

    #[tokio::test]
    async fn redis_slower_than_the_budget_falls_back_within_the_decision() {
        // Accepts connections and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}/0", silent.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let app = limited_by(url, rule()).await;
        let (statuses, slowest) = statuses(&app, 6).await;
        assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
        // Each decision waited at most about the 5 ms budget (generous bound for busy CI).
        assert!(slowest < Duration::from_millis(500), "{slowest:?}");
        held.abort();
    }
}
