//! The `notify` example as a process, stopped in the middle of a 10,000-message run, once
//! per durable backend: order's SQL outbox on SQLite, a Redis stream (Debian's
//! `redis-server`), a NATS JetStream stream (Debian's `nats-server -js`), each server
//! started by the test, and a Kafka topic on librdkafka's mock cluster (no Kafka broker can
//! run on this machine; the mock is a real Kafka protocol server with consumer groups and
//! committed offsets, owned by the test process and reached by notify over TCP).
//!
//! * SIGTERM: exit 0 within the grace period, no message acknowledged without its
//!   notification, none lost (each is either processed or still waiting); after a restart
//!   every message has its notification.
//! * SIGKILL: after a restart every message is processed, and the idempotency store makes
//!   the effect exactly once (one notification and one processed id per message, no dead
//!   letter: `notifications.order_id` is a primary key, so a repeated effect would fail).
//!
//! The memory backend keeps messages in the process: they do not outlive it by design.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use redis::AsyncCommands;
use truss::queue::{
    Backend, JetStreamSettings, KafkaSettings, KafkaTopic, NatsJetStream, RedisStreams,
};
use truss::sql::{Database, DatabaseConfig};
use truss_tests::{BoxError, NatsServer, Proc, RedisServer};

const NOTIFY: &str = env!("CARGO_BIN_EXE_notify-service");
const MESSAGES: usize = 10_000;
const SUBJECT: &str = "order.created";
/// Partitions of the Kafka topic.
const PARTITIONS: i32 = 2;

