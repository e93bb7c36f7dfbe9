//! The outbox relay: events committed in order's SQLite outbox are published to a real Redis
//! stream (Debian's `redis-server`, started by the test) by `AppBuilder::relay`, with the
//! `[consumers]` / `[producers]` config choosing both ends. A consumer of the stream records
//! each event once with `first_delivery`:
//!
//! * every committed event arrives, with the outbox row's id as its `message-id`;
//! * while Redis does not answer, events stay in the outbox (nothing lost, however many
//!   attempts the outage takes) and arrive after;
//! * the same event published twice (a relay that died between publish and ack) takes
//!   effect once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use truss::queue::{
    ConsumerConfig, Message, PROCESSED_TABLE, ProducerConfig, QueueBackend, RedisStreams,
    first_delivery,
};
use truss::sql::{Database, DatabaseConfig};
use truss_tests::{BoxError, RedisServer};

const SUBJECT: &str = "order.created";

#[derive(Debug, Deserialize)]
struct OrderCreated {
    order_id: i64,
}

fn quick() -> ConsumerConfig {
    ConsumerConfig {
        max_attempts: 1000,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        ..ConsumerConfig::default()
    }
}

async fn count(db: &Database, table: &'static str) -> i64 {
    let sql = match table {
        "truss_queue" => "SELECT COUNT(*) FROM truss_queue",
        _ => "SELECT COUNT(*) FROM notifications",
    };
    db.read("count", async |c| {
        sqlx::query_scalar(sql).fetch_one(&mut *c).await
    })
    .await
    .unwrap_or(-1)
}

/// Waits (20 s at most) until `done` holds.
async fn until(what: &str, done: impl AsyncFn() -> bool) -> Result<(), BoxError> {
    for _ in 0..400 {
        if done().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("timed out waiting for {what}").into())
}

/// Commits an order's event in order's outbox.
async fn place(order: &Database, order_id: i64) -> Result<String, BoxError> {
    let body = format!(r#"{{"order_id":{order_id}}}"#);
    let id = order
        .transaction("place", async |c| {
            truss::queue::enqueue(c, SUBJECT, body.as_bytes(), &Default::default()).await
        })
        .await?;
    Ok(id)
}

#[tokio::test]
async fn the_relay_moves_the_outbox_to_redis_once_in_effect_and_waits_out_an_outage()
-> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let redis = RedisServer::start().await;
    let db_config = DatabaseConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let order = Database::connect(&db_config, "order").await?;
    truss::queue::SqlQueue::create_tables(&order).await?;
    let first = place(&order, 1).await?;
    place(&order, 2).await?;

    // The relay: order's outbox in, the Redis stream out, both from config.
    let mut config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(5));
    config.database = db_config.clone();
    config.redis.url = Some(redis.url());
    let outbox = ConsumerConfig {
        backend: QueueBackend::Sql,
        database: Some("order".to_owned()),
        // Fewer than the outage below takes: a relay retries a broker that is down for as
        // long as it is, whatever `max_attempts` says.
        max_attempts: 2,
        ..quick()
    };
    config.consumers.0.insert(SUBJECT.to_owned(), outbox);
    let broker = ProducerConfig {
        backend: QueueBackend::Redis,
        ..Default::default()
    };
    config.producers.0.insert(SUBJECT.to_owned(), broker);
    let producer = truss::queue::Producer::from_config(&config, SUBJECT).await?;
    let relay = truss::App::builder("order-relay")
        .config(&config)
        .relay(SUBJECT, producer)
        .start()
        .await?;

    // The consumer: once in effect, by message id (no key on the table: a repeat would add
    // a row).
    let notify = Database::connect(&db_config, "notify").await?;
    notify
        .run("tables", async |c| {
            sqlx::query(PROCESSED_TABLE).execute(&mut *c).await?;
            sqlx::query("CREATE TABLE notifications (order_id BIGINT NOT NULL)")
                .execute(&mut *c)
                .await?;
            Ok(())
        })
        .await?;
    let deliveries = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let (notify, deliveries, ids) = (notify.clone(), deliveries.clone(), ids.clone());
        move |msg: Message<OrderCreated>| {
            let (notify, deliveries, ids) = (notify.clone(), deliveries.clone(), ids.clone());
            async move {
                ids.lock().map(|mut ids| ids.push(msg.id.clone())).ok();
                notify
                    .transaction("record", async |c| {
                        if first_delivery(c, SUBJECT, &msg.id).await? {
                            sqlx::query("INSERT INTO notifications (order_id) VALUES ($1)")
                                .bind(msg.body.order_id)
                                .execute(&mut *c)
                                .await?;
                        }
                        Ok(())
                    })
                    .await?;
                // Counted once its transaction committed (or found it done).
                deliveries.fetch_add(1, Ordering::SeqCst);
                Ok::<_, truss::Error>(())
            }
        }
    };
    let stream = RedisStreams::connect(
        &redis.url(),
        SUBJECT,
        "notify",
        "n1",
        Duration::from_secs(30),
    )
    .await?;
    let consumer = truss::App::builder("notify")
        .config(&truss_tests::local_config(
            Duration::ZERO,
            Duration::from_secs(5),
        ))
        .consume("notify", Arc::new(stream), quick(), handler)
        .start()
        .await?;

    until("two notifications", async || {
        count(&notify, "notifications").await == 2
    })
    .await?;
    until("an empty outbox", async || {
        count(&order, "truss_queue").await == 0
    })
    .await?;
    assert!(
        ids.lock().map_err(|_| "poisoned")?.contains(&first),
        "the outbox id travels as message-id"
    );

    // Redis stops answering: the event waits in the outbox, then arrives.
    let attempts =
        "truss_consumer_messages_total{subscription=\"order.created\",result=\"retried\"}";
    let retried_before = truss_tests::metric_sample(attempts);
    let asleep = redis.sleep(Duration::from_secs(3)).await;
    place(&order, 3).await?;
    let failed = "truss_client_requests_total{transport=\"queue\",target=\"order.created\",operation=\"publish\",code=\"unavailable\"}";
    until("a failed publish", async || {
        truss_tests::metric_sample(failed) >= 1
    })
    .await?;
    assert_eq!(
        count(&order, "truss_queue").await,
        1,
        "the event left the outbox unpublished"
    );
    until("more publish attempts than max_attempts", async || {
        truss_tests::metric_sample(attempts) >= retried_before + 3
    })
    .await?;
    asleep.await?;
    until("the third notification", async || {
        count(&notify, "notifications").await == 3
    })
    .await?;
    until("an empty outbox", async || {
        count(&order, "truss_queue").await == 0
    })
    .await?;

    // A relay that published and died before its ack publishes again: same message-id.
    let entries = redis.cli(&["XRANGE", SUBJECT, "-", "+", "COUNT", "1"])?;
    let message_id = entries
        .lines()
        .skip_while(|l| l.trim() != "h:message-id")
        .nth(1)
        .ok_or("no message-id field")?
        .trim()
        .to_owned();
    let before = deliveries.load(Ordering::SeqCst);
    let body = r#"{"order_id":1}"#;
    redis.cli(&[
        "XADD",
        SUBJECT,
        "*",
        "payload",
        body,
        "h:message-id",
        &message_id,
    ])?;
    until("the repeated delivery", async || {
        deliveries.load(Ordering::SeqCst) > before
    })
    .await?;
    assert_eq!(
        count(&notify, "notifications").await,
        3,
        "the repeat took effect"
    );

    consumer.shutdown().await?;
    relay.shutdown().await?;
    Ok(())
}
