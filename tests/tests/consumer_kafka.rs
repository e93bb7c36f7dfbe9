//! Consumers and producers on Kafka. No Kafka broker can run on this machine (no Debian
//! package, no download), so these run against librdkafka's own in-process mock cluster
//! (`rdkafka::mocking::MockCluster`: a real Kafka protocol server inside the test, with
//! consumer groups and committed offsets), the test broker the client library ships.
//!
//! * From `[consumers]` / `[producers]`: acked after success, retried with `attempt` + 1,
//!   dead-lettered to `<topic>.dead` with the reason, the producer's trace continued; a
//!   foreign producer's own `attempt` header is its own, not the delivery count.
//! * At-least-once across consumers: the committed position never passes a message still
//!   in flight, so the next member of the group gets it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use serde::Deserialize;
use truss::observe::trace::TraceContext;
use truss::queue::{
    Backend, ConsumerConfig, KafkaSettings, KafkaTopic, Message, Producer, ProducerConfig,
    QueueBackend,
};
use truss_tests::BoxError;

#[derive(Debug, Deserialize)]
struct OrderCreated {
    order_id: u64,
}

/// Waits (30 s at most: a group's first join takes 3 s on the mock) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) -> Result<(), BoxError> {
    for _ in 0..600 {
        if done() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("timed out waiting for {what}").into())
}

/// Everything `topic` holds, read by a group of its own.
async fn read_all(
    bootstrap: &str,
    topic: &str,
    want: usize,
) -> Result<Vec<truss::queue::Delivery>, BoxError> {
    let reader = KafkaTopic::connect(KafkaSettings::new(bootstrap, topic, "inspector"))?;
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(reader.fetch(10, Duration::from_millis(300)).await?);
        if got.len() >= want {
            break;
        }
    }
    Ok(got)
}

