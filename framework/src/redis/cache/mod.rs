//! Cache-aside on Redis: [`Cache::get_or_load`] answers from Redis (or an in-process L1)
//! and calls the loader only on a miss, once per key however many callers miss together.

mod codec;
mod flight;
mod l1;

use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

pub use codec::{Codec, Json, Prost};

use self::codec::Entry;
use self::flight::{Flights, Role, Waited};
use self::l1::L1;
use super::config::CacheConfig;
use super::{Redis, RedisError};
use crate::resilience::deadline::Deadline;

/// Where an answer came from: the `result` label of `truss_cache_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    HitL1,
    Hit,
    NegativeHit,
    Miss,
    Bypass,
}

impl Source {
    const ALL: [Source; 5] = [
        Source::HitL1,
        Source::Hit,
        Source::NegativeHit,
        Source::Miss,
        Source::Bypass,
    ];

    fn label(self) -> &'static str {
        match self {
            Source::HitL1 => "hit_l1",
            Source::Hit => "hit",
            Source::NegativeHit => "negative_hit",
            Source::Miss => "miss",
            Source::Bypass => "bypass",
        }
    }
}

/// A finished lookup, shared with the callers that waited for it.
struct Done<V, E> {
    result: Result<Option<V>, E>,
    source: Source,
}

/// What a lookup in Redis found.
enum Found<V> {
    Entry(Entry<V>),
    Missing,
    Unavailable,
}

/// A cache-aside cache of `V` by `K` in Redis, stored with the codec `C` ([`Json`] by
/// default, or [`Prost`]), with an optional in-process L1 in front.
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use truss::redis::{Cache, Redis};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct User { id: u64, name: String }
///
/// async fn load_user(id: u64) -> Result<Option<User>, truss::Error> {
///     Ok(Some(User { id, name: "ada".into() }))   // the database, in a real service
/// }
///
/// # async fn demo(config: truss::Config) -> Result<(), truss::Error> {
/// let redis = Redis::connect(&config.redis).await?;
/// let users: Cache<u64, User> = Cache::new(redis, "user", &config.redis.cache);
/// let user = users.get_or_load(&7, || load_user(7)).await?;   // Redis key `user:7`
/// users.delete(&7).await?;                                     // after changing user 7
/// # let _ = user; Ok(()) }
/// ```
///
/// * **Hits** come from the L1 (when `[redis.cache.l1] enabled`), else from Redis.
/// * **Misses** call the loader once per key in this process: concurrent callers of the
///   same key wait for the first one's result (singleflight), each until its own request
///   deadline. A waiter whose deadline passes gets `E::from(RedisError::DeadlineExceeded)`
///   (504 as a `truss::Error`), which is why `E: From<RedisError>`; a loader error is
///   handed to every waiter, which is why `E: Clone`. If the loading caller is cancelled,
///   a waiter takes over and calls its own loader.
/// * **Values** are stored for `ttl`, **"not found"** (`Ok(None)`) for `negative_ttl`, both
///   jittered by `± jitter`. Errors are never stored.
/// * **Redis down** (breaker open, refused, or no answer within `timeout`, 100 ms by
///   default): the cache is bypassed, the loader answers (still once per key at a time),
///   nothing is an error.
/// * **[`delete`](Self::delete)** removes the key from this L1 and from Redis, and announces
///   it on `invalidation_channel` so the caches of the same name in other instances drop
///   it from their L1. Pub/sub is at most once: if an announcement is lost, another
///   instance can serve the old value from its L1 for at most `l1.ttl`; every
///   (re)subscription drops the whole L1 for that reason.
///
/// Delete after writing the source of truth. As with any cache-aside, a load that read the
/// old value before the write and stores it after the delete leaves it cached until its TTL.
///
/// Metrics: `truss_cache_requests_total{cache, result}` (`hit_l1`, `hit`,
/// `negative_hit`, `miss`, `bypass`; waiters count as what the caller they waited for
/// found, or `miss` when their deadline passed first) and `truss_cache_loads_total{cache, result}` (`ok`, `error`: loader calls). The
/// Redis commands count in `truss_client_*` as `cache_get`, `cache_set` and `cache_delete`.
pub struct Cache<K: ?Sized, V, C = Json> {
    inner: Arc<Inner<V>>,
    types: PhantomData<fn(&K) -> C>,
}

impl<K: ?Sized, V, C> Clone for Cache<K, V, C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            types: PhantomData,
        }
    }
}

impl<K: ?Sized, V, C> std::fmt::Debug for Cache<K, V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.name)
            .field("l1", &self.inner.l1.is_some())
            .finish_non_exhaustive()
    }
}

struct Inner<V> {
    redis: Redis,
    name: &'static str,
    config: CacheConfig,
    l1: Option<L1<V>>,
    /// Shared, type-erased: the loader's error type is per call.
    flights: Flights<Arc<dyn std::any::Any + Send + Sync>>,
    requests: [metrics::Counter; 5],
    loads_ok: metrics::Counter,
    loads_error: metrics::Counter,
    /// Whether an error reply to `GET` was logged at `warn` since the last good one: a
    /// misconfigured Redis (`NOAUTH`, `NOPERM`) logs once, not on every request.
    warned: AtomicBool,
    /// Dropped with the cache: ends the invalidation subscriber.
    _stop: Option<oneshot::Sender<()>>,
}

