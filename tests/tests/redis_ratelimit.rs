//! Rate limits kept in Redis (`backend = "redis"`), on a real redis-server: the fallback to
//! the local share when Redis is slow or gone (never a 5xx), the return to Redis when it is
//! back, and the accuracy of one limit shared by two app instances.
//!
//! Each test prints its figures (run with `--nocapture` to see them).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use tokio::time::Instant;
use truss::resilience::{Backend, RateLimitRule};
use truss::{App, RunningApp};
use truss_tests::{H1, RedisServer, local_config};

/// An app named `service` whose route `route` is limited by `rule`, kept in `redis_url`.
async fn limited_app(
    service: &str,
    route: &str,
    rule: RateLimitRule,
    redis_url: &str,
) -> RunningApp {
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.redis.url = Some(redis_url.to_owned());
    config.admission.routes.insert(route.to_owned(), rule);
    App::builder(service)
        .config(&config)
        .http(Router::new().route(route, get(|| async { "ok" })))
        .start()
        .await
        .unwrap()
}

fn redis_rule(rps: f64, burst: u32, instances: u32) -> RateLimitRule {
    RateLimitRule {
        rps,
        burst: Some(burst),
        backend: Backend::Redis,
        instances,
        ..RateLimitRule::default()
    }
}

/// One answer: when it was sent (since the start), its status, how long it took.
#[derive(Debug, Clone, Copy)]
struct Answer {
    at: Duration,
    status: Option<StatusCode>,
    took: Duration,
}

/// Sends `GET path` to `addr` every `every` until `stop`, on one kept-alive connection
/// (reconnecting if it breaks); records every answer.
fn drive(
    addr: SocketAddr,
    path: &'static str,
    every: Duration,
    start: Instant,
    stop: Instant,
    answers: Arc<Mutex<Vec<Answer>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn = None;
        while Instant::now() < stop {
            tick.tick().await;
            if conn.is_none() {
                conn = H1::connect(addr).await.ok();
            }
            let sent = Instant::now();
            let status = match conn.as_mut() {
                Some(c) => c.get(path).await.ok().map(|(status, _)| status),
                None => None,
            };
            if status.is_none() {
                conn = None;
            }
            let answer = Answer {
                at: sent - start,
                status,
                took: sent.elapsed(),
            };
            answers.lock().unwrap().push(answer);
        }
    })
}

/// `truss_ratelimit_decisions_total` of `rule` by backend, from an app's `/metrics`:
/// (redis, local_fallback).
async fn decisions(admin: SocketAddr, rule: &str) -> (f64, f64) {
    let (_, text) = truss_tests::get(admin, "/metrics").await.unwrap();
    let mut sums = (0.0, 0.0);
    let rule = format!("rule=\"{rule}\"");
    for line in text.lines() {
        if !line.starts_with("truss_ratelimit_decisions_total{") || !line.contains(&rule) {
            continue;
        }
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if line.contains("backend=\"redis\"") {
            sums.0 += value;
        } else if line.contains("backend=\"local_fallback\"") {
            sums.1 += value;
        }
    }
    sums
}

/// Samples [`decisions`] every `every` until `stop`: (since start, redis, fallback).
fn sample_decisions(
    admin: SocketAddr,
    rule: &'static str,
    every: Duration,
    start: Instant,
    stop: Instant,
) -> tokio::task::JoinHandle<Vec<(Duration, f64, f64)>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        while Instant::now() < stop {
            let (redis, fallback) = decisions(admin, rule).await;
            samples.push((start.elapsed(), redis, fallback));
            tokio::time::sleep(every).await;
        }
        samples
    })
}

