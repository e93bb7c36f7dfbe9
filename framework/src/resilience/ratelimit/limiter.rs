use crate::resilience::clock::nanos;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use governor::Quota;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use http::{HeaderValue, Request};

use super::rule::{Backend, KeySpec, RateLimitRule};
use crate::resilience::TokioClock;
use crate::section::{Section, ValidationError};

type Direct = governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;
type Keyed = governor::RateLimiter<
    RequestKey,
    DashMapStateStore<RequestKey>,
    TokioClock,
    NoOpMiddleware<Duration>,
>;

/// What a keyed limiter counts a request under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RequestKey {
    Ip(IpAddr),
    Value(HeaderValue),
    Missing,
}

enum Kind {
    Direct(Direct),
    Keyed {
        limiter: Keyed,
        spec: KeySpec,
        evict_every: Duration,
        next_evict: AtomicU64,
    },
}

/// The state of one [`RateLimitRule`].
pub struct Limiter {
    kind: Kind,
    clock: TokioClock,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("keys", &self.tracked_keys())
            .finish()
    }
}

impl Limiter {
    /// Builds the limiter for `rule`, checking it first.
    ///
    /// A rule with `backend = "redis"` is an error: a `Limiter` keeps its buckets in this
    /// process ([`RedisRateLimits`](super::RedisRateLimits) serves those rules).
    pub fn new(rule: &RateLimitRule) -> Result<Self, ValidationError> {
        rule.validate()?;
        if rule.backend == Backend::Redis {
            return Err(ValidationError::new(
                "backend",
                "\"redis\" needs the Redis rate limit layer, which the app builds from `[redis]`; \
                 a local rate limit layer keeps its buckets in this process",
            ));
        }
        let burst = NonZeroU32::new(rule.effective_burst())
            .ok_or_else(|| ValidationError::new("burst", "must be at least 1"))?;
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rule.rps))
            .ok_or_else(|| ValidationError::new("rps", "is too large"))?
            .allow_burst(burst);
        let clock = TokioClock::default();
        let kind = match &rule.key {
            KeySpec::Global => Kind::Direct(governor::RateLimiter::direct_with_clock(quota, clock)),
            spec => Kind::Keyed {
                limiter: governor::RateLimiter::new(quota, DashMapStateStore::default(), clock),
                spec: spec.clone(),
                evict_every: rule.evict_interval,
                next_evict: AtomicU64::new(nanos(rule.evict_interval)),
            },
        };
        Ok(Self { kind, clock })
    }

    /// Takes a token for `req`, or says how long until one is available.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), Duration> {
        let now = self.clock.now();
        match &self.kind {
            Kind::Direct(limiter) => limiter.check().map_err(|no| no.wait_time_from(now)),
            Kind::Keyed {
                limiter,
                spec,
                evict_every,
                next_evict,
            } => {
                evict_when_due(limiter, *evict_every, next_evict, now);
                let key = request_key(spec, req);
                limiter.check_key(&key).map_err(|no| no.wait_time_from(now))
            }
        }
    }

    /// What `req` is counted under by this limiter (always `Missing` for a global one).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn key_of<B>(&self, req: &Request<B>) -> RequestKey {
        match &self.kind {
            Kind::Direct(_) => RequestKey::Missing,
            Kind::Keyed { spec, .. } => request_key(spec, req),
        }
    }

    /// [`check`](Self::check) for a key taken earlier with [`key_of`](Self::key_of), for
    /// decisions made after the request has moved on (the Redis backend's fallback).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn check_key(&self, key: &RequestKey) -> Result<(), Duration> {
        let now = self.clock.now();
        match &self.kind {
            Kind::Direct(limiter) => limiter.check().map_err(|no| no.wait_time_from(now)),
            Kind::Keyed {
                limiter,
                evict_every,
                next_evict,
                ..
            } => {
                evict_when_due(limiter, *evict_every, next_evict, now);
                limiter.check_key(key).map_err(|no| no.wait_time_from(now))
            }
        }
    }

    /// How many keys a keyed limiter currently remembers (0 for a global one).
    pub fn tracked_keys(&self) -> usize {
        match &self.kind {
            Kind::Direct(_) => 0,
            Kind::Keyed { limiter, .. } => limiter.len(),
        }
    }
}

/// Forgets idle keys once every `every`; the first caller past the due time does it.
#[inline]
fn evict_when_due(limiter: &Keyed, every: Duration, next_evict: &AtomicU64, now: Duration) {
    let due = next_evict.load(Ordering::Relaxed);
    if nanos(now) >= due
        && next_evict
            .compare_exchange(
                due,
                nanos(now + every),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

fn request_key<B>(spec: &KeySpec, req: &Request<B>) -> RequestKey {
    match spec {
        KeySpec::Global => RequestKey::Missing,
        KeySpec::ClientIp => req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(RequestKey::Missing, |ConnectInfo(addr)| {
                RequestKey::Ip(addr.ip())
            }),
        KeySpec::Header(name) => req
            .headers()
            .get(name)
            .map_or(RequestKey::Missing, |v| RequestKey::Value(v.clone())),
    }
}

/// Every limit one [`RateLimitLayer`](super::RateLimitLayer) applies: an optional global one
/// and one per route label (see [`route_label`](crate::wire::route_label)).
#[derive(Debug, Default)]
pub struct RateLimits {
    global: Option<Limiter>,
    routes: HashMap<String, Limiter>,
}

impl RateLimits {
    /// Builds the limits; an invalid rule is an error naming its route.
    pub fn new(
        global: Option<&RateLimitRule>,
        routes: &BTreeMap<String, RateLimitRule>,
    ) -> Result<Self, ValidationError> {
        let global = global
            .map(|rule| Limiter::new(rule).map_err(|e| e.within("global")))
            .transpose()?;
        let mut built = HashMap::with_capacity(routes.len());
        for (route, rule) in routes {
            let limiter =
                Limiter::new(rule).map_err(|e| e.within(&format!("routes.\"{route}\"")))?;
            built.insert(route.clone(), limiter);
        }
        Ok(Self {
            global,
            routes: built,
        })
    }

    /// Whether any limit is configured.
    pub fn is_empty(&self) -> bool {
        self.global.is_none() && self.routes.is_empty()
    }

    /// The limiter for a route label, if one is configured.
    pub fn route(&self, route: &str) -> Option<&Limiter> {
        self.routes.get(route)
    }

    /// The global limiter, if configured.
    pub fn global(&self) -> Option<&Limiter> {
        self.global.as_ref()
    }

    /// Checks the global limit, then the route's.
    pub fn check<B>(&self, route: &str, req: &Request<B>) -> Result<(), Duration> {
        if let Some(global) = &self.global {
            global.check(req)?;
        }
        match self.routes.get(route) {
            Some(limiter) => limiter.check(req),
            None => Ok(()),
        }
    }
}
