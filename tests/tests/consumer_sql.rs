//! The SQL queue and its transactional outbox, on SQLite (a file in a temp dir) and on a
//! real PostgreSQL (Debian's, started by the test): a message exists exactly when the
//! transaction that wrote it commits, is consumed and deleted once handled, retried then
//! dead-lettered with the reason, and delivered again when its consumer's claim runs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use truss::queue::{Backend, ConsumerConfig, Message, SqlQueue, enqueue, trace_headers};
use truss::sql::{Database, DatabaseConfig};
use truss_tests::BoxError;

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

async fn until(done: impl AsyncFn() -> bool) -> Result<(), BoxError> {
    for _ in 0..500 {
        if done().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("timed out".into())
}

async fn count(db: &Database, table: &'static str) -> i64 {
    let sql = match table {
        "truss_queue" => "SELECT COUNT(*) FROM truss_queue",
        "truss_queue_dead" => "SELECT COUNT(*) FROM truss_queue_dead",
        _ => "SELECT COUNT(*) FROM orders",
    };
    db.read("count", async |conn| {
        sqlx::query_scalar(sql).fetch_one(&mut *conn).await
    })
    .await
    .unwrap_or(-1)
}

async fn setup(db: &Database) -> Result<(), BoxError> {
    SqlQueue::create_tables(db).await?;
    db.run("orders", async |conn| {
        sqlx::query("CREATE TABLE IF NOT EXISTS orders (id BIGINT PRIMARY KEY)")
            .execute(&mut *conn)
            .await
    })
    .await?;
    Ok(())
}

/// Writes order `id` and its event in one transaction; `commit: false` rolls both back.
async fn place_order(db: &Database, id: i64, commit: bool) -> Result<(), truss::sql::SqlError> {
    db.transaction("create_order", async |conn| {
        sqlx::query("INSERT INTO orders (id) VALUES ($1)")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        let event = format!(r#"{{"order_id":{id}}}"#);
        enqueue(conn, "order.created", event.as_bytes(), &trace_headers()).await?;
        if commit {
            Ok(())
        } else {
            Err(sqlx::Error::Protocol("rolled back on purpose".into()))
        }
    })
    .await
}

async fn outbox_then_consumer(db: Database) -> Result<(), BoxError> {
    setup(&db).await?;
    assert!(place_order(&db, 1, false).await.is_err());
    assert_eq!(
        count(&db, "truss_queue").await,
        0,
        "rolled back: no message"
    );
    assert_eq!(count(&db, "orders").await, 0);
    place_order(&db, 2, true).await?;
    place_order(&db, 3, true).await?;
    assert_eq!(
        count(&db, "truss_queue").await,
        2,
        "committed: the messages with the orders"
    );

    let handled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let handled = handled.clone();
        move |msg: Message<OrderCreated>| {
            let handled = handled.clone();
            async move {
                if msg.body.order_id == 3 {
                    return Err(truss::Error::unavailable("MAILER_DOWN", "down"));
                }
                handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    };
    let queue = SqlQueue::new(
        db.clone(),
        "order.created",
        "notify-1",
        Duration::from_secs(30),
    );
    let config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(5));
    let app = truss::App::builder("notify")
        .config(&config)
        .consume("order.created", Arc::new(queue), quick(), handler)
        .start()
        .await?;
    until(async || count(&db, "truss_queue_dead").await == 1).await?;
    until(async || count(&db, "truss_queue").await == 0).await?;
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    let reason: String = db
        .read("reason", async |conn| {
            sqlx::query_scalar("SELECT reason FROM truss_queue_dead")
                .fetch_one(&mut *conn)
                .await
        })
        .await?;
    assert!(reason.contains("MAILER_DOWN"), "{reason}");
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn the_outbox_and_queue_on_sqlite() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let config = DatabaseConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    outbox_then_consumer(Database::connect(&config, "order").await?).await
}

#[tokio::test]
async fn the_outbox_and_queue_on_postgresql() -> Result<(), BoxError> {
    let pg = truss_tests::Postgres::start().await;
    let config = DatabaseConfig {
        url: Some(pg.url()),
        ..Default::default()
    };
    outbox_then_consumer(Database::connect(&config, "order").await?).await
}

#[tokio::test]
async fn a_claim_that_runs_out_is_delivered_again() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let config = DatabaseConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let db = Database::connect(&config, "order").await?;
    setup(&db).await?;
    place_order(&db, 5, true).await?;
    // Long enough that the second look surely falls inside it on a loaded machine.
    let claim = Duration::from_secs(1);
    let dies = SqlQueue::new(db.clone(), "order.created", "dies", claim);
    assert_eq!(dies.fetch(10, Duration::ZERO).await?.len(), 1);
    let other = SqlQueue::new(db.clone(), "order.created", "other", claim);
    assert!(other.fetch(10, Duration::ZERO).await?.is_empty(), "claimed");
    let again = other.fetch(10, Duration::from_secs(5)).await?;
    assert_eq!(again.len(), 1, "the claim ran out");
    assert!(dies.ack(&again[0]).await.is_ok());
    assert_eq!(
        count(&db, "truss_queue").await,
        1,
        "an old claimant cannot ack it"
    );
    other.ack(&again[0]).await?;
    assert_eq!(count(&db, "truss_queue").await, 0);
    Ok(())
}

#[tokio::test]
async fn a_configured_consumer_reads_another_services_outbox() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let order = DatabaseConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let order_db = Database::connect(&order, "order").await?;
    setup(&order_db).await?;
    place_order(&order_db, 8, true).await?;

    // `notify` has its own database; its consumer reads order's file.
    let mut config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(5));
    config.database.data_dir = dir.path().to_path_buf();
    let entry = ConsumerConfig {
        backend: truss::queue::QueueBackend::Sql,
        url: Some(format!("sqlite://{}/order.db", dir.path().display())),
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
    until(async || seen.load(Ordering::SeqCst) == 8).await?;
    until(async || count(&order_db, "truss_queue").await == 0).await?;
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_protobuf_body_survives_the_text_column_and_a_retry() -> Result<(), BoxError> {
    use truss::queue::{Encode, Proto};
    let dir = tempfile::tempdir()?;
    let config = DatabaseConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let db = Database::connect(&config, "order").await?;
    SqlQueue::create_tables(&db).await?;
    let body = Proto(truss_tests::proto_order());
    let bytes = body.encode()?;
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the test needs a binary body"
    );
    let headers = [(
        truss::queue::CONTENT_TYPE.to_owned(),
        "application/protobuf".to_owned(),
    )]
    .into();
    db.transaction("outbox", async |conn| {
        enqueue(conn, "proto.orders", &bytes, &headers).await?;
        Ok(())
    })
    .await?;
    let queue = SqlQueue::new(db, "proto.orders", "c1", Duration::from_secs(30));
    let (attempt, got) =
        truss_tests::proto_body_after_a_retry(Arc::new(queue), "proto.orders").await?;
    assert_eq!((attempt, got), (2, truss_tests::proto_order()));
    Ok(())
}

/// A SQL producer with its own `url` writes to that database: it needs neither `[database]
/// url` nor a `database` name (it was refused at start, asking for one), and the app's
/// read replicas are not carried over to it.
#[tokio::test]
async fn a_sql_producer_with_its_own_url_writes_there() -> Result<(), BoxError> {
    use truss::queue::{Producer, ProducerConfig, QueueBackend};

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("outbox.db");
    let mut config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(5));
    config.database.data_dir = dir.path().join("data");
    let settings = ProducerConfig {
        backend: QueueBackend::Sql,
        url: Some(format!("sqlite://{}?mode=rwc", file.display())),
        ..ProducerConfig::default()
    };
    config.producers.0.insert("order.created".into(), settings);
    let producer = Producer::from_config(&config, "order.created").await?;
    producer.send(&serde_json::json!({"order_id": 7})).await?;
    let outbox = Database::connect(
        &DatabaseConfig {
            url: Some(format!("sqlite://{}", file.display())),
            ..DatabaseConfig::default()
        },
        "check",
    )
    .await?;
    let rows: i64 = outbox
        .read("count", async |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM truss_queue")
                .fetch_one(&mut *c)
                .await
        })
        .await?;
    assert_eq!(rows, 1);
    Ok(())
}
