//! The Redis client's breaker on a slow server: calls time out, the breaker opens, calls
//! fail fast, and it closes once the server is quick again. Its own test binary: it reads
//! the process-wide `truss_breaker_*` counters of the breaker named `redis` (the other test
//! here only adds successes).

use std::time::{Duration, Instant};

use truss::redis::{Redis, RedisConfig, RedisError, cmd};
use truss::resilience::breaker::{BreakerState, OpenPolicy, Strategy};
use truss_tests::{RedisServer, metric_sample};

#[derive(Debug, Default)]
struct Tally {
    timed_out: u64,
    rejected: u64,
    slowest_rejection: Duration,
}

#[tokio::test]
async fn the_breaker_opens_on_a_slow_server_fails_fast_and_closes_after() {
    let server = RedisServer::start().await;
    let mut config = RedisConfig {
        url: Some(server.url()),
        command_timeout: Duration::from_millis(100),
        ..RedisConfig::default()
    };
    config.breaker.strategy = Strategy::StateMachine;
    config.breaker.state_machine.policy = OpenPolicy::ConsecutiveFailures;
    config.breaker.state_machine.consecutive_failures = 3;
    config.breaker.state_machine.open_min = Duration::from_millis(200);
    config.breaker.state_machine.open_max = Duration::from_millis(200);
    let redis = Redis::connect(&config).await.unwrap();
    redis.ping().await.unwrap();
    let get = cmd("GET").arg("k").clone();

    // The server sleeps 1.5 s: the first calls time out (100 ms each), then the breaker
    // opens and the rest fail at once, but for a trial call every open period.
    let sleeping = server.sleep(Duration::from_millis(1500)).await;
    let mut tally = Tally::default();
    while !sleeping.is_finished() {
        let start = Instant::now();
        match redis.query::<Option<String>>("get_k", &get).await {
            Err(RedisError::DeadlineExceeded) => tally.timed_out += 1,
            Err(RedisError::Unavailable(why)) => {
                assert!(why.contains("breaker"), "{why}");
                tally.rejected += 1;
                tally.slowest_rejection = tally.slowest_rejection.max(start.elapsed());
            }
            // Answered: the server woke (its sleeper task may not have seen it yet).
            Ok(_) => break,
            Err(other) => panic!("{other:?} while the server sleeps"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("redis breaker on a slow server: {tally:?}");
    // Rejections are not failures: the breaker saw exactly the calls that timed out.
    let failures =
        metric_sample(r#"truss_breaker_outcomes_total{breaker="redis",outcome="failure"}"#);
    assert_eq!(failures, tally.timed_out);
    assert!(tally.timed_out >= 3 && tally.rejected > 10, "{tally:?}");
    // Failing fast: well under the 100 ms a timed-out call takes (room for a loaded machine).
    assert!(
        tally.slowest_rejection < Duration::from_millis(80),
        "{tally:?}"
    );
    let err = truss::Error::from(RedisError::Unavailable("circuit breaker open".into()));
    assert_eq!((err.code(), err.reason()), (503, "REDIS_UNAVAILABLE"));

    // Quick again: the next trial call closes the breaker within an open period.
    let start = Instant::now();
    while redis.query::<Option<String>>("get_k", &get).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the breaker never closed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "redis breaker: closed {:?} after the server woke up",
        start.elapsed()
    );
    assert_eq!(redis.breaker_state(), Some(BreakerState::Closed));
    for _ in 0..5 {
        redis.query::<Option<String>>("get_k", &get).await.unwrap();
    }

    let rejected =
        metric_sample(r#"truss_breaker_requests_total{breaker="redis",decision="rejected"}"#);
    assert!(rejected >= tally.rejected, "{rejected} {tally:?}");
}

#[tokio::test]
async fn error_replies_never_open_the_breaker() {
    let server = RedisServer::start().await;
    let mut config = RedisConfig {
        url: Some(server.url()),
        ..RedisConfig::default()
    };
    config.breaker.strategy = Strategy::StateMachine;
    config.breaker.state_machine.consecutive_failures = 2;
    let redis = Redis::connect(&config).await.unwrap();
    let () = redis
        .query::<i64>("hset", cmd("HSET").arg("h").arg("f").arg("v"))
        .await
        .map(drop)
        .unwrap();
    for _ in 0..10 {
        let reply = redis
            .query::<Option<String>>("get_hash", cmd("GET").arg("h"))
            .await;
        assert!(matches!(reply, Err(RedisError::Command(_))), "{reply:?}");
    }
    assert_eq!(redis.breaker_state(), Some(BreakerState::Closed));

    // A skipped or disabled breaker: none to ask.
    config.breaker.skip.insert("redis".to_owned());
    assert_eq!(Redis::connect(&config).await.unwrap().breaker_state(), None);
    config.breaker.skip.clear();
    config.breaker.enabled = false;
    assert_eq!(Redis::connect(&config).await.unwrap().breaker_state(), None);
}

/// Calls cut off by their caller's deadline, before `command_timeout`, say nothing about
/// Redis: however many, they do not open the breaker (which would send every cached read to
/// its loader while Redis is healthy).
#[tokio::test]
async fn callers_short_of_time_do_not_open_the_breaker() {
    let server = RedisServer::start().await;
    let mut config = RedisConfig {
        url: Some(server.url()),
        command_timeout: Duration::from_secs(2),
        ..RedisConfig::default()
    };
    config.breaker.strategy = Strategy::StateMachine;
    config.breaker.state_machine.policy = OpenPolicy::ConsecutiveFailures;
    config.breaker.state_machine.consecutive_failures = 2;
    let redis = Redis::connect(&config).await.unwrap();
    redis.ping().await.unwrap();
    let get = cmd("GET").arg("k").clone();
    // The server is slower than the callers' 20 ms, well within `command_timeout`.
    let sleeping = server.sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        let deadline = truss::resilience::deadline::Deadline::after(Duration::from_millis(20));
        let out = deadline
            .scope(redis.query::<Option<String>>("get_k", &get))
            .await;
        assert!(matches!(out, Err(RedisError::DeadlineExceeded)), "{out:?}");
    }
    assert_eq!(redis.breaker_state(), Some(BreakerState::Closed));
    sleeping.await.unwrap();
    redis.query::<Option<String>>("get_k", &get).await.unwrap();
}