impl<K, V, C> Cache<K, V, C>
where
    K: Display + ?Sized,
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    /// A cache named `name` (the Redis key prefix, `{name}:{key}`, and the `cache` label of
    /// its metrics) on `redis`, with `config` (usually `&config.redis.cache`, expected
    /// valid: a jitter out of range is clamped). Keys are not escaped: give each cache a
    /// name without `:`, or cache `a` with key `b:c` and cache `a:b` with key `c` would
    /// share an entry. Caches of one name share entries and invalidations across every
    /// process on the same Redis (that is how a service's instances share them): give the
    /// caches of different services different names (`orders_user`, not `user`). With `l1.enabled`, it also starts the invalidation subscriber (a task
    /// on the current tokio runtime, ended when the last clone of the cache is dropped;
    /// outside a runtime the L1 relies on its TTL alone).
    pub fn new(redis: Redis, name: &'static str, config: &CacheConfig) -> Self {
        let _ = crate::observe::metrics::install();
        let mut config = config.clone();
        config.jitter = config.jitter.clamp(0.0, 0.99);
        let l1 = config.l1.enabled.then(|| l1::build(&config));
        let stop = l1
            .as_ref()
            .and_then(|l1| subscribe(&redis, name, &config, l1));
        let request = |source: Source| metrics::counter!("truss_cache_requests_total", "cache" => name, "result" => source.label());
        let load = |result: &'static str| metrics::counter!("truss_cache_loads_total", "cache" => name, "result" => result);
        Self {
            inner: Arc::new(Inner {
                redis,
                name,
                config,
                l1,
                flights: Flights::default(),
                requests: Source::ALL.map(request),
                loads_ok: load("ok"),
                loads_error: load("error"),
                warned: AtomicBool::new(false),
                _stop: stop,
            }),
            types: PhantomData,
        }
    }

    /// The value for `key`: from the L1, else Redis, else `loader` (whose answer is then
    /// stored). `Ok(None)` is "not found", remembered for `negative_ttl`. Redis being down
    /// is never an error here: the loader answers. See [`Cache`] for who calls the loader
    /// when many callers miss together.
    pub async fn get_or_load<F, Fut, E>(&self, key: &K, loader: F) -> Result<Option<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
        E: From<RedisError> + Clone + Send + Sync + 'static,
    {
        let redis_key = self.redis_key(key);
        if let Some(l1) = &self.inner.l1
            && let Some(entry) = l1.get(&redis_key).await
        {
            self.count(Source::HitL1);
            return Ok(entry);
        }
        let kind = std::any::TypeId::of::<Done<V, E>>();
        let deadline = Deadline::current().map(|d| d.instant());
        loop {
            let rx = match self.inner.flights.join(kind, &redis_key) {
                Role::Leader(lead) => {
                    let done = self.lead(&redis_key, loader).await;
                    self.count(done.source);
                    let result = done.result.clone();
                    lead.finish(Arc::new(done));
                    return result;
                }
                Role::Follower(rx) => rx,
            };
            match flight::wait(rx, deadline).await {
                Waited::Done(shared) => {
                    if let Ok(done) = shared.downcast::<Done<V, E>>() {
                        self.count(done.source);
                        return done.result.clone();
                    }
                }
                Waited::Abandoned => {}
                Waited::TimedOut => {
                    self.count(Source::Miss);
                    return Err(E::from(RedisError::DeadlineExceeded));
                }
            }
        }
    }

    /// Removes `key` from this L1 and from Redis, and announces it on the invalidation
    /// channel (one pipelined round trip, within `timeout`). Call it after changing the
    /// value at its source.
    /// An error (Redis down) leaves the Redis entry until its TTL, and other instances'
    /// L1 entries until `l1.ttl`.
    pub async fn delete(&self, key: &K) -> Result<(), RedisError> {
        let redis_key = self.redis_key(key);
        if let Some(l1) = &self.inner.l1 {
            l1.invalidate(&redis_key).await;
        }
        let mut pipe = ::redis::pipe();
        pipe.del(&redis_key)
            .ignore()
            .publish(&self.inner.config.invalidation_channel, &redis_key)
            .ignore();
        let budget = Some(self.inner.config.timeout);
        (self.inner.redis)
            .pipeline_within("cache_delete", &pipe, budget)
            .await
    }

    /// The cache's name: its key prefix and metric label.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// The Redis key of `key`: `{name}:{key}`.
    pub fn redis_key(&self, key: &K) -> String {
        format!("{}:{key}", self.inner.name)
    }

    /// The leader's part: Redis, then the loader on a miss (storing its answer).
    async fn lead<F, Fut, E>(&self, redis_key: &str, loader: F) -> Done<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let (source, result) = match self.fetch(redis_key).await {
            Found::Entry(Entry::Value(value)) => (Source::Hit, Ok(Some(value))),
            Found::Entry(Entry::NotFound) => (Source::NegativeHit, Ok(None)),
            Found::Missing => {
                let result = self.load(loader).await;
                if let Ok(value) = &result {
                    self.store(redis_key, value).await;
                }
                (Source::Miss, result)
            }
            Found::Unavailable => (Source::Bypass, self.load(loader).await),
        };
        if let (Some(l1), Ok(value)) = (&self.inner.l1, &result)
            && (value.is_some() || !self.inner.config.negative_ttl.is_zero())
        {
            l1.insert(redis_key.to_owned(), value.clone()).await;
        }
        Done { result, source }
    }

    /// The entry at `redis_key`. An entry that does not decode is a miss (and is
    /// overwritten); an error reply is treated like an unavailable Redis.
    async fn fetch(&self, redis_key: &str) -> Found<V> {
        let mut get = ::redis::cmd("GET");
        get.arg(redis_key);
        match self
            .inner
            .redis
            .query_within::<Option<Vec<u8>>>("cache_get", &get, self.inner.config.timeout)
            .await
            .inspect(|_| self.inner.warned.store(false, Ordering::Relaxed))
        {
            Ok(Some(bytes)) => match codec::decode::<V, C>(&bytes) {
                Ok(entry) => Found::Entry(entry),
                Err(e) => {
                    tracing::debug!(key = redis_key, error = %e, "cache: undecodable entry");
                    Found::Missing
                }
            },
            Ok(None) => Found::Missing,
            Err(e) => {
                if e.redis_answered() && !self.inner.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(key = redis_key, error = %e, "cache: GET failed (logged once until one succeeds; the metrics count each)");
                }
                Found::Unavailable
            }
        }
    }

    /// Calls `loader`, counting it.
    async fn load<F, Fut, E>(&self, loader: F) -> Result<Option<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let result = loader().await;
        match &result {
            Ok(_) => self.inner.loads_ok.increment(1),
            Err(_) => self.inner.loads_error.increment(1),
        }
        result
    }

    /// Stores a loaded answer with its jittered TTL; a failure only costs a later miss.
    async fn store(&self, redis_key: &str, value: &Option<V>) {
        let config = &self.inner.config;
        let (entry, ttl) = match value {
            Some(value) => (Entry::Value(value), config.ttl),
            None if config.negative_ttl.is_zero() => return,
            None => (Entry::NotFound, config.negative_ttl),
        };
        let bytes = match codec::encode::<V, C>(entry) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(key = redis_key, error = %e, "cache: cannot encode value");
                return;
            }
        };
        let millis = jittered(ttl, config.jitter).as_millis().max(1);
        let mut set = ::redis::cmd("SET");
        set.arg(redis_key)
            .arg(bytes)
            .arg("PX")
            .arg(u64::try_from(millis).unwrap_or(u64::MAX));
        let stored = self
            .inner
            .redis
            .query_within::<()>("cache_set", &set, config.timeout);
        if let Err(e) = stored.await {
            tracing::debug!(key = redis_key, error = %e, "cache: SET failed");
        }
    }

    fn count(&self, source: Source) {
        let index = Source::ALL.iter().position(|s| *s == source).unwrap_or(0);
        self.inner.requests[index].increment(1);
    }
}

