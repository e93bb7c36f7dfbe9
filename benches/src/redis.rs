//! The Redis rows, against a real `redis-server` on loopback ([`RedisServer`], started by the
//! benchmark and killed when dropped; the rows are skipped when it is not installed).
//!
//! * Group `redis_ratelimit`: one request through the one-route router ([`base`]) with no
//!   limiter (`none`), behind a local global limit ([`RateLimitLayer`], `local`) and behind
//!   the same limit kept in Redis ([`RedisRateLimitLayer`], `backend = "redis"`, one
//!   `EVALSHA` of the GCRA script per request, `redis`). The limit never rejects (10⁹ per
//!   second); the Redis client is the app's for rate limits, without a breaker, and
//!   `redis_budget` is 1 s so that no decision falls back to the local share (a valgrind run
//!   is slow).
//! * Group `redis_cache`: one [`Cache::get_or_load`] hit of key [`ID`] (the value
//!   `(7, "user-7")`, JSON) from the in-process L1 (`hit_l1`), and from Redis with the L1
//!   off (`hit_redis`); and, as the floor of a Redis hit, a plain `GET` of the same entry on
//!   the raw connection ([`Redis::manager`]: no deadline, breaker, metrics, span or decoding;
//!   `get_plain`).
//!
//! [`check`] confirms afterwards, from the Prometheus recorder, that every measured decision
//! was Redis's and every measured hit was of the kind its row names.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::routing::RouterIntoService;
use tempfile::TempDir;
use tower::{Service, ServiceExt};
use truss::deps::redis::aio::ConnectionManager;
use truss::redis::{Cache, CacheConfig, L1Config, Redis, RedisConfig, RedisError, cmd, pipe};
use truss::resilience::{
    Backend, KeySpec, RateLimitLayer, RateLimitRule, RateLimits, RedisRateLimitLayer,
    RedisRateLimits,
};

use crate::variants::{base, request};

/// The rate-limit rows, by name; the first, no limiter, is the group's baseline.
pub const RATELIMIT_ROWS: &[&str] = &[
    "redis_ratelimit_none",
    "redis_ratelimit_local",
    "redis_ratelimit_redis",
];

/// The cache rows, by name; the first, the L1 hit, is the group's baseline.
pub const CACHE_ROWS: &[&str] = &[
    "redis_cache_hit_l1",
    "redis_cache_hit_redis",
    "redis_cache_get_plain",
];

/// Both groups: their name (the rows' common prefix) and rows.
pub const GROUPS: &[(&str, &[&str])] = &[
    ("redis_ratelimit", RATELIMIT_ROWS),
    ("redis_cache", CACHE_ROWS),
];

/// The key every cache row reads.
pub const ID: u64 = 7;
/// The key that finds out when the L1's invalidation subscriber is listening.
const PROBE: u64 = 1;
/// The cache without an L1, and the one with.
const CACHE: &str = "bench";
const CACHE_L1: &str = "bench_l1";