/// The first sample after `from` in which the `pick`ed backend decided (its count grew),
/// and the first in which it decided at least 90 % of the interval's decisions.
fn first_growth(
    samples: &[(Duration, f64, f64)],
    from: Duration,
    pick: impl Fn(&(Duration, f64, f64)) -> f64,
) -> (Option<Duration>, Option<Duration>) {
    let mut first = None;
    let mut most = None;
    for pair in samples.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        if before.0 < from {
            continue;
        }
        let grew = pick(after) - pick(before);
        let all = (after.1 + after.2) - (before.1 + before.2);
        if grew > 0.0 && first.is_none() {
            first = Some(after.0 - from);
        }
        if all > 0.0 && grew >= 0.9 * all && most.is_none() {
            most = Some(after.0 - from);
        }
    }
    (first, most)
}

/// Counts of the answers sent in `[from, to)`: (200s, 429s, others), and the slowest.
fn tally(answers: &[Answer], from: Duration, to: Duration) -> (usize, usize, usize, Duration) {
    let mut counts = (0, 0, 0, Duration::ZERO);
    for a in answers.iter().filter(|a| a.at >= from && a.at < to) {
        match a.status {
            Some(StatusCode::OK) => counts.0 += 1,
            Some(StatusCode::TOO_MANY_REQUESTS) => counts.1 += 1,
            _ => counts.2 += 1,
        }
        counts.3 = counts.3.max(a.took);
    }
    counts
}

/// Redis asleep (slow past the budget), then killed, then restarted, under a steady load:
/// never a 5xx, the local share decides meanwhile, Redis decides again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_while_redis_is_slow_or_down_and_returns() {
    let mut redis = RedisServer::start().await;
    // 100/s for the service; the local share while Redis is away: 50/s.
    let app = limited_app(
        "fallback",
        "/fallback",
        redis_rule(100.0, 10, 2),
        &redis.url(),
    )
    .await;
    let addr = app.http_addr().unwrap();
    let admin = app.admin_addr();

    let start = Instant::now();
    let (up, asleep_from, killed, restarted, end) = (
        Duration::from_millis(1500),
        Duration::from_millis(1500),
        Duration::from_millis(3500),
        Duration::from_millis(6000),
        Duration::from_millis(11000),
    );
    let answers = Arc::new(Mutex::new(Vec::new()));
    // Four clients, one request every 4 ms each: about 1000/s offered, ten times the limit.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            drive(
                addr,
                "/fallback",
                Duration::from_millis(4),
                start,
                start + end,
                answers.clone(),
            )
        })
        .collect();
    let sampler = sample_decisions(
        admin,
        "/fallback",
        Duration::from_millis(25),
        start,
        start + end,
    );

    tokio::time::sleep_until(start + up).await;
    // Slow: the server sleeps 1.5 s (answering no one), far past the 5 ms budget.
    let asleep = redis.sleep(Duration::from_millis(1500)).await;
    tokio::time::sleep_until(start + killed).await;
    asleep.await.unwrap();
    redis.stop();
    tokio::time::sleep_until(start + restarted).await;
    redis.restart().await;
    let restarted_at = start.elapsed();
    for client in clients {
        client.await.unwrap();
    }
    let samples = sampler.await.unwrap();
    let answers = answers.lock().unwrap().clone();

    let (ok, limited, other, _) = tally(&answers, Duration::ZERO, end);
    assert_eq!(
        other,
        0,
        "answers other than 200 and 429 (of {})",
        answers.len()
    );
    assert!(ok > 0 && limited > 0, "ok {ok}, limited {limited}");

    let down = (killed + Duration::from_millis(500), restarted);
    let (down_ok, down_limited, _, down_slowest) = tally(&answers, down.0, down.1);
    let down_rate = down_ok as f64 / (down.1 - down.0).as_secs_f64();
    let (slow_ok, _, _, slow_slowest) = tally(&answers, asleep_from, killed);
    let (fallback_first, fallback_most) = first_growth(&samples, asleep_from, |s| s.2);
    let (redis_first, redis_most) = first_growth(&samples, restarted_at, |s| s.1);
    let (_, _, _, up_slowest) = tally(&answers, Duration::ZERO, up);
    println!(
        "redis ratelimit fallback: {} requests, {ok} admitted, {limited} limited, {other} other",
        answers.len()
    );
    println!("  up:        slowest answer {up_slowest:?}");
    println!(
        "  slow:      first fallback decision {fallback_first:?} after Redis fell asleep, ≥ 90 % fallback after {fallback_most:?}; slowest answer {slow_slowest:?}; {slow_ok} admitted in {:?}",
        killed - asleep_from
    );
    println!(
        "  down:      {down_ok} admitted ({down_rate:.1}/s, the share is 50/s), {down_limited} limited; slowest answer {down_slowest:?}"
    );
    println!(
        "  restarted: first Redis decision {redis_first:?} after restart, ≥ 90 % Redis after {redis_most:?}"
    );
    assert!(
        fallback_first.is_some(),
        "no fallback decision while Redis slept: {samples:?}"
    );
    // While Redis is down, the local share (50/s) decides: well under the 100/s limit.
    assert!((25.0..=80.0).contains(&down_rate), "down rate {down_rate}");
    // Once Redis answers, it decides again (measured: within about 50 ms; the bound leaves
    // room for a loaded machine).
    let back = redis_most.expect("decisions never went back to Redis");
    assert!(
        back <= Duration::from_secs(4),
        "back to Redis only after {back:?}"
    );
    // While it is down, Redis decides nothing.
    let redis_counts: Vec<f64> = samples
        .iter()
        .filter(|s| s.0 >= down.0 && s.0 < down.1)
        .map(|s| s.1)
        .collect();
    assert!(
        redis_counts.windows(2).all(|w| w[0] == w[1]),
        "Redis decided while down: {redis_counts:?}"
    );
    app.shutdown().await.unwrap();
}

