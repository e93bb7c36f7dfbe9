//! Consumers and producers on a real NATS JetStream (Debian's `nats-server -js`, started by
//! the test on a free port): configured from `[consumers]` / `[producers]`, acked after
//! success, retried by the server (a delayed negative ack), dead-lettered to
//! `<subject>.dead` with the reason, the producer's trace continued; a message left
//! unsettled by a consumer that died is delivered again to the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use truss::observe::trace::TraceContext;
use truss::queue::{
    Backend, ConsumerConfig, JetStreamSettings, Message, NatsJetStream, Producer, ProducerConfig,
    QueueBackend,
};
use truss_tests::{BoxError, NatsServer};

#[derive(Debug, Deserialize)]
struct OrderCreated {
    order_id: u64,
}

fn quick(url: &str) -> ConsumerConfig {
    ConsumerConfig {
        backend: QueueBackend::Nats,
        url: Some(url.to_owned()),
        max_attempts: 3,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        poll: Duration::from_millis(100),
        ..ConsumerConfig::default()
    }
}

/// Waits (20 s at most) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) -> Result<(), BoxError> {
    for _ in 0..400 {
        if done() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("timed out waiting for {what}").into())
}

#[tokio::test]
async fn configured_nats_consumers_ack_retry_dead_letter_and_keep_the_trace() -> Result<(), BoxError>
{
    let nats = NatsServer::start().await;
    let subject = "orders.created";
    let mut config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(5));
    config
        .consumers
        .0
        .insert(subject.to_owned(), quick(&nats.url()));
    let producer_config = ProducerConfig {
        backend: QueueBackend::Nats,
        url: Some(nats.url()),
        ..Default::default()
    };
    config
        .producers
        .0
        .insert(subject.to_owned(), producer_config);

    // Order 1 fails with a 503 every time (retried, then dead), order 2 with a 400 (dead at
    // once), order 3 succeeds.
    let calls = Arc::new(AtomicUsize::new(0));
    let traces = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let (calls, traces) = (calls.clone(), traces.clone());
        move |msg: Message<OrderCreated>| {
            let (calls, traces) = (calls.clone(), traces.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let trace = TraceContext::current().map(|t| t.trace_id_hex());
                traces
                    .lock()
                    .map(|mut t| t.push((msg.body.order_id, trace)))
                    .ok();
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
        .consumer(subject, handler)
        .start()
        .await?;
    let producer = Producer::from_config(&config, subject).await?;
    let request = TraceContext::new_root();
    let want = request.trace_id_hex();
    for order_id in 1..=3 {
        let body = serde_json::json!({ "order_id": order_id });
        request.clone().scope(producer.send(&body)).await?;
    }
    // 3 calls for order 1, 1 for order 2, 1 for order 3.
    until("five handler calls", || calls.load(Ordering::SeqCst) >= 5).await?;
    let dead = dead_letters(&nats, subject, 2).await?;
    app.shutdown().await?;

    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let traces = traces.lock().map_err(|_| "poisoned")?.clone();
    assert!(
        traces
            .iter()
            .all(|(_, t)| t.as_deref() == Some(want.as_str())),
        "the producer's trace {want} in every call: {traces:?}"
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
    let acked = r#"truss_consumer_messages_total{subscription="orders.created",result="acked"}"#;
    let retried =
        r#"truss_consumer_messages_total{subscription="orders.created",result="retried"}"#;
    let dead_lettered =
        r#"truss_consumer_messages_total{subscription="orders.created",result="dead_lettered"}"#;
    assert_eq!(truss_tests::metric_sample(acked), 1);
    assert_eq!(truss_tests::metric_sample(retried), 2);
    assert_eq!(truss_tests::metric_sample(dead_lettered), 2);
    Ok(())
}

/// The dead letters of `subject`, read with a durable of their own.
async fn dead_letters(
    nats: &NatsServer,
    subject: &str,
    want: usize,
) -> Result<Vec<truss::queue::Delivery>, BoxError> {
    let dead_subject = format!("{subject}.dead");
    let mut settings = JetStreamSettings::new(&dead_subject, "inspector");
    settings.stream = JetStreamSettings::new(subject, "x").stream;
    settings.dead_letter_subject = format!("{dead_subject}.unused");
    let reader = NatsJetStream::connect(&nats.url(), settings).await?;
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(reader.fetch(10, Duration::from_millis(200)).await?);
        if got.len() >= want {
            break;
        }
    }
    Ok(got)
}

#[tokio::test]
async fn a_message_a_dead_consumer_held_is_delivered_to_the_next() -> Result<(), BoxError> {
    let nats = NatsServer::start().await;
    let mut settings = JetStreamSettings::new("jobs", "workers");
    settings.ack_wait = Duration::from_secs(1);
    let first = NatsJetStream::connect(&nats.url(), settings.clone()).await?;
    let id = first
        .publish(r#"{"order_id":7}"#, Default::default())
        .await?;
    assert_eq!(first.lag().await?, Some(1));
    let held = first.fetch(10, Duration::from_secs(5)).await?;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, id, "the stream sequence is the id");
    drop(first); // dies without settling

    let next = NatsJetStream::connect(&nats.url(), settings).await?;
    let mut again = Vec::new();
    for _ in 0..50 {
        again = next.fetch(10, Duration::from_millis(200)).await?;
        if !again.is_empty() {
            break;
        }
    }
    assert_eq!(again.len(), 1, "delivered again after ack_wait");
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].attempt, 2);
    next.ack(&again[0]).await?;
    let mut settled = false;
    for _ in 0..50 {
        if next.unsettled().await? == 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(settled, "the ack reached the server");
    Ok(())
}

#[tokio::test]
async fn a_nats_server_that_is_down_fails_the_start_with_a_clear_error() -> Result<(), BoxError> {
    let mut nats = NatsServer::start().await;
    let url = nats.url();
    nats.stop();
    let mut config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(5));
    config.consumers.0.insert("orders".to_owned(), quick(&url));
    let handler = |_: Message<OrderCreated>| async { Ok::<_, truss::Error>(()) };
    let started = truss::App::builder("notify")
        .config(&config)
        .consumer("orders", handler)
        .start()
        .await;
    let error = started.err().ok_or("started without its NATS server")?;
    assert!(error.to_string().contains("cannot reach NATS"), "{error}");
    Ok(())
}
