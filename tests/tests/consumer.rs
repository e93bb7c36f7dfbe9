//! Message consumers as an app listener, on the in-process backend: ack after success,
//! retries then a dead letter with the reason, panics survived, the producer's trace
//! continued, and graceful shutdown that finishes what is in flight and loses nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Mutex, Notify};
use truss::queue::{Backend, ConsumerConfig, MemoryBackend, Message, Producer, Proto};
use truss_tests::BoxError;

#[derive(Debug, Deserialize)]
struct OrderCreated {
    order_id: u64,
}

fn quick(max_attempts: u32) -> ConsumerConfig {
    ConsumerConfig {
        max_attempts,
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        deadline: Duration::from_secs(5),
        poll: Duration::from_millis(20),
        ..ConsumerConfig::default()
    }
}

fn config() -> truss::Config {
    truss_tests::local_config(Duration::ZERO, Duration::from_secs(5))
}

/// Waits (10 s at most) until `done` holds.
async fn until(done: impl Fn() -> bool) -> Result<(), BoxError> {
    for _ in 0..1000 {
        if done() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("timed out".into())
}

#[tokio::test]
async fn handled_messages_are_acked_and_continue_the_producers_trace() -> Result<(), BoxError> {
    let queue = Arc::new(MemoryBackend::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        move |msg: Message<OrderCreated>| {
            let seen = seen.clone();
            async move {
                let trace =
                    truss::observe::trace::TraceContext::current().map(|t| t.trace_id_hex());
                seen.lock().await.push((msg.body.order_id, trace));
                Ok::<_, truss::Error>(())
            }
        }
    };
    let app = truss::App::builder("notify")
        .config(&config())
        .consume("order.created", queue.clone(), quick(3), handler)
        .start()
        .await?;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut headers = std::collections::BTreeMap::new();
    headers.insert(
        "traceparent".to_owned(),
        format!("00-{trace_id}-00f067aa0ba902b7-01"),
    );
    queue.publish(r#"{"order_id":1}"#, headers);
    queue.publish(r#"{"order_id":2}"#, Default::default());
    until(|| queue.acked() == 2).await?;
    let seen = seen.lock().await.clone();
    assert!(seen.contains(&(1, Some(trace_id.to_owned()))), "{seen:?}");
    assert!(
        seen.iter().any(|(id, t)| *id == 2 && t.is_some()),
        "a new trace: {seen:?}"
    );
    assert_eq!(queue.pending(), 0);
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn failures_are_retried_then_dead_lettered_and_panics_do_not_stop_the_consumer()
-> Result<(), BoxError> {
    let queue = Arc::new(MemoryBackend::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        move |msg: Message<OrderCreated>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                match msg.body.order_id {
                    1 => Err(truss::Error::unavailable(
                        "MAILER_DOWN",
                        "the mailer is down",
                    )),
                    2 => Err(truss::Error::bad_request(
                        "NO_EMAIL",
                        "the user has no email",
                    )),
                    3 => panic!("a bug in the handler"),
                    _ => Ok(()),
                }
            }
        }
    };
    let app = truss::App::builder("notify")
        .config(&config())
        .consume("order.created", queue.clone(), quick(3), handler)
        .start()
        .await?;
    for body in [
        r#"{"order_id":1}"#,
        r#"{"order_id":2}"#,
        r#"{"order_id":3}"#,
        "not json",
    ] {
        queue.publish(body, Default::default());
    }
    until(|| queue.dead_letters().len() == 4).await?;
    // Still consuming after the panics.
    queue.publish(r#"{"order_id":4}"#, Default::default());
    until(|| queue.acked() == 1).await?;

    let dead = queue.dead_letters();
    let reason = |id: &str| {
        dead.iter()
            .find(|d| d.payload.as_ref() == format!(r#"{{"order_id":{id}}}"#).as_bytes())
            .map(|d| (d.attempt, d.headers["dead-letter-reason"].clone()))
            .unwrap_or_default()
    };
    let (attempts, why) = reason("1");
    assert_eq!(attempts, 3, "a 503 is retried up to max_attempts");
    assert!(why.contains("MAILER_DOWN"), "{why}");
    let (attempts, why) = reason("2");
    assert_eq!(attempts, 1, "a 400 is not retried");
    assert!(why.contains("NO_EMAIL"), "{why}");
    let (attempts, why) = reason("3");
    assert_eq!(attempts, 3);
    assert!(why.contains("panicked"), "{why}");
    let malformed = dead
        .iter()
        .find(|d| d.payload.as_ref() == b"not json")
        .ok_or("malformed")?;
    assert!(malformed.headers["dead-letter-reason"].contains("does not decode"));
    // 3 + 1 + 3 handler calls for 1, 2, 3, none for the malformed one, 1 for 4.
    assert_eq!(calls.load(Ordering::SeqCst), 8);
    assert_eq!(queue.pending(), 0);
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn shutdown_finishes_in_flight_messages_and_leaves_the_rest_pending() -> Result<(), BoxError>
{
    let queue = Arc::new(MemoryBackend::new());
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let handler = {
        let (started, release) = (started.clone(), release.clone());
        move |_: Message<OrderCreated>| {
            let (started, release) = (started.clone(), release.clone());
            async move {
                started.notify_one();
                release.notified().await;
                Ok::<_, truss::Error>(())
            }
        }
    };
    let one_at_a_time = ConsumerConfig {
        max_in_flight: 1,
        ..quick(3)
    };
    let app = truss::App::builder("notify")
        .config(&config())
        .consume("order.created", queue.clone(), one_at_a_time, handler)
        .start()
        .await?;
    queue.publish(r#"{"order_id":1}"#, Default::default());
    started.notified().await;
    queue.publish(r#"{"order_id":2}"#, Default::default());

    let stopping = tokio::spawn(app.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown waits for the message in flight"
    );
    release.notify_one();
    stopping.await??;
    assert_eq!(
        queue.acked(),
        1,
        "the message in flight finished and was acked"
    );
    assert_eq!(
        queue.pending(),
        1,
        "the next one was not fetched: still pending"
    );
    Ok(())
}

#[tokio::test]
async fn a_message_abandoned_at_the_grace_limit_is_delivered_again() -> Result<(), BoxError> {
    let queue = Arc::new(MemoryBackend::new());
    let started = Arc::new(Notify::new());
    let handler = {
        let started = started.clone();
        move |_: Message<OrderCreated>| {
            let started = started.clone();
            async move {
                started.notify_one();
                std::future::pending::<()>().await;
                Ok::<_, truss::Error>(())
            }
        }
    };
    let short_grace = truss_tests::local_config(Duration::ZERO, Duration::from_millis(50));
    let app = truss::App::builder("notify")
        .config(&short_grace)
        .consume("order.created", queue.clone(), quick(3), handler)
        .start()
        .await?;
    queue.publish(r#"{"order_id":1}"#, Default::default());
    started.notified().await;
    app.shutdown().await?;
    assert_eq!(queue.acked(), 0);
    assert_eq!(queue.pending(), 1, "unacknowledged, not lost");
    // What a broker does for a consumer that went away.
    assert_eq!(queue.redeliver_unacked(), 1);
    let again = queue.fetch(1, Duration::ZERO).await?;
    assert_eq!(again.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_redelivered_message_takes_effect_once_with_first_delivery() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let db_config = truss::sql::DatabaseConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let db = truss::sql::Database::connect(&db_config, "notify").await?;
    db.run("setup", async |conn| {
        sqlx::query(truss::queue::PROCESSED_TABLE)
            .execute(&mut *conn)
            .await?;
        sqlx::query("CREATE TABLE notifications (order_id INTEGER NOT NULL)")
            .execute(&mut *conn)
            .await
    })
    .await?;
    let queue = Arc::new(MemoryBackend::new());
    let calls = Arc::new(AtomicUsize::new(0));
    // Commits its effect, then fails as if the process died before the ack: the message
    // is delivered again (same id), and the second delivery must not notify twice.
    let handler = {
        let (db, calls) = (db.clone(), calls.clone());
        move |msg: Message<OrderCreated>| {
            let (db, calls) = (db.clone(), calls.clone());
            async move {
                let attempt = calls.fetch_add(1, Ordering::SeqCst);
                db.transaction("notify", async |conn| {
                    if !truss::queue::first_delivery(conn, "order.created", &msg.id).await? {
                        return Ok(());
                    }
                    sqlx::query("INSERT INTO notifications (order_id) VALUES ($1)")
                        .bind(msg.body.order_id as i64)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
                .await?;
                if attempt == 0 {
                    return Err(truss::Error::unavailable("LOST_ACK", "died before the ack"));
                }
                Ok(())
            }
        }
    };
    let app = truss::App::builder("notify")
        .config(&config())
        .consume("order.created", queue.clone(), quick(3), handler)
        .start()
        .await?;
    queue.publish(r#"{"order_id":9}"#, Default::default());
    until(|| queue.acked() == 1).await?;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "delivered twice");
    let rows: i64 = db
        .read("count", async |conn| {
            sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
                .fetch_one(&mut *conn)
                .await
        })
        .await?;
    assert_eq!(rows, 1, "notified once");
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn consumers_can_come_from_config() -> Result<(), BoxError> {
    // A config error names the key and the source.
    let error = truss::config::ConfigLoader::new()
        .args(["notify"])
        .env_vars([("TRUSS_CONSUMERS__BILLING__MAX_ATTEMPTS", "0")])
        .load::<truss::config::NoAppConfig>()
        .expect_err("0 attempts");
    let text = error.to_string();
    assert!(
        text.contains("consumers.\"billing\".max_attempts"),
        "{text}"
    );
    assert!(
        text.contains("TRUSS_CONSUMERS__BILLING__MAX_ATTEMPTS"),
        "{text}"
    );

    // `[consumers."billing"]` in memory (the default backend), one attempt only.
    let mut config = config();
    config.consumers.0.insert(
        "billing".to_owned(),
        ConsumerConfig {
            max_attempts: 1,
            ..quick(1)
        },
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        move |_: Message<OrderCreated>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(truss::Error::unavailable("DOWN", "down"))
            }
        }
    };
    let app = truss::App::builder("notify")
        .config(&config)
        .consumer("billing", handler)
        .start()
        .await?;
    let queue = MemoryBackend::shared("billing");
    queue.publish(r#"{"order_id":1}"#, Default::default());
    until(|| queue.dead_letters().len() == 1).await?;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "max_attempts = 1 from config: no retry"
    );
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_producer_carries_the_trace_to_the_consumer_and_keeps_the_deadline()
-> Result<(), BoxError> {
    use truss::observe::trace::TraceContext;
    use truss::queue::Producer;
    use truss::resilience::deadline::Deadline;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        move |_: Message<OrderCreated>| {
            let seen = seen.clone();
            async move {
                let trace = TraceContext::current().map(|t| t.trace_id_hex());
                seen.lock().await.push(trace);
                Ok::<_, truss::Error>(())
            }
        }
    };
    let app = truss::App::builder("notify")
        .config(&config())
        .consumer("traced", handler)
        .start()
        .await?;
    let queue = MemoryBackend::shared("traced");
    let producer = Producer::new("traced", queue.clone(), &Default::default());

    // Sent while serving a traced request: the consumer continues that trace.
    let request = TraceContext::new_root();
    let want = request.trace_id_hex();
    request
        .scope(producer.send(&serde_json::json!({"order_id": 1})))
        .await?;
    until(|| queue.acked() == 1).await?;
    assert_eq!(seen.lock().await.clone(), [Some(want)]);

    // A request whose deadline has passed publishes nothing.
    let error = Deadline::after(Duration::ZERO)
        .scope(producer.send(&serde_json::json!({"order_id": 2})))
        .await
        .expect_err("deadline passed");
    assert_eq!(error.code(), 504);
    assert_eq!(queue.pending(), 0);
    let ok = r#"truss_client_requests_total{transport="queue",target="traced",operation="publish",code="ok"}"#;
    assert_eq!(truss_tests::metric_sample(ok), 1);
    app.shutdown().await?;
    Ok(())
}

/// `truss_consumer_lag` of `subscription`, as the app's `/metrics` shows it.
fn lag(subscription: &str) -> u64 {
    truss_tests::metric_sample(&format!(
        "truss_consumer_lag{{subscription=\"{subscription}\"}}"
    ))
}

#[tokio::test]
async fn lag_rises_while_the_consumer_is_stalled_and_falls_to_zero_after() -> Result<(), BoxError> {
    let queue = Arc::new(MemoryBackend::new());
    // The handler waits for the test: the consumer holds one message and takes no other.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = {
        let gate = gate.clone();
        move |_: Message<OrderCreated>| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.map(|permit| permit.forget()).ok();
                Ok::<_, truss::Error>(())
            }
        }
    };
    let one_at_a_time = ConsumerConfig {
        max_in_flight: 1,
        ..quick(3)
    };
    let app = truss::App::builder("lagging")
        .config(&config())
        .consume("lagging", queue.clone(), one_at_a_time, handler)
        .start()
        .await?;
    let publish = |n: u64| {
        for order_id in 0..n {
            let body = format!(r#"{{"order_id":{order_id}}}"#);
            queue.publish(body, Default::default());
        }
    };
    publish(5);
    until(|| lag("lagging") == 4).await?;
    publish(5);
    until(|| lag("lagging") == 9).await?;
    gate.add_permits(100);
    until(|| lag("lagging") == 0 && queue.pending() == 0).await?;
    app.shutdown().await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Step {
    seq: u32,
}

#[tokio::test]
async fn one_key_is_handled_in_order_and_keys_run_side_by_side() -> Result<(), BoxError> {
    let queue = MemoryBackend::shared("keyed-steps");
    let producer = truss::queue::Producer::new("keyed-steps", queue.clone(), &Default::default());
    for seq in 0..5 {
        producer
            .send_keyed("a", &serde_json::json!({ "seq": seq }))
            .await?;
        producer
            .send_keyed("b", &serde_json::json!({ "seq": seq }))
            .await?;
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let busy = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        u32,
    >::new()));
    // a's first step waits until b has started: were keys handled one after the other, it
    // would wait for ever (and the test time out).
    let b_started = Arc::new(Notify::new());
    let handler = {
        let (seen, busy, b_started) = (seen.clone(), busy.clone(), b_started.clone());
        move |msg: Message<Step>| {
            let (seen, busy, b_started) = (seen.clone(), busy.clone(), b_started.clone());
            async move {
                let key = msg.key.clone().unwrap_or_default();
                let at_once = {
                    let mut busy = busy
                        .lock()
                        .map_err(|_| truss::Error::internal("X", "poisoned"))?;
                    let n = busy.entry(key.clone()).or_default();
                    *n += 1;
                    *n
                };
                if key == "b" {
                    b_started.notify_one();
                } else if msg.body.seq == 0 {
                    b_started.notified().await;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                if let Ok(mut busy) = busy.lock() {
                    busy.entry(key.clone()).and_modify(|n| *n -= 1);
                }
                if let Ok(mut seen) = seen.lock() {
                    seen.push((key, msg.body.seq, at_once));
                }
                Ok::<_, truss::Error>(())
            }
        }
    };
    let app = truss::App::builder("keyed")
        .config(&config())
        .consume("keyed-steps", queue.clone(), quick(3), handler)
        .start()
        .await?;
    until(|| seen.lock().map(|s| s.len() == 10).unwrap_or(false)).await?;
    app.shutdown().await?;
    let seen = seen.lock().map_err(|_| "poisoned")?.clone();
    for key in ["a", "b"] {
        let steps: Vec<u32> = seen.iter().filter(|s| s.0 == key).map(|s| s.1).collect();
        assert_eq!(steps, [0, 1, 2, 3, 4], "order of {key}: {seen:?}");
    }
    assert!(
        seen.iter().all(|s| s.2 == 1),
        "two of one key at once: {seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_rate_limit_spaces_the_handler_starts() -> Result<(), BoxError> {
    let queue = Arc::new(MemoryBackend::new());
    for order_id in 0..10 {
        queue.publish(format!(r#"{{"order_id":{order_id}}}"#), Default::default());
    }
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let starts = starts.clone();
        move |_: Message<OrderCreated>| {
            let starts = starts.clone();
            async move {
                starts
                    .lock()
                    .map(|mut s| s.push(std::time::Instant::now()))
                    .ok();
                Ok::<_, truss::Error>(())
            }
        }
    };
    let paced = ConsumerConfig {
        rate_limit: 20.0,
        ..quick(3)
    };
    let app = truss::App::builder("paced")
        .config(&config())
        .consume("paced", queue.clone(), paced, handler)
        .start()
        .await?;
    until(|| starts.lock().map(|s| s.len() == 10).unwrap_or(false)).await?;
    app.shutdown().await?;
    let starts = starts.lock().map_err(|_| "poisoned")?.clone();
    // 10 starts at 20/s, burst 1: at least 9 intervals of 50 ms (a lower bound: a slow
    // machine only adds to it). Unlimited, they all start within a few ms.
    let span = starts[9].duration_since(starts[0]);
    assert!(
        span >= Duration::from_millis(440),
        "10 starts within {span:?}"
    );
    Ok(())
}

#[derive(Clone, PartialEq, prost::Message)]
struct OrderPlaced {
    #[prost(uint64, tag = "1")]
    order_id: u64,
    #[prost(string, tag = "2")]
    item: String,
}

#[tokio::test]
async fn protobuf_bodies_decode_and_a_json_body_is_dead_lettered_with_the_reason()
-> Result<(), BoxError> {
    let queue = MemoryBackend::shared("proto.orders");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        move |msg: Message<Proto<OrderPlaced>>| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .await
                    .push((msg.body.order_id, msg.body.item.clone()));
                Ok::<_, truss::Error>(())
            }
        }
    };
    let app = truss::App::builder("notify")
        .config(&config())
        .consume("proto.orders", queue.clone(), quick(3), handler)
        .start()
        .await?;
    let producer = Producer::new("proto.orders", queue.clone(), &Default::default());
    let placed = OrderPlaced {
        order_id: 7,
        item: "tea".to_owned(),
    };
    producer.send(&Proto(placed)).await?;
    producer.send(&serde_json::json!({"order_id": 8})).await?;
    until(|| queue.acked() == 1 && queue.dead_letters().len() == 1).await?;
    assert_eq!(*seen.lock().await, [(7, "tea".to_owned())]);
    let dead = queue.dead_letters();
    let why = dead
        .first()
        .and_then(|d| d.headers.get("dead-letter-reason"))
        .cloned()
        .unwrap_or_default();
    assert!(
        why.contains("application/json") && why.contains("application/protobuf"),
        "{why}"
    );
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_tower_service_handles_messages_under_its_layers() -> Result<(), BoxError> {
    let queue = Arc::new(MemoryBackend::new());
    let handled = Arc::new(Mutex::new(Vec::new()));
    let inner = {
        let handled = handled.clone();
        tower::service_fn(move |msg: Message<OrderCreated>| {
            let handled = handled.clone();
            async move {
                if msg.body.order_id == 2 {
                    // Past the layer's timeout: a 504, retried, then dead-lettered.
                    std::future::pending::<()>().await;
                }
                let stamp = msg.headers.get("stamped-by").cloned();
                handled.lock().await.push((msg.body.order_id, stamp));
                Ok::<_, truss::Error>(())
            }
        })
    };
    let service = tower::ServiceBuilder::new()
        .map_request(|mut msg: Message<OrderCreated>| {
            msg.headers
                .insert("stamped-by".to_owned(), "layer".to_owned());
            msg
        })
        .timeout(Duration::from_millis(50))
        .service(inner);
    let app = truss::App::builder("notify")
        .config(&config())
        .consume(
            "order.created",
            queue.clone(),
            quick(2),
            truss::queue::service(service),
        )
        .start()
        .await?;
    queue.publish(r#"{"order_id":1}"#, Default::default());
    queue.publish(r#"{"order_id":2}"#, Default::default());
    until(|| queue.acked() == 1 && queue.dead_letters().len() == 1).await?;
    assert_eq!(*handled.lock().await, [(1, Some("layer".to_owned()))]);
    let dead = queue.dead_letters();
    let (attempt, why) = dead
        .first()
        .map(|d| (d.attempt, d.headers["dead-letter-reason"].clone()))
        .unwrap_or_default();
    assert_eq!(attempt, 2, "the timeout is retried");
    assert!(why.contains("HANDLER_TIMEOUT"), "{why}");
    app.shutdown().await?;
    Ok(())
}