/// Two instances of one service, one Redis: together they admit the configured rate
/// (±10 % over 10 s), though each alone would allow it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_rate() {
    let redis = RedisServer::start().await;
    let rps = 100.0;
    // instances = 2: were Redis to fail, each would allow 50/s and the total still hold.
    // A generous budget: this test is about sharing, and on a loaded 2-core machine
    // (parallel tests) Redis answers past the default budget, which hands decisions to
    // the local share (that has tests of its own, above).
    let rule = RateLimitRule {
        redis_budget: Duration::from_millis(250),
        ..redis_rule(rps, 10, 2)
    };
    let a = limited_app("shared", "/shared", rule.clone(), &redis.url()).await;
    let b = limited_app("shared", "/shared", rule, &redis.url()).await;
    let window = Duration::from_secs(10);
    let start = Instant::now();
    let answers = Arc::new(Mutex::new(Vec::new()));
    // Two clients per instance, one request every 5 ms each: about 800/s offered.
    let clients: Vec<_> = [a.http_addr().unwrap(), b.http_addr().unwrap()]
        .into_iter()
        .flat_map(|addr| [addr, addr])
        .map(|addr| {
            drive(
                addr,
                "/shared",
                Duration::from_millis(5),
                start,
                start + window,
                answers.clone(),
            )
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let elapsed = start.elapsed();
    let answers = answers.lock().unwrap().clone();
    let (ok, limited, other, _) = tally(&answers, Duration::ZERO, window);
    let (by_redis, by_fallback) = decisions(a.admin_addr(), "/shared").await;
    let expected = rps * window.as_secs_f64();
    let error = (ok as f64 - expected) / expected;
    println!(
        "redis ratelimit accuracy: 2 instances, {rps}/s for {elapsed:?}: {ok} admitted (expected {expected}, {:+.1} %), {limited} limited, {other} other; decided by Redis {by_redis}, by the fallback {by_fallback}",
        error * 100.0
    );
    assert_eq!(other, 0);
    assert!(
        error.abs() <= 0.10,
        "admitted {ok}, expected {expected} ± 10 %"
    );
    assert!(
        by_fallback <= 0.05 * (by_redis + by_fallback),
        "redis {by_redis}, fallback {by_fallback}"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A rule kept in Redis needs `[redis] url`; the error names the rule's key.
#[tokio::test]
async fn a_redis_rule_without_a_redis_url_is_a_config_error() {
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config
        .admission
        .routes
        .insert("/orders".to_owned(), redis_rule(10.0, 5, 1));
    let started = App::builder("no-redis")
        .config(&config)
        .http(Router::new().route("/orders", get(|| async { "ok" })))
        .start()
        .await;
    let Err(err) = started else {
        panic!("started without [redis] url");
    };
    let text = err.to_string();
    assert!(
        text.contains("admission.routes.\"/orders\".backend") && text.contains("[redis] url"),
        "{text}"
    );
}

/// The documented keys load from a config file.
#[test]
fn redis_rules_load_from_toml() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.toml");
    std::fs::write(
        &path,
        r#"
[redis]
url = "redis://127.0.0.1:6379"

[admission.routes."/orders"]
rps = 200
burst = 50
key = "header:x-api-key"
backend = "redis"
redis_budget = "5ms"
instances = 4
shards = 2
"#,
    )
    .unwrap();
    let config: truss::Config = truss::config::ConfigLoader::new()
        .args(["svc", "--config", path.to_str().unwrap()])
        .env_vars(Vec::<(String, String)>::new())
        .load()
        .unwrap();
    let rule = &config.admission.routes["/orders"];
    assert_eq!(rule.backend, Backend::Redis);
    assert_eq!((rule.instances, rule.shards), (4, 2));
    assert_eq!(rule.redis_budget, Duration::from_millis(5));
    let (key, _) = config.admission.redis_rules().next().unwrap();
    assert_eq!(key, "routes.\"/orders\"");
}

/// A hot key split over `shards` sub-buckets: one Redis key each, and the rate still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_rule_spreads_over_keys_and_keeps_its_rate() {
    let redis = RedisServer::start().await;
    let rule = RateLimitRule {
        shards: 4,
        ..redis_rule(50.0, 4, 1)
    };
    let app = limited_app("sharded", "/hot", rule, &redis.url()).await;
    // Long enough that a stall of a loaded machine (tokens unspent in buckets of 1 are lost)
    // stays well inside the tolerance.
    let window = Duration::from_secs(4);
    let start = Instant::now();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let addr = app.http_addr().unwrap();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let every = Duration::from_millis(5);
            drive(addr, "/hot", every, start, start + window, answers.clone())
        })
        .collect();
    // A sub-bucket's key lives until its bucket is full again (80 ms here): look several
    // times while the clients run, and take every key seen.
    let mut seen = std::collections::BTreeSet::new();
    while Instant::now() < start + window {
        // redis-cli blocks: off the runtime's worker, so the clients and the app go on.
        let keys = tokio::task::block_in_place(|| redis.cli(&["KEYS", "truss:rl:*"])).unwrap();
        seen.extend(keys.lines().filter(|k| !k.is_empty()).map(str::to_owned));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for client in clients {
        client.await.unwrap();
    }
    let keys: Vec<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "truss:rl:sharded/http:/hot:|0",
            "truss:rl:sharded/http:/hot:|1",
            "truss:rl:sharded/http:/hot:|2",
            "truss:rl:sharded/http:/hot:|3"
        ]
    );
    let answers = answers.lock().unwrap().clone();
    let (ok, limited, other, _) = tally(&answers, Duration::ZERO, window);
    // 50/s for 4 s, plus the burst (4 sub-buckets of 1).
    let expected = 50.0 * window.as_secs_f64() + 4.0;
    println!(
        "redis ratelimit shards: {ok} admitted (expected about {expected}), {limited} limited"
    );
    assert_eq!(other, 0);
    assert!(
        (ok as f64 - expected).abs() <= 0.2 * expected,
        "admitted {ok}, expected about {expected}"
    );
    app.shutdown().await.unwrap();
}