/// Produces `payload` to `orders` with one header, as a producer other than truss would.
async fn send_foreign(
    bootstrap: &str,
    payload: &str,
    (name, value): (&str, &str),
) -> Result<(), BoxError> {
    use rdkafka::config::ClientConfig;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let headers = OwnedHeaders::new().insert(Header {
        key: name,
        value: Some(value),
    });
    let record = FutureRecord::to("orders")
        .payload(payload)
        .key("order-4")
        .headers(headers);
    producer
        .send(record, Duration::from_secs(5))
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

#[tokio::test]
async fn configured_kafka_consumers_ack_retry_dead_letter_and_keep_the_trace()
-> Result<(), BoxError> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("orders", 2, 1)?;
    cluster.create_topic("orders.dead", 1, 1)?;
    let bootstrap = cluster.bootstrap_servers();

    let mut config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(5));
    let consumer = ConsumerConfig {
        backend: QueueBackend::Kafka,
        url: Some(bootstrap.clone()),
        max_attempts: 3,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        poll: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    config.consumers.0.insert("orders".to_owned(), consumer);
    let producer = ProducerConfig {
        backend: QueueBackend::Kafka,
        url: Some(bootstrap.clone()),
        ..Default::default()
    };
    config.producers.0.insert("orders".to_owned(), producer);

    let calls = Arc::new(AtomicUsize::new(0));
    let traces = Arc::new(std::sync::Mutex::new(Vec::new()));
    let foreign = Arc::new(std::sync::Mutex::new(None));
    let handler = {
        let (calls, traces, foreign) = (calls.clone(), traces.clone(), foreign.clone());
        move |msg: Message<OrderCreated>| {
            let (calls, traces, foreign) = (calls.clone(), traces.clone(), foreign.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if msg.body.order_id == 4 {
                    let seen = (msg.attempt, msg.headers.get("attempt").cloned());
                    foreign.lock().map(|mut f| *f = Some(seen)).ok();
                    return Ok(());
                }
                let trace = TraceContext::current().map(|t| t.trace_id_hex());
                traces.lock().map(|mut t| t.push((msg.attempt, trace))).ok();
                match msg.body.order_id {
                    1 => Err(truss::Error::unavailable(
                        "MAILER_DOWN",
                        "the mailer is down",
                    )),
                    2 => Err(truss::Error::new(400, "BAD_ORDER", "order 2 is malformed")),
                    _ => Ok(()),
                }
            }
        }
    };
    let app = truss::App::builder("notify")
        .config(&config)
        .consumer("orders", handler)
        .start()
        .await?;
    let producer = Producer::from_config(&config, "orders").await?;
    let request = TraceContext::new_root();
    let want = request.trace_id_hex();
    for order_id in 1..=3 {
        let body = serde_json::json!({ "order_id": order_id });
        let key = format!("order-{order_id}");
        request
            .clone()
            .scope(producer.send_keyed(&key, &body))
            .await?;
    }
    // Another producer's message with an `attempt` header of its own.
    send_foreign(&bootstrap, r#"{"order_id":4}"#, ("attempt", "7")).await?;
    until("six handler calls", || calls.load(Ordering::SeqCst) >= 6).await?;
    let dead = read_all(&bootstrap, "orders.dead", 2).await?;
    app.shutdown().await?;

    assert_eq!(calls.load(Ordering::SeqCst), 6);
    let foreign = foreign.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(
        foreign,
        Some((1, Some("7".to_owned()))),
        "a first delivery, its header kept"
    );
    let traces = traces.lock().map_err(|_| "poisoned")?.clone();
    assert!(
        traces
            .iter()
            .all(|(_, t)| t.as_deref() == Some(want.as_str())),
        "the producer's trace {want} in every call: {traces:?}"
    );
    let attempts: Vec<u32> = traces.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        attempts.iter().max(),
        Some(&3),
        "order 1 three times: {attempts:?}"
    );
    let reasons: Vec<String> = dead
        .iter()
        .filter_map(|d| d.headers.get("dead-letter-reason").cloned())
        .collect();
    assert_eq!(reasons.len(), 2, "{dead:?}");
    assert!(
        reasons.iter().any(|r| r.contains("the mailer is down")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("order 2 is malformed")),
        "{reasons:?}"
    );
    assert!(
        dead.iter()
            .all(|d| d.key.as_deref().is_some_and(|k| k.starts_with("order-"))),
        "dead letters keep their key: {dead:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_group_never_commits_past_a_message_in_flight() -> Result<(), BoxError> {
    let cluster = MockCluster::new(1)?;
    cluster.create_topic("jobs", 1, 1)?;
    let bootstrap = cluster.bootstrap_servers();
    let mut settings = KafkaSettings::new(&bootstrap, "jobs", "workers");
    // A member that vanished is given up after 3 s (Kafka's default is 45 s).
    settings
        .extra
        .insert("session.timeout.ms".to_owned(), "3000".to_owned());
    settings
        .extra
        .insert("heartbeat.interval.ms".to_owned(), "500".to_owned());

    let first = KafkaTopic::connect(settings.clone())?;
    for job in 0..5 {
        first
            .publish(format!(r#"{{"order_id":{job}}}"#), Default::default())
            .await?;
    }
    let mut held = Vec::new();
    for _ in 0..100 {
        held.extend(first.fetch(10, Duration::from_millis(300)).await?);
        if held.len() >= 5 {
            break;
        }
    }
    assert_eq!(held.len(), 5);
    // Every job but the third finishes; the third's worker dies with it.
    for (i, delivery) in held.iter().enumerate() {
        if i != 2 {
            first.ack(delivery).await?;
        }
    }
    first.flush().await?;
    drop(first);

    let next = KafkaTopic::connect(settings)?;
    let mut again = Vec::new();
    for _ in 0..100 {
        again.extend(next.fetch(10, Duration::from_millis(300)).await?);
        if !again.is_empty() {
            break;
        }
    }
    let ids: Vec<&str> = again.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids.first().copied(),
        Some(held[2].id.as_str()),
        "the unfinished job comes first to the next member: {ids:?}"
    );
    Ok(())
}
