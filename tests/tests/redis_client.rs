//! The governed Redis client against a real redis-server: commands, error replies, scripts,
//! deadlines, and a server killed and restarted under it.

use std::time::{Duration, Instant};

use truss::redis::{Redis, RedisConfig, RedisError, Script, cmd};
use truss::resilience::breaker::BreakerState;
use truss::resilience::deadline::Deadline;
use truss_tests::RedisServer;

fn config(server: &RedisServer) -> RedisConfig {
    RedisConfig {
        url: Some(server.url()),
        ..RedisConfig::default()
    }
}

#[tokio::test]
async fn governed_commands_replies_and_scripts() {
    let server = RedisServer::start().await;
    let redis = Redis::connect(&config(&server)).await.unwrap();

    let () = redis
        .query("set_greeting", cmd("SET").arg("greeting").arg("hello"))
        .await
        .unwrap();
    let got: Option<String> = redis
        .query("get_greeting", cmd("GET").arg("greeting"))
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("hello"));
    let missing: Option<String> = redis
        .query_within(
            "get_greeting",
            cmd("GET").arg("nothing"),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
    assert_eq!(missing, None);

    // An error reply is Redis answering: `Command`, 500, and a success for the breaker.
    let wrong = redis
        .query::<i64>("incr_greeting", cmd("INCR").arg("greeting"))
        .await
        .unwrap_err();
    assert!(
        matches!(&wrong, RedisError::Command(m) if m.contains("not an integer")),
        "{wrong}"
    );
    let err = truss::Error::from(wrong);
    assert_eq!((err.code(), err.reason()), (500, "REDIS_ERROR"));
    let hash = cmd("HSET").arg("h").arg("f").arg("v").clone();
    let () = redis.query::<i64>("hset", &hash).await.map(drop).unwrap();
    let wrongtype = redis
        .query::<Option<String>>("get_hash", cmd("GET").arg("h"))
        .await;
    assert!(
        matches!(&wrongtype, Err(RedisError::Command(m)) if m.contains("WRONGTYPE")),
        "{wrongtype:?}"
    );

    // EVALSHA, loading the script when the server does not know it (flushed here).
    let script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let keys = ["hits".to_owned()];
    let n: i64 = redis
        .eval("incr_by", &script, &keys, &["5".to_owned()], None)
        .await
        .unwrap();
    assert_eq!(n, 5);
    assert_eq!(server.cli(&["SCRIPT", "FLUSH"]).unwrap(), "OK");
    let n: i64 = redis
        .eval(
            "incr_by",
            &script,
            &keys,
            &["2".to_owned()],
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    assert_eq!(n, 7);
    let (a, b): (i64, i64) = redis
        .pipeline("incr_both", truss::redis::pipe().incr("a", 1).incr("b", 2))
        .await
        .unwrap();
    assert_eq!((a, b), (1, 2));
    assert_eq!(redis.breaker_state(), Some(BreakerState::Closed));

    let text = truss::observe::metrics::render(&truss::observe::metrics::install());
    for needle in [
        r#"truss_client_requests_total{transport="redis",target="redis",operation="get_greeting",code="ok"} 2"#,
        r#"truss_client_requests_total{transport="redis",target="redis",operation="get_hash",code="command"} 1"#,
        r#"truss_client_requests_total{transport="redis",target="redis",operation="incr_by",code="ok"} 2"#,
        r#"truss_client_request_duration_seconds_count{transport="redis",target="redis",operation="set_greeting"} 1"#,
    ] {
        assert!(text.contains(needle), "no {needle} in:\n{text}");
    }
    truss_tests::promtool_check(&text).unwrap();
}

#[tokio::test]
async fn a_command_past_the_request_deadline_fails_on_time() {
    let server = RedisServer::start().await;
    let redis = Redis::connect(&config(&server)).await.unwrap();
    redis.ping().await.unwrap();

    // Asleep far longer than the deadline, so the bound below tells the two apart.
    let sleeping = server.sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    let get = cmd("GET").arg("k").clone();
    let late = Deadline::after(Duration::from_millis(100))
        .scope(redis.query::<Option<String>>("get_k", &get))
        .await;
    let took = start.elapsed();
    assert_eq!(late, Err(RedisError::DeadlineExceeded));
    assert!(
        // Under the 500 ms command timeout, which would fail the call the same way.
        took >= Duration::from_millis(90) && took < Duration::from_millis(450),
        "{took:?}"
    );
    let err = truss::Error::from(RedisError::DeadlineExceeded);
    assert_eq!(err.code(), 504);

    // A deadline already past fails before sending anything; so does a zero budget.
    let past = Deadline::after(Duration::ZERO)
        .scope(redis.query::<Option<String>>("get_k", &get))
        .await;
    assert_eq!(past, Err(RedisError::DeadlineExceeded));
    sleeping.await.unwrap();
    let zero = redis
        .query_within::<Option<String>>("get_k", &get, Duration::ZERO)
        .await;
    assert_eq!(zero, Err(RedisError::DeadlineExceeded));
    // Without a deadline, command_timeout (500 ms) is the bound.
    let sleeping = server.sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let slow = redis.query::<Option<String>>("get_k", &get).await;
    let took = start.elapsed();
    assert_eq!(slow, Err(RedisError::DeadlineExceeded));
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    sleeping.await.unwrap();
    redis.ping().await.unwrap();
}

#[tokio::test]
async fn a_killed_server_fails_calls_fast_and_a_restarted_one_is_used_again() {
    let mut server = RedisServer::start().await;
    // The default adaptive breaker, with a 2 s window so that it forgets the outage soon.
    let mut config = config(&server);
    config.breaker.adaptive.window = Duration::from_secs(2);
    config.breaker.adaptive.buckets = 20;
    let redis = Redis::connect(&config).await.unwrap();
    let set = cmd("SET").arg("k").arg("v").clone();
    redis.query::<()>("set_k", &set).await.unwrap();

    server.stop();
    for _ in 0..50 {
        let start = Instant::now();
        let result = redis.query::<()>("set_k", &set).await;
        let took = start.elapsed();
        assert!(
            matches!(result, Err(RedisError::Unavailable(_))),
            "{result:?}"
        );
        // Fast: no connect timeout waited out (room for a loaded machine's stalls).
        assert!(took < Duration::from_millis(300), "{took:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = truss::Error::from(redis.query::<()>("set_k", &set).await.unwrap_err());
    assert_eq!((err.code(), err.reason()), (503, "REDIS_UNAVAILABLE"));
    assert_ne!(redis.breaker_state(), Some(BreakerState::Closed));

    server.restart().await;
    let start = Instant::now();
    while redis.query::<()>("set_k", &set).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no recovery after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = start.elapsed();
    // The adaptive breaker lets more and more through as calls succeed, and every call
    // once the outage has left its window.
    while redis.breaker_state() != Some(BreakerState::Closed) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the breaker never closed"
        );
        let _ = redis.query::<()>("set_k", &set).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = start.elapsed();
    eprintln!(
        "redis client after a restart: first call succeeded after {first:?}, breaker closed after {closed:?}"
    );
    assert!(first < Duration::from_secs(4), "{first:?}");
    for _ in 0..5 {
        redis.query::<()>("set_k", &set).await.unwrap();
    }
    let got: Option<String> = redis.query("get_k", cmd("GET").arg("k")).await.unwrap();
    assert_eq!(got.as_deref(), Some("v"));
}

#[tokio::test]
async fn a_server_down_at_connect_is_not_an_error() {
    let mut server = RedisServer::start().await;
    server.stop();
    let redis = Redis::connect(&config(&server)).await.unwrap();
    assert!(matches!(
        redis.ping().await,
        Err(RedisError::Unavailable(_))
    ));
    server.restart().await;
    let start = Instant::now();
    while redis.ping().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "redis client: first call succeeded {:?} after the server came up",
        start.elapsed()
    );
}

#[tokio::test]
async fn readiness_follows_the_server_when_required() {
    let mut server = RedisServer::start().await;
    let health = truss::Health::new();
    let optional = Redis::connect(&config(&server)).await.unwrap();
    optional.readiness(&health);
    assert!(
        health.checks_snapshot().is_empty(),
        "not required: no check"
    );

    let required = Redis::connect(&RedisConfig {
        required: true,
        ..config(&server)
    })
    .await
    .unwrap();
    required.readiness(&health);
    let check = |want: bool| {
        let health = health.clone();
        async move {
            for _ in 0..100 {
                if health.checks_snapshot().get(truss::redis::CHECK) == Some(&want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the redis check never became {want}");
        }
    };
    check(true).await;
    server.stop();
    check(false).await;
    server.restart().await;
    check(true).await;
    drop(required);
    for _ in 0..100 {
        if health.checks_snapshot().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the check outlived the client");
}

#[tokio::test]
async fn a_tls_url_against_a_plain_server_is_unavailable_not_a_panic() {
    let server = RedisServer::start().await;
    let redis = Redis::connect(&RedisConfig {
        url: Some(format!("rediss://127.0.0.1:{}/0", server.port())),
        ..RedisConfig::default()
    })
    .await
    .unwrap();
    let err = redis.ping().await.unwrap_err();
    assert!(
        matches!(
            err,
            RedisError::Unavailable(_) | RedisError::DeadlineExceeded
        ),
        "{err}"
    );
}
