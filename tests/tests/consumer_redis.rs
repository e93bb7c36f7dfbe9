//! Consumers on a real Redis stream (Debian's `redis-server`, started by the test): acked
//! after success, retried through the delay set, dead-lettered with the reason, and a
//! message left pending by a consumer that died is claimed by another (at-least-once).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use truss::queue::{Backend, ConsumerConfig, Message, RedisStreams};
use truss_tests::{BoxError, RedisServer};

#[derive(Debug, Deserialize)]
struct OrderCreated {
    order_id: u64,
}

fn quick() -> ConsumerConfig {
    ConsumerConfig {
        max_attempts: 3,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        poll: Duration::from_millis(50),
        ..ConsumerConfig::default()
    }
}

async fn until(done: impl Fn() -> bool) -> Result<(), BoxError> {
    for _ in 0..1000 {
        if done() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("timed out".into())
}

/// The number of entries pending in the group (delivered, not acknowledged).
fn pending(redis: &RedisServer, stream: &str) -> String {
    let out = redis
        .cli(&["XPENDING", stream, "notify"])
        .unwrap_or_default();
    out.lines().next().unwrap_or_default().trim().to_owned()
}

#[tokio::test]
async fn messages_are_acked_retried_and_dead_lettered_in_redis() -> Result<(), BoxError> {
    let redis = RedisServer::start().await;
    let stream = "orders";
    let backend = RedisStreams::connect(
        &redis.url(),
        stream,
        "notify",
        "n1",
        Duration::from_secs(30),
    )
    .await?;
    let calls = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (calls, done) = (calls.clone(), done.clone());
        move |msg: Message<OrderCreated>| {
            let (calls, done) = (calls.clone(), done.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                match msg.body.order_id {
                    1 => Err(truss::Error::unavailable(
                        "MAILER_DOWN",
                        "the mailer is down",
                    )),
                    2 => Err(truss::Error::bad_request("NO_EMAIL", "no email")),
                    _ => {
                        done.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }
                }
            }
        }
    };
    let config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(5));
    let app = truss::App::builder("notify")
        .config(&config)
        .consume("order.created", Arc::new(backend.clone()), quick(), handler)
        .start()
        .await?;
    for id in 1..=3 {
        backend
            .publish(format!(r#"{{"order_id":{id}}}"#), Default::default())
            .await?;
    }
    let dead = backend.dead_letter_stream();
    until(|| redis.cli(&["XLEN", &dead]).unwrap_or_default().trim() == "2").await?;
    until(|| done.load(Ordering::SeqCst) == 1).await?;
    // 3 tries for the 503, 1 for the 400, 1 for the good one.
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let dump = redis.cli(&["XRANGE", &dead, "-", "+"])?;
    assert!(
        dump.contains("MAILER_DOWN") && dump.contains("NO_EMAIL"),
        "{dump}"
    );
    // A dead letter is added before its original is acknowledged: wait for the ack.
    until(|| pending(&redis, stream) == "0").await?;
    assert_eq!(pending(&redis, stream), "0", "everything settled");
    assert_eq!(redis.cli(&["ZCARD", "orders:delayed"])?.trim(), "0");
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_message_left_pending_by_a_dead_consumer_is_claimed_by_another() -> Result<(), BoxError> {
    let redis = RedisServer::start().await;
    let stream = "orders";
    let idle = Duration::from_millis(200);
    let first = RedisStreams::connect(&redis.url(), stream, "notify", "dies", idle).await?;
    first
        .publish(r#"{"order_id":7}"#, Default::default())
        .await?;
    // Delivered to the first consumer, which dies before acknowledging it.
    let taken = first.fetch(10, Duration::from_millis(100)).await?;
    assert_eq!(taken.len(), 1);
    drop(first);
    assert_eq!(pending(&redis, stream), "1");

    let seen = Arc::new(AtomicUsize::new(0));
    let handler = {
        let seen = seen.clone();
        move |msg: Message<OrderCreated>| {
            let seen = seen.clone();
            async move {
                assert_eq!(msg.body.order_id, 7);
                seen.fetch_add(1, Ordering::SeqCst);
                Ok::<_, truss::Error>(())
            }
        }
    };
    let second = RedisStreams::connect(&redis.url(), stream, "notify", "takes-over", idle).await?;
    let config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(5));
    let app = truss::App::builder("notify")
        .config(&config)
        .consume("order.created", Arc::new(second), quick(), handler)
        .start()
        .await?;
    until(|| seen.load(Ordering::SeqCst) == 1).await?;
    until(|| pending(&redis, stream) == "0").await?;
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_configured_consumer_reads_its_redis_stream() -> Result<(), BoxError> {
    let redis = RedisServer::start().await;
    let mut config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(5));
    config.redis.url = Some(redis.url());
    let entry = ConsumerConfig {
        backend: truss::queue::QueueBackend::Redis,
        stream: Some("orders".to_owned()),
        ..quick()
    };
    config.consumers.0.insert("order.created".to_owned(), entry);
    let seen = Arc::new(AtomicUsize::new(0));
    let handler = {
        let seen = seen.clone();
        move |msg: Message<OrderCreated>| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(msg.body.order_id as usize, Ordering::SeqCst);
                Ok::<_, truss::Error>(())
            }
        }
    };
    let app = truss::App::builder("notify")
        .config(&config)
        .consumer("order.created", handler)
        .start()
        .await?;
    // The group is named after the service.
    let producer = RedisStreams::connect(
        &redis.url(),
        "orders",
        "notify",
        "producer",
        Duration::from_secs(30),
    )
    .await?;
    producer
        .publish(r#"{"order_id":5}"#, Default::default())
        .await?;
    until(|| seen.load(Ordering::SeqCst) == 5).await?;
    until(|| pending(&redis, "orders") == "0").await?;
    app.shutdown().await?;

    // Without `[redis] url`: a start error naming the key.
    config.redis.url = None;
    let error = truss::App::builder("notify")
        .config(&config)
        .consumer("order.created", |_: Message<OrderCreated>| async {
            Ok::<_, truss::Error>(())
        })
        .start()
        .await
        .expect_err("no Redis");
    assert!(
        error
            .to_string()
            .contains("consumers.\"order.created\".backend"),
        "{error}"
    );
    Ok(())
}

#[tokio::test]
async fn a_producer_fails_fast_while_redis_is_down() -> Result<(), BoxError> {
    use truss::queue::Producer;

    let mut redis = RedisServer::start().await;
    let streams = RedisStreams::connect(
        &redis.url(),
        "orders",
        "notify",
        "p",
        Duration::from_secs(30),
    )
    .await?;
    // The state-machine breaker: open after 5 failures in a row, for at least 1 s.
    let breaker = truss::resilience::breaker::BreakerConfig {
        strategy: truss::resilience::breaker::Strategy::StateMachine,
        ..Default::default()
    };
    let producer = Producer::new("orders", Arc::new(streams), &breaker);
    producer.send(&serde_json::json!({"order_id": 1})).await?;
    redis.stop();
    let mut reasons = Vec::new();
    for i in 0..40 {
        let error = producer
            .send(&serde_json::json!({"order_id": i}))
            .await
            .expect_err("Redis is down");
        assert_eq!(error.code(), 503, "{error}");
        reasons.push(error.reason().to_owned());
    }
    let open = reasons.iter().filter(|r| *r == "CIRCUIT_OPEN").count();
    assert!(
        reasons.contains(&"QUEUE_UNAVAILABLE".to_owned()),
        "{reasons:?}"
    );
    assert!(
        open >= 30,
        "the open breaker sheds the calls after 5 failures: {open} of 40"
    );
    Ok(())
}

#[tokio::test]
async fn a_protobuf_body_survives_a_retry_through_the_delayed_set() -> Result<(), BoxError> {
    use truss::queue::{Producer, Proto};
    let redis = RedisServer::start().await;
    let backend = RedisStreams::connect(
        &redis.url(),
        "proto.orders",
        "notify",
        "n1",
        Duration::from_secs(30),
    )
    .await?;
    let publisher = RedisStreams::publisher(&redis.url(), "proto.orders").await?;
    let producer = Producer::new("proto.orders", Arc::new(publisher), &Default::default());
    producer.send(&Proto(truss_tests::proto_order())).await?;
    let (attempt, got) =
        truss_tests::proto_body_after_a_retry(Arc::new(backend), "proto.orders").await?;
    assert_eq!((attempt, got), (2, truss_tests::proto_order()));
    Ok(())
}
