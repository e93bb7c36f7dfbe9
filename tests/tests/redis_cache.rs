//! Cache-aside on a real redis-server: singleflight, negative caching, TTL jitter, a Redis
//! outage that only bypasses the cache, and L1 invalidation across instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use truss::redis::{Cache, CacheConfig, Redis, RedisConfig, cmd};
use truss::resilience::deadline::Deadline;
use truss_tests::{RedisServer, metric_sample};

async fn connect(server: &RedisServer) -> Redis {
    Redis::connect(&RedisConfig {
        url: Some(server.url()),
        ..RedisConfig::default()
    })
    .await
    .unwrap()
}

/// What a test loader returns.
type Load = std::pin::Pin<Box<dyn Future<Output = Result<Option<String>, truss::Error>> + Send>>;

/// Counts loader calls; each returns `value` after `delay`.
#[derive(Clone, Default)]
struct Loader(Arc<AtomicUsize>);

impl Loader {
    fn calls(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn load(&self, value: Option<&str>, delay: Duration) -> impl FnOnce() -> Load + use<> {
        let calls = Arc::clone(&self.0);
        let value = value.map(str::to_owned);
        move || {
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                Ok(value)
            })
        }
    }
}

/// The remaining TTL of `key` in milliseconds.
fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.cli(&["PTTL", key]).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_misses_call_the_loader_once() {
    let server = RedisServer::start().await;
    let cache: Cache<str, String> =
        Cache::new(connect(&server).await, "flight", &CacheConfig::default());
    let loader = Loader::default();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (cache, loader) = (cache.clone(), loader.clone());
        tasks.spawn(async move {
            cache
                .get_or_load("hot", loader.load(Some("v"), Duration::from_millis(200)))
                .await
        });
    }
    while let Some(answer) = tasks.join_next().await {
        assert_eq!(answer.unwrap().unwrap().as_deref(), Some("v"));
    }
    assert_eq!(loader.calls(), 1);
    let ttl = pttl(&server, "flight:hot");
    assert!((53_000..=66_000).contains(&ttl), "{ttl}");
    // Stored: the next caller does not load.
    let again = cache
        .get_or_load("hot", loader.load(Some("other"), Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((again.as_deref(), loader.calls()), (Some("v"), 1));
    let requests = |result: &str| {
        metric_sample(&format!(
            "truss_cache_requests_total{{cache=\"flight\",result=\"{result}\"}}"
        ))
    };
    assert_eq!(requests("miss") + requests("hit"), 1001);
    assert_eq!(
        metric_sample(r#"truss_cache_loads_total{cache="flight",result="ok"}"#),
        1
    );
    let text = truss::observe::metrics::render(&truss::observe::metrics::install());
    truss_tests::promtool_check(&text).unwrap();
}

#[tokio::test]
async fn a_waiter_stops_at_its_own_deadline() {
    let server = RedisServer::start().await;
    let cache: Cache<str, String> =
        Cache::new(connect(&server).await, "waiter", &CacheConfig::default());
    let loader = Loader::default();
    let slow = tokio::spawn({
        let (cache, loader) = (cache.clone(), loader.clone());
        async move {
            cache
                .get_or_load("k", loader.load(Some("v"), Duration::from_secs(2)))
                .await
        }
    });
    while loader.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    let waited = Deadline::after(Duration::from_millis(100))
        .scope(cache.get_or_load("k", loader.load(Some("mine"), Duration::ZERO)))
        .await;
    let took = start.elapsed();
    let err = waited.unwrap_err();
    assert_eq!(err.code(), 504, "{err:?}");
    // Its own 100 ms, not the leader's 2 s load (room for a loaded machine).
    assert!(took < Duration::from_millis(1000), "{took:?}");
    assert_eq!(slow.await.unwrap().unwrap().as_deref(), Some("v"));
    assert_eq!(loader.calls(), 1);
}

#[tokio::test]
async fn not_found_is_remembered_for_negative_ttl() {
    let server = RedisServer::start().await;
    let config = CacheConfig {
        negative_ttl: Duration::from_secs(2),
        ..CacheConfig::default()
    };
    let cache: Cache<u64, String> = Cache::new(connect(&server).await, "negative", &config);
    let loader = Loader::default();
    for _ in 0..5 {
        let answer = cache
            .get_or_load(&404, loader.load(None, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(answer, None);
    }
    assert_eq!(loader.calls(), 1);
    // A placeholder distinct from any value, expiring within negative_ttl ± 10 %.
    let raw: Vec<u8> = redis_raw(&server, "GET", "negative:404").await;
    assert_eq!(raw, [0]);
    let ttl = pttl(&server, "negative:404");
    assert!((1_000..=2_200).contains(&ttl), "{ttl}");
    assert_eq!(
        metric_sample(r#"truss_cache_requests_total{cache="negative",result="negative_hit"}"#),
        4
    );

    // Once it expires, the loader is asked again.
    server.cli(&["PEXPIRE", "negative:404", "1"]).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let answer = cache
        .get_or_load(&404, loader.load(Some("found"), Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((answer.as_deref(), loader.calls()), (Some("found"), 2));
}

/// One raw command with a key, as bytes.
async fn redis_raw(server: &RedisServer, command: &str, key: &str) -> Vec<u8> {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd(command)
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn ttls_are_jittered_within_the_configured_spread() {
    let server = RedisServer::start().await;
    let config = CacheConfig {
        ttl: Duration::from_secs(100),
        jitter: 0.2,
        ..CacheConfig::default()
    };
    let cache: Cache<u32, String> = Cache::new(connect(&server).await, "jitter", &config);
    let loader = Loader::default();
    let mut ttls = Vec::new();
    for key in 0..200 {
        cache
            .get_or_load(&key, loader.load(Some("v"), Duration::ZERO))
            .await
            .unwrap();
        ttls.push(pttl(&server, &format!("jitter:{key}")));
    }
    let (low, high) = (ttls.iter().min().unwrap(), ttls.iter().max().unwrap());
    eprintln!("cache: 200 TTLs of 100 s ± 20 % spread over {low}..{high} ms");
    // 80 s to 120 s (a PTTL read a moment after the SET is a little lower).
    assert!(*low >= 79_000 && *high <= 120_000, "{low} {high}");
    // Spread over the range, not bunched.
    assert!(*low < 85_000 && *high > 115_000, "{low} {high}");
}

#[tokio::test]
async fn a_redis_outage_bypasses_the_cache_and_recovery_uses_it_again() {
    let mut server = RedisServer::start().await;
    let cache: Cache<str, String> =
        Cache::new(connect(&server).await, "outage", &CacheConfig::default());
    let loader = Loader::default();
    let get =
        |value: &'static str| cache.get_or_load("k", loader.load(Some(value), Duration::ZERO));
    assert_eq!(get("v1").await.unwrap().as_deref(), Some("v1"));
    assert_eq!(loader.calls(), 1);

    server.stop();
    for i in 0..20 {
        let start = Instant::now();
        let answer = get("v2").await.unwrap();
        assert_eq!(answer.as_deref(), Some("v2"), "call {i}");
        // Bypassed at once, no command timeout waited out (room for a loaded machine).
        assert!(
            start.elapsed() < Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
    }
    assert_eq!(loader.calls(), 21);
    assert_eq!(
        metric_sample(r#"truss_cache_requests_total{cache="outage",result="bypass"}"#),
        20
    );

    server.restart().await;
    let start = Instant::now();
    // Back to Redis: a load is stored again, and the next call is a hit.
    loop {
        let before = loader.calls();
        let answer = get("v3").await.unwrap();
        assert!(answer.is_some());
        if loader.calls() == before {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the cache never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = start.elapsed();
    eprintln!("cache: served from Redis again {back:?} after the restart");
    assert!(back < Duration::from_secs(4), "{back:?}");
    assert_eq!(server.cli(&["GET", "outage:k"]).unwrap(), "\u{1}\"v3\"");
}

#[tokio::test]
async fn a_delete_drops_the_l1_entry_of_other_instances() {
    let server = RedisServer::start().await;
    let mut config = CacheConfig::default();
    config.l1.enabled = true;
    config.l1.ttl = Duration::from_secs(60);
    // Two instances: their own connections, their own L1s and subscribers.
    let a: Cache<str, String> = Cache::new(connect(&server).await, "user", &config);
    let b: Cache<str, String> = Cache::new(connect(&server).await, "user", &config);
    let other: Cache<str, String> = Cache::new(connect(&server).await, "other", &config);
    for _ in 0..100 {
        if server
            .cli(&["PUBSUB", "NUMSUB", &config.invalidation_channel])
            .unwrap()
            .ends_with('3')
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let loader = Loader::default();
    let load = |value: &'static str| loader.load(Some(value), Duration::ZERO);
    assert_eq!(
        a.get_or_load("7", load("v1")).await.unwrap().as_deref(),
        Some("v1")
    );
    assert_eq!(
        b.get_or_load("7", load("v2")).await.unwrap().as_deref(),
        Some("v1")
    );
    assert_eq!(
        other.get_or_load("7", load("o1")).await.unwrap().as_deref(),
        Some("o1")
    );
    assert_eq!(loader.calls(), 2);

    // Gone from Redis behind the caches' backs: B still answers from its L1. (A delta:
    // another test of this binary has a cache named "user" too.)
    server.cli(&["DEL", "user:7"]).unwrap();
    let hit_l1 = r#"truss_cache_requests_total{cache="user",result="hit_l1"}"#;
    let before = metric_sample(hit_l1);
    assert_eq!(
        b.get_or_load("7", load("v2")).await.unwrap().as_deref(),
        Some("v1")
    );
    assert_eq!(metric_sample(hit_l1) - before, 1);

    // A deletes: B's L1 entry goes with the announcement; another cache's does not.
    a.delete("7").await.unwrap();
    let start = Instant::now();
    loop {
        let answer = b.get_or_load("7", load("v2")).await.unwrap();
        if answer.as_deref() == Some("v2") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "B kept its L1 entry"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "cache: another instance dropped its L1 entry {:?} after the delete",
        start.elapsed()
    );
    assert_eq!(
        a.get_or_load("7", load("v3")).await.unwrap().as_deref(),
        Some("v2")
    );
    assert_eq!(
        other.get_or_load("7", load("o2")).await.unwrap().as_deref(),
        Some("o1")
    );
    let exists: i64 = connect(&server)
        .await
        .query("exists", cmd("EXISTS").arg("user:7"))
        .await
        .unwrap();
    assert_eq!(exists, 1);
}

#[tokio::test]
async fn the_invalidation_subscriber_comes_back_after_a_restart() {
    let mut server = RedisServer::start().await;
    let mut config = CacheConfig::default();
    config.l1.enabled = true;
    config.l1.ttl = Duration::from_secs(60);
    let (redis_a, redis_b) = (connect(&server).await, connect(&server).await);
    let a: Cache<str, String> = Cache::new(redis_a.clone(), "again", &config);
    let b: Cache<str, String> = Cache::new(redis_b.clone(), "again", &config);
    let subscribers = |server: &RedisServer| {
        server
            .cli(&["PUBSUB", "NUMSUB", &config.invalidation_channel])
            .unwrap()
            .lines()
            .last()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let until_subscribed = async |server: &RedisServer| {
        let start = Instant::now();
        while subscribers(server) < 2 {
            assert!(start.elapsed() < Duration::from_secs(5), "not resubscribed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start.elapsed()
    };
    until_subscribed(&server).await;

    server.restart().await;
    let took = until_subscribed(&server).await;
    eprintln!("cache: both subscribers back {took:?} after the restart");
    // The first command on a connection the server closed fails (it may have been sent,
    // so it is not retried); the manager reconnects after it.
    for redis in [&redis_a, &redis_b] {
        let start = Instant::now();
        while redis.ping().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(5), "no reconnection");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let loader = Loader::default();
    let load = |value: &'static str| loader.load(Some(value), Duration::ZERO);
    // Warm both L1s (B from the value A stored), then delete through A.
    let answer = a.get_or_load("k", load("v1")).await.unwrap();
    assert_eq!(answer.as_deref(), Some("v1"));
    let answer = b.get_or_load("k", load("v2")).await.unwrap();
    assert_eq!(answer.as_deref(), Some("v1"));
    a.delete("k").await.unwrap();
    let start = Instant::now();
    while b.get_or_load("k", load("v2")).await.unwrap().as_deref() != Some("v2") {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "B kept its L1 entry"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One `user` example instance on the SQLite file in `dir` (shared by every instance given
/// the same `dir`) with its reads behind Redis at `url` and an L1 whose TTL (60 s) is longer
/// than the test: only a pub/sub invalidation can make an instance drop an entry early.
async fn user_with_cache(dir: &std::path::Path, url: &str) -> truss::RunningApp {
    let mut config = truss_tests::example_config::<user::UserConfig>(user::DEFAULTS, "user");
    config.database.data_dir = dir.to_owned();
    config.redis.url = Some(url.to_owned());
    config.redis.cache.l1.enabled = true;
    config.redis.cache.l1.ttl = Duration::from_secs(60);
    user::app(&config).await.unwrap().start().await.unwrap()
}

/// The `name` of `GET /v1/users/{id}` on `app`, or the status when it is not 200.
async fn name_of(app: &truss::RunningApp, id: u64) -> Result<String, http::StatusCode> {
    let addr = app.http_addr().unwrap();
    let (status, _, body) = truss_tests::call(addr, "GET", &format!("/v1/users/{id}"), None)
        .await
        .unwrap();
    if status != http::StatusCode::OK {
        return Err(status);
    }
    let user: serde_json::Value = serde_json::from_str(&body).unwrap();
    Ok(user["name"].as_str().unwrap().to_owned())
}

/// Polls `name_of` (20 ms apart, up to `within`) until it gives `want`; the time it took.
async fn until_name(
    app: &truss::RunningApp,
    id: u64,
    want: &str,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if name_of(app, id).await.as_deref() == Ok(want) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn user_example_reads_through_the_cache_and_writes_invalidate_every_instance() {
    let mut server = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = user_with_cache(dir.path(), &server.url()).await;
    let b = user_with_cache(dir.path(), &server.url()).await;

    // A read fills Redis; the same row changed behind the cache's back is not seen.
    assert_eq!(name_of(&a, 1).await.as_deref(), Ok("Ada Lovelace"));
    let cached = server.cli(&["GET", "user:1"]).unwrap();
    assert!(cached.contains("Ada Lovelace"), "{cached}");
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("user.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE users SET name = 'Behind the cache' WHERE id = 1")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(name_of(&a, 1).await.as_deref(), Ok("Ada Lovelace"));
    assert_eq!(name_of(&b, 1).await.as_deref(), Ok("Ada Lovelace"));

    // A write through `a` drops the entry from Redis and from `b`'s L1 (pub/sub).
    let token = truss_tests::demo_token(a.http_addr().unwrap())
        .await
        .unwrap();
    let (status, _, body) = truss_tests::call_as(
        a.http_addr().unwrap(),
        "PATCH",
        "/v1/users/1",
        Some(r#"{"name":"Ada L."}"#),
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!(status, http::StatusCode::OK, "{body}");
    assert_eq!(name_of(&a, 1).await.as_deref(), Ok("Ada L."));
    let seen = until_name(&b, 1, "Ada L.", Duration::from_secs(5)).await;
    assert!(seen.is_some(), "instance b kept its stale L1 entry");

    // "Not found" is remembered in Redis too.
    assert_eq!(name_of(&a, 999).await, Err(http::StatusCode::NOT_FOUND));
    assert_eq!(server.cli(&["EXISTS", "user:999"]).unwrap(), "1");

    // Redis away: reads go to the database (no 5xx), and back to Redis once it returns.
    server.stop();
    assert_eq!(name_of(&a, 2).await.as_deref(), Ok("Grace Hopper"));
    assert_eq!(name_of(&b, 3).await.as_deref(), Ok("Alan Turing"));
    server.restart().await;
    let started = Instant::now();
    let mut back = false;
    while started.elapsed() < Duration::from_secs(5) {
        assert_eq!(name_of(&a, 2).await.as_deref(), Ok("Grace Hopper"));
        if server.cli(&["EXISTS", "user:2"]).unwrap() == "1" {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        back,
        "the cache did not use Redis again within 5 s of its restart"
    );
    eprintln!(
        "L1 invalidation seen after {:?}; back on Redis {:?} after its restart",
        seen.unwrap_or_default(),
        started.elapsed()
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_slow_redis_costs_a_read_the_cache_timeout_not_the_command_timeout() {
    let server = RedisServer::start().await;
    let redis = Redis::connect(&RedisConfig {
        url: Some(server.url()),
        command_timeout: Duration::from_secs(10),
        ..RedisConfig::default()
    })
    .await
    .unwrap();
    let config = CacheConfig {
        timeout: Duration::from_millis(50),
        ..CacheConfig::default()
    };
    let cache: Cache<str, String> = Cache::new(redis, "slow", &config);
    let loader = Loader::default();
    // Redis answers no one for 3 s; without the cache's own timeout, the read would wait
    // for it (the command timeout is 10 s and there is no request deadline).
    let sleeping = server.sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let answer = cache
        .get_or_load("k", loader.load(Some("from the loader"), Duration::ZERO))
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(answer.as_deref(), Some("from the loader"));
    assert_eq!(loader.calls(), 1);
    // The GET (50 ms) and the SET (50 ms) each give up at the cache's timeout; 2 s is far
    // from both that and the 3 s the server sleeps.
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        metric_sample(r#"truss_cache_requests_total{cache="slow",result="bypass"}"#),
        1
    );
    eprintln!("cache: a read on a sleeping Redis took {took:?}");
    sleeping.await.unwrap();
}