/// Where the messages are, and how to read what is still waiting there.
enum Source {
    /// order's outbox: `truss_queue` in `order.db`.
    Sql(Database),
    /// The stream `order.created`, read by the group `notify`.
    Redis(RedisServer),
    /// The JetStream stream `order_created`, read by the durable `notify`.
    Nats(NatsServer),
    /// The topic `order.created` (2 partitions), read by the group `notify`.
    Kafka(MockCluster<'static, DefaultProducerContext>),
}

/// What a source can tell of the messages still waiting there.
enum Waiting {
    /// Their order ids.
    Ids(BTreeSet<u64>),
    /// How many (JetStream tells counts, not which).
    Count(u64),
}

impl Waiting {
    fn len(&self) -> u64 {
        match self {
            Waiting::Ids(ids) => ids.len() as u64,
            Waiting::Count(n) => *n,
        }
    }
}

fn body(order_id: usize) -> String {
    format!(r#"{{"order_id":{order_id},"user_id":1,"item":"tea","quantity":1}}"#)
}

impl Source {
    async fn sql(dir: &Path) -> Result<Source, BoxError> {
        let db = Database::connect(&db_config(dir), "order").await?;
        truss::queue::SqlQueue::create_tables(&db).await?;
        for chunk in (1..=MESSAGES).collect::<Vec<_>>().chunks(1000) {
            db.transaction("fill", async |conn| {
                for &id in chunk {
                    truss::queue::enqueue(conn, SUBJECT, body(id).as_bytes(), &Default::default())
                        .await?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(Source::Sql(db))
    }

    async fn redis() -> Result<Source, BoxError> {
        let server = RedisServer::start().await;
        // The group exists before the messages, as it would for a deployed consumer.
        let streams = RedisStreams::connect(
            &server.url(),
            SUBJECT,
            "notify",
            "filler",
            Duration::from_secs(3600),
        )
        .await?;
        let mut conn = connect(&server.url()).await?;
        for chunk in (1..=MESSAGES).collect::<Vec<_>>().chunks(1000) {
            let mut pipe = redis::pipe();
            for &id in chunk {
                pipe.xadd(SUBJECT, "*", &[("payload", body(id))]);
            }
            let _: Vec<String> = pipe.query_async(&mut conn).await?;
        }
        assert_eq!(streams.lag().await?, Some(MESSAGES as u64));
        Ok(Source::Redis(server))
    }

    async fn nats() -> Result<Source, BoxError> {
        let server = NatsServer::start().await;
        let publisher =
            NatsJetStream::publisher(&server.url(), JetStreamSettings::new(SUBJECT, "filler"))
                .await?;
        for id in 1..=MESSAGES {
            publisher.publish(body(id), Default::default()).await?;
        }
        Ok(Source::Nats(server))
    }

    async fn kafka() -> Result<Source, BoxError> {
        let cluster = MockCluster::new(1)?;
        cluster.create_topic(SUBJECT, PARTITIONS, 1)?;
        cluster.create_topic(&format!("{SUBJECT}.dead"), 1, 1)?;
        let publisher = KafkaTopic::publisher(KafkaSettings::new(
            &cluster.bootstrap_servers(),
            SUBJECT,
            "filler",
        ))?;
        for chunk in (1..=MESSAGES).collect::<Vec<_>>().chunks(500) {
            let mut sends = tokio::task::JoinSet::new();
            for &id in chunk {
                let publisher = publisher.clone();
                sends.spawn(async move { publisher.publish(body(id), Default::default()).await });
            }
            while let Some(sent) = sends.join_next().await {
                sent??;
            }
        }
        Ok(Source::Kafka(cluster))
    }

    /// The durable `notify` reads, as another connection sees it.
    async fn nats_durable(
        server: &NatsServer,
        subject: &str,
        durable: &str,
    ) -> Result<NatsJetStream, BoxError> {
        let mut settings = JetStreamSettings::new(subject, durable);
        settings.stream = JetStreamSettings::new(SUBJECT, "notify").stream;
        settings.dead_letter_subject = format!("{SUBJECT}.dead.unused");
        NatsJetStream::connect(&server.url(), settings).await
    }

    fn config(&self) -> String {
        match self {
            // A killed process's claims lapse after 7 s (default: 35 s): a claim lasts the
            // longer of claim_idle and deadline + 5 s.
            Source::Sql(_) => "backend = \"sql\"\ndatabase = \"order\"\nclaim_idle = \"5s\"\n\
                               deadline = \"2s\""
                .to_owned(),
            Source::Redis(server) => format!(
                "backend = \"redis\"\nclaim_idle = \"2s\"\ndeadline = \"2s\"\n\n[redis]\n\
                 url = \"{}\"",
                server.url()
            ),
            // ack_wait, likewise.
            Source::Nats(server) => format!(
                "backend = \"nats\"\nurl = \"{}\"\nclaim_idle = \"2s\"\ndeadline = \"2s\"",
                server.url()
            ),
            // A killed member is given up after 6 s (Kafka's default: 45 s).
            Source::Kafka(cluster) => format!(
                "backend = \"kafka\"\nurl = \"{}\"\n\n[consumers.\"{SUBJECT}\".kafka]\n\
                 \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"",
                cluster.bootstrap_servers()
            ),
        }
    }

    /// Polls until no message waits (at most a minute: claims lapse within seconds).
    async fn until_nothing_waits(&self) -> Result<(), BoxError> {
        for _ in 0..600 {
            if self.waiting().await?.len() == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let left = self.waiting().await?.len();
        Err(format!("{left} messages still waiting a minute after the last effect").into())
    }

    /// The order ids of the messages still waiting there (not delivered, delivered but
    /// not acknowledged, or waiting for a retry). The others were acknowledged.
    async fn waiting(&self) -> Result<Waiting, BoxError> {
        match self {
            Source::Sql(db) => {
                let bodies: Vec<String> = db
                    .read("waiting", async |c| {
                        sqlx::query_scalar("SELECT payload FROM truss_queue")
                            .fetch_all(&mut *c)
                            .await
                    })
                    .await?;
                Ok(Waiting::Ids(bodies.iter().map(|b| order_id(b)).collect()))
            }
            Source::Redis(server) => Ok(Waiting::Ids(redis_waiting(server).await?)),
            Source::Nats(server) => {
                let durable = Source::nats_durable(server, SUBJECT, "notify").await?;
                Ok(Waiting::Count(durable.unsettled().await?))
            }
            Source::Kafka(cluster) => {
                Ok(Waiting::Ids(kafka_waiting(&cluster.bootstrap_servers())?))
            }
        }
    }

    /// Messages dead-lettered.
    async fn dead(&self) -> Result<i64, BoxError> {
        match self {
            Source::Sql(db) => Ok(count(db, "truss_queue_dead").await?),
            Source::Redis(server) => {
                let mut conn = connect(&server.url()).await?;
                Ok(conn.xlen(format!("{SUBJECT}:dead")).await?)
            }
            Source::Nats(server) => {
                let dead =
                    Source::nats_durable(server, &format!("{SUBJECT}.dead"), "dead-inspector")
                        .await?;
                Ok(dead.unsettled().await? as i64)
            }
            Source::Kafka(cluster) => {
                let reader = kafka_client(&cluster.bootstrap_servers(), "dead-inspector")?;
                let (low, high) = reader.fetch_watermarks(
                    &format!("{SUBJECT}.dead"),
                    0,
                    Duration::from_secs(10),
                )?;
                Ok(high - low)
            }
        }
    }
}

fn kafka_client(bootstrap: &str, group: &str) -> Result<BaseConsumer, BoxError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?)
}

/// The messages past the group `notify`'s committed offsets: read again by a reader of
/// its own, from there to the end of each partition.
fn kafka_waiting(bootstrap: &str) -> Result<BTreeSet<u64>, BoxError> {
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(SUBJECT, partition);
    }
    let committed = kafka_client(bootstrap, "notify")?
        .committed_offsets(partitions, Duration::from_secs(10))?;
    let reader = kafka_client(bootstrap, "waiting-inspector")?;
    let mut from = TopicPartitionList::new();
    let mut left = 0;
    for element in committed.elements_for_topic(SUBJECT) {
        let start = match element.offset() {
            Offset::Offset(at) => at,
            _ => 0,
        };
        let (_, high) =
            reader.fetch_watermarks(SUBJECT, element.partition(), Duration::from_secs(10))?;
        left += (high - start).max(0);
        from.add_partition_offset(SUBJECT, element.partition(), Offset::Offset(start))?;
    }
    reader.assign(&from)?;
    let mut waiting = BTreeSet::new();
    let mut read = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while read < left && std::time::Instant::now() < deadline {
        if let Some(message) = reader.poll(Duration::from_millis(200)) {
            let message = message?;
            read += 1;
            let body = message
                .payload()
                .and_then(|p| std::str::from_utf8(p).ok())
                .unwrap_or("");
            waiting.insert(order_id(body));
        }
    }
    if read < left {
        return Err(format!("read {read} of the {left} waiting messages").into());
    }
    Ok(waiting)
}

/// Undelivered and pending entries, and the retries in `<stream>:delayed`.
async fn redis_waiting(server: &RedisServer) -> Result<BTreeSet<u64>, BoxError> {
    let mut conn = connect(&server.url()).await?;
    let groups: redis::streams::StreamInfoGroupsReply = conn.xinfo_groups(SUBJECT).await?;
    let last = groups
        .groups
        .iter()
        .find(|g| g.name == "notify")
        .map(|g| entry_id(&g.last_delivered_id))
        .ok_or("no group notify")?;
    let pending: redis::streams::StreamPendingCountReply = conn
        .xpending_count(SUBJECT, "notify", "-", "+", MESSAGES * 2)
        .await?;
    let pending: BTreeSet<String> = pending.ids.into_iter().map(|p| p.id).collect();
    let all: redis::streams::StreamRangeReply = conn.xrange_all(SUBJECT).await?;
    let mut waiting = BTreeSet::new();
    for entry in all.ids {
        if entry_id(&entry.id) > last || pending.contains(&entry.id) {
            let body: String = entry.get("payload").unwrap_or_default();
            waiting.insert(order_id(&body));
        }
    }
    // A retry waiting for its time: the entry's fields, flattened to a JSON array.
    let delayed: Vec<String> = conn.zrange(format!("{SUBJECT}:delayed"), 0, -1).await?;
    for member in delayed {
        let fields: Vec<String> = serde_json::from_str(&member)?;
        if let Some(at) = fields.iter().position(|f| f == "payload") {
            waiting.insert(order_id(fields.get(at + 1).map_or("", String::as_str)));
        }
    }
    Ok(waiting)
}

/// A connection whose replies may take a while on this busy machine (10,000 entries).
async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection, BoxError> {
    let patient =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&patient)
        .await?)
}

fn order_id(body: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["order_id"].as_u64())
        .unwrap_or(0)
}

fn entry_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn db_config(dir: &Path) -> DatabaseConfig {
    DatabaseConfig {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    }
}

async fn count(db: &Database, table: &'static str) -> Result<i64, BoxError> {
    let sql = match table {
        "truss_queue_dead" => "SELECT COUNT(*) FROM truss_queue_dead",
        "notifications" => "SELECT COUNT(*) FROM notifications",
        _ => "SELECT COUNT(*) FROM truss_processed_messages",
    };
    Ok(db
        .read("count", async |c| {
            sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut *c).await
        })
        .await?)
}