/// A `redis-server` on a free loopback port, in a temporary directory, without
/// persistence; killed when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts `redis-server` and waits until it answers `PING`; `None` when it is not
    /// installed. Panics when it is but does not answer within 5 s.
    pub fn start() -> Option<RedisServer> {
        let dir = tempfile::Builder::new()
            .prefix("truss-bench-redis")
            .tempdir()
            .expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..100 {
            if server.pong() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer PING on port {port}");
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn pong(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0; 7];
        conn.write_all(b"PING\r\n").is_ok()
            && conn.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the rows run against.
pub struct Fixture {
    none: Svc,
    local: Svc,
    redis: Svc,
    l1: Cache<u64, (u64, String)>,
    cache: Cache<u64, (u64, String)>,
    /// The cache's connection, ungoverned.
    raw: ConnectionManager,
    /// The Redis key of [`ID`]'s entry.
    key: String,
}

type Svc = RouterIntoService<Body>;

/// Loader calls: a hit never makes one.
static LOADS: AtomicU64 = AtomicU64::new(0);

/// The loader: user `id`'s row, as the SQL rows read it.
async fn load(id: u64) -> Result<Option<(u64, String)>, RedisError> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(Some((id, format!("user-{id}"))))
}

/// Connects to the Redis at `url`, builds the routers and caches, and fills both caches
/// with [`ID`] (the L1 once its invalidation subscriber listens, so that the subscription
/// does not empty it later).
pub async fn fixture(url: &str) -> Fixture {
    let config = RedisConfig {
        url: Some(url.to_owned()),
        ..RedisConfig::default()
    };
    // As the app does: the limits get a connection of their own, without a breaker.
    let mut limiter = config.clone();
    limiter.breaker.enabled = false;
    let limiter = Redis::connect(&limiter).await.expect("redis (limits)");
    let client = Redis::connect(&config).await.expect("redis (caches)");

    let unlimited = RateLimitRule {
        rps: 1e9,
        burst: Some(1_000_000_000),
        key: KeySpec::Global,
        redis_budget: Duration::from_secs(1),
        ..RateLimitRule::default()
    };
    let shared = RateLimitRule {
        backend: Backend::Redis,
        ..unlimited.clone()
    };
    let none = BTreeMap::new();
    let local = base().layer(RateLimitLayer::new(
        RateLimits::new(Some(&unlimited), &none).expect("local limits"),
    ));
    let limits =
        RedisRateLimits::new(Some(&shared), &none, &limiter, "bench/http").expect("redis limits");
    let redis = base().layer(RedisRateLimitLayer::new(limits));
    let service = |router: axum::Router| router.with_state(()).into_service::<Body>();

    let ttl = Duration::from_secs(3_600);
    let without_l1 = CacheConfig {
        ttl,
        ..CacheConfig::default()
    };
    let with_l1 = CacheConfig {
        l1: L1Config {
            enabled: true,
            capacity: 1_000,
            ttl,
        },
        ..without_l1.clone()
    };
    let cache = Cache::new(client.clone(), CACHE, &without_l1);
    let l1 = Cache::new(client.clone(), CACHE_L1, &with_l1);
    let raw = client.manager();
    until_subscribed(&l1, raw.clone(), &with_l1.invalidation_channel).await;
    for cache in [&cache, &l1] {
        let value = cache.get_or_load(&ID, || load(ID)).await;
        assert!(value.expect("load").is_some());
    }
    let key = cache.redis_key(&ID);
    let mut fixture = Fixture {
        none: service(base()),
        local: service(local),
        redis: service(redis),
        l1,
        cache,
        raw,
        key,
    };
    // Every row once: the script is loaded (`NOSCRIPT`), every metric registered.
    for (_, rows) in GROUPS {
        for row in *rows {
            ops(&mut fixture, row, 1).await;
        }
    }
    fixture
}

/// Waits until the invalidation subscriber of `l1` listens: until an entry that is no
/// longer in Redis, announced on the channel, is gone from the L1 too (or the subscription's
/// own clearing removed it).
async fn until_subscribed(
    l1: &Cache<u64, (u64, String)>,
    mut raw: ConnectionManager,
    channel: &str,
) {
    let key = l1.redis_key(&PROBE);
    for _ in 0..500 {
        l1.get_or_load(&PROBE, || load(PROBE)).await.expect("probe");
        let loads = LOADS.load(Ordering::Relaxed);
        pipe()
            .del(&key)
            .ignore()
            .publish(channel, &key)
            .ignore()
            .query_async::<()>(&mut raw)
            .await
            .expect("delete and announce the probe");
        tokio::time::sleep(Duration::from_millis(10)).await;
        l1.get_or_load(&PROBE, || load(PROBE)).await.expect("probe");
        if LOADS.load(Ordering::Relaxed) > loads {
            return;
        }
    }
    panic!("the L1's invalidation subscriber did not subscribe within 5 s");
}

/// `n` operations of `row`, one after the other.
pub async fn ops(fixture: &mut Fixture, row: &str, n: u64) {
    match row {
        "redis_ratelimit_none" => requests(&mut fixture.none, n).await,
        "redis_ratelimit_local" => requests(&mut fixture.local, n).await,
        "redis_ratelimit_redis" => requests(&mut fixture.redis, n).await,
        "redis_cache_hit_l1" => hits(&fixture.l1, n).await,
        "redis_cache_hit_redis" => hits(&fixture.cache, n).await,
        "redis_cache_get_plain" => plain_gets(&mut fixture.raw, &fixture.key, n).await,
        other => panic!("no Redis row {other}"),
    }
}

/// `n` requests through `svc`, each admitted.
async fn requests(svc: &mut Svc, n: u64) {
    for _ in 0..n {
        let resp = svc.ready().await.expect("ready").call(request()).await;
        let resp = resp.expect("response");
        assert!(resp.status().is_success(), "{}", resp.status());
        black_box(resp);
    }
}

/// `n` hits of [`ID`] in `cache`.
async fn hits(cache: &Cache<u64, (u64, String)>, n: u64) {
    for _ in 0..n {
        let value = cache.get_or_load(black_box(&ID), || load(ID)).await;
        black_box(value.expect("a hit"));
    }
}

/// `n` plain `GET`s of `key`.
async fn plain_gets(raw: &mut ConnectionManager, key: &str, n: u64) {
    for _ in 0..n {
        let bytes = cmd("GET")
            .arg(black_box(key))
            .query_async::<Option<Vec<u8>>>(raw)
            .await;
        black_box(bytes.expect("GET").expect("the entry"));
    }
}

/// What [`check`] compares: loader calls and the counter `row` must move.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    loads: u64,
    counted: u64,
}

/// The counts before measuring `row`.
pub fn counts(row: &str) -> Counts {
    Counts {
        loads: LOADS.load(Ordering::Relaxed),
        counted: expected_counter(row).map_or(0, |(name, labels)| counter(name, labels)),
    }
}

/// Panics unless the `n` operations of `row` since `before` were what the row names: no
/// loader call, and `n` more Redis decisions (`redis_ratelimit_redis`, none by the local
/// fallback), L1 hits or Redis hits.
pub fn check(row: &str, before: Counts, n: u64) {
    let after = counts(row);
    assert_eq!(after.loads, before.loads, "{row}: a hit called the loader");
    if let Some((name, labels)) = expected_counter(row) {
        assert_eq!(
            after.counted - before.counted,
            n,
            "{row}: {name}{labels:?} did not count every operation"
        );
    }
}

/// The counter each operation of `row` increments, where there is one to check.
fn expected_counter(row: &str) -> Option<(&'static str, &'static [&'static str])> {
    match row {
        "redis_ratelimit_redis" => Some((
            "truss_ratelimit_decisions_total",
            &[r#"backend="redis""#, r#"decision="admitted""#],
        )),
        "redis_cache_hit_l1" => Some((
            "truss_cache_requests_total",
            &[r#"cache="bench_l1""#, r#"result="hit_l1""#],
        )),
        "redis_cache_hit_redis" => Some((
            "truss_cache_requests_total",
            &[r#"cache="bench""#, r#"result="hit""#],
        )),
        _ => None,
    }
}

/// The sum of the series of counter `name` whose labels include every one of `labels`
/// (`key="value"`), from the Prometheus recorder.
fn counter(name: &str, labels: &[&str]) -> u64 {
    truss::observe::metrics::install()
        .render()
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .filter(|line| labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