/// Starts the invalidation subscriber of the cache `name`; its stop handle.
fn subscribe<V: Clone + Send + Sync + 'static>(
    redis: &Redis,
    name: &str,
    config: &CacheConfig,
    l1: &L1<V>,
) -> Option<oneshot::Sender<()>> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            cache = name,
            "cache: no tokio runtime, L1 invalidation is off"
        );
        return None;
    };
    let (stop, stopped) = oneshot::channel();
    let subscriber = l1::Subscriber {
        client: redis.inner.client.clone(),
        channel: config.invalidation_channel.clone(),
        prefix: format!("{name}:"),
        l1: l1.clone(),
        connect_timeout: redis.inner.config.connect_timeout,
    };
    runtime.spawn(subscriber.run(stopped));
    Some(stop)
}

/// `ttl × (1 ± jitter)`, uniformly.
fn jittered(ttl: Duration, jitter: f64) -> Duration {
    ttl.mul_f64(1.0 + jitter * (2.0 * crate::random::unit() - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_spread() {
        let ttl = Duration::from_secs(60);
        let (mut low, mut high) = (ttl, ttl);
        for _ in 0..10_000 {
            let t = jittered(ttl, 0.1);
            assert!(
                t >= Duration::from_secs(54) && t <= Duration::from_secs(66),
                "{t:?}"
            );
            low = low.min(t);
            high = high.max(t);
        }
        // Spread over the range, not stuck at one end.
        assert!(low < Duration::from_secs(55) && high > Duration::from_secs(65));
        assert_eq!(jittered(ttl, 0.0), ttl);
    }
}