/// notify's own database: the ids it processed, and its notifications.
struct Notified(Database);

impl Notified {
    /// The order ids notified.
    async fn processed(&self) -> Result<BTreeSet<u64>, BoxError> {
        let ids: Vec<i64> = self
            .0
            .read("processed", async |c| {
                sqlx::query_scalar("SELECT order_id FROM notifications")
                    .fetch_all(&mut *c)
                    .await
            })
            .await?;
        Ok(ids.into_iter().map(|id| id as u64).collect())
    }

    /// The message ids recorded by `first_delivery`.
    async fn message_ids(&self) -> Result<i64, BoxError> {
        count(&self.0, "truss_processed_messages").await
    }

    async fn notifications(&self) -> Result<i64, BoxError> {
        count(&self.0, "notifications").await
    }

    /// Waits until notify has processed at least `n` messages.
    async fn until_processed(&self, n: usize, notify: &Proc) -> Result<(), BoxError> {
        for _ in 0..1200 {
            if count(&self.0, "truss_processed_messages")
                .await
                .unwrap_or(0) as usize
                >= n
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("notify did not process {n} messages:\n{}", notify.log()).into())
    }
}

fn start(dir: &Path, source: &Source, name: &str) -> Proc {
    let config = dir.join("notify.toml");
    let text = format!(
        r#"[http]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[shutdown]
drain_delay = "0s"
grace = "10s"
[database]
data_dir = "{}"
[consumers."order.created"]
max_in_flight = 32
poll = "100ms"
{}
"#,
        dir.display(),
        source.config()
    );
    std::fs::write(&config, text).expect("notify config");
    Proc::spawn(NOTIFY, &config, dir.join(format!("{name}.log")))
}

/// The warnings and errors notify logged, for a failure's message.
fn warnings(dir: &Path) -> String {
    ["first.log", "second.log"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .flat_map(|log| {
            log.lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .take(20)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn stop(mut notify: Proc, signal: libc::c_int) -> ExitStatus {
    notify.signal(signal);
    notify.exit(Duration::from_secs(30)).await
}

/// SIGTERM in the middle, then a restart to the end.
async fn sigterm_run(dir: &Path, source: Source) -> Result<(), BoxError> {
    let notify = start(dir, &source, "first");
    notify.addrs().await;
    let notified = Notified(Database::connect(&db_config(dir), "notify").await?);
    notified.until_processed(MESSAGES / 5, &notify).await?;
    let started = std::time::Instant::now();
    let status = stop(notify, libc::SIGTERM).await;
    assert!(status.success(), "notify exited with {status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exit past the grace period"
    );

    let processed = notified.processed().await?;
    let waiting = source.waiting().await?;
    assert!(
        processed.len() < MESSAGES,
        "stopped after the end: the test proves nothing"
    );
    // Acked ones are no longer waiting: each must be processed, and nothing processed may
    // still wait (the in-flight ones finished and were acked before the exit).
    match &waiting {
        Waiting::Ids(waiting) => {
            let all: BTreeSet<u64> = (1..=MESSAGES as u64).collect();
            let acked: BTreeSet<u64> = all.difference(waiting).copied().collect();
            let unprocessed: Vec<_> = acked.difference(&processed).take(10).collect();
            assert!(
                unprocessed.is_empty(),
                "acked but not processed: {unprocessed:?}\n{}",
                warnings(dir)
            );
            let both: Vec<_> = processed.intersection(waiting).take(10).collect();
            assert!(both.is_empty(), "processed, yet left waiting: {both:?}");
        }
        Waiting::Count(_) => {}
    }
    assert_eq!(
        processed.len() as u64 + waiting.len(),
        MESSAGES as u64,
        "processed + waiting: more is a processed message left waiting, fewer a lost or \
         unprocessed acked one\n{}",
        warnings(dir)
    );

    let notify = start(dir, &source, "second");
    notified.until_processed(MESSAGES, &notify).await?;
    assert!(stop(notify, libc::SIGTERM).await.success());
    assert_eq!(notified.notifications().await? as usize, MESSAGES);
    assert_eq!(source.dead().await?, 0);
    Ok(())
}

/// SIGKILL in the middle, then a restart: at least once, effect exactly once.
async fn sigkill_run(dir: &Path, source: Source) -> Result<(), BoxError> {
    let notify = start(dir, &source, "first");
    notify.addrs().await;
    let notified = Notified(Database::connect(&db_config(dir), "notify").await?);
    notified.until_processed(MESSAGES / 5, &notify).await?;
    let _ = stop(notify, libc::SIGKILL).await;
    assert!(notified.processed().await?.len() < MESSAGES);

    let notify = start(dir, &source, "second");
    notified.until_processed(MESSAGES, &notify).await?;
    // Messages whose effect the killed process committed but did not acknowledge are
    // redelivered once its claims lapse, found done by the idempotency store, and acked.
    source.until_nothing_waits().await?;
    assert!(stop(notify, libc::SIGTERM).await.success());
    assert_eq!(notified.message_ids().await? as usize, MESSAGES);
    assert_eq!(notified.notifications().await? as usize, MESSAGES);
    assert_eq!(
        source.dead().await?,
        0,
        "a repeated effect was refused and dead-lettered"
    );
    let waiting = source.waiting().await?;
    assert!(
        waiting.len() == 0,
        "{} messages still waiting",
        waiting.len()
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_in_a_10k_run_on_the_sql_outbox_loses_nothing() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let source = Source::sql(dir.path()).await?;
    sigterm_run(dir.path(), source).await
}

#[tokio::test]
async fn sigkill_in_a_10k_run_on_the_sql_outbox_takes_effect_once() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let source = Source::sql(dir.path()).await?;
    sigkill_run(dir.path(), source).await
}

#[tokio::test]
async fn sigterm_in_a_10k_run_on_a_redis_stream_loses_nothing() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let source = Source::redis().await?;
    sigterm_run(dir.path(), source).await
}

#[tokio::test]
async fn sigkill_in_a_10k_run_on_a_redis_stream_takes_effect_once() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let source = Source::redis().await?;
    sigkill_run(dir.path(), source).await
}

#[tokio::test]
async fn sigterm_in_a_10k_run_on_nats_jetstream_loses_nothing() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let source = Source::nats().await?;
    sigterm_run(dir.path(), source).await
}

#[tokio::test]
async fn sigkill_in_a_10k_run_on_nats_jetstream_takes_effect_once() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let source = Source::nats().await?;
    sigkill_run(dir.path(), source).await
}

#[tokio::test]
async fn sigterm_in_a_10k_run_on_kafka_loses_nothing() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let source = Source::kafka().await?;
    sigterm_run(dir.path(), source).await
}

#[tokio::test]
async fn sigkill_in_a_10k_run_on_kafka_takes_effect_once() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let source = Source::kafka().await?;
    sigkill_run(dir.path(), source).await
}
