//! `[producers."<subject>"]`: where a [`Producer`] publishes, chosen in config.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{MemoryBackend, Producer, Publish, QueueBackend};
use crate::app::AppError;
use crate::config::{Config, ConfigError};
use crate::section::{Section, ValidationError};

/// Where one subject's messages are published: `[producers."<subject>"]`.
///
/// ```toml
/// [producers."order.created"]
/// backend = "redis"      # "memory" (default), "redis", "sql", "nats" or "kafka"
/// stream = "orders"      # redis: the stream's key; default the subject
/// # url = "postgres://..." # sql: the database holding truss_queue; default [database]
/// # database = "order"   # sql on SQLite without url (required): <database>.db in data_dir
/// ```
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config: truss::Config = truss::config::ConfigLoader::new()
///     .defaults("[producers.\"order.created\"]\nbackend = \"memory\"")
///     .env_vars(Vec::<(String, String)>::new())
///     .load()?;
/// let producer = truss::queue::Producer::from_config(&config, "order.created").await?;
/// producer.send(&serde_json::json!({"order_id": 7})).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// Where the messages go. Default [`QueueBackend::Memory`].
    pub backend: QueueBackend,
    /// SQL: the database holding `truss_queue`. Default: the app's `[database]`. NATS: the
    /// server, default `nats://127.0.0.1:4222`. Kafka: the bootstrap servers, default
    /// `127.0.0.1:9092`.
    pub url: Option<String>,
    /// SQL without `url`, on SQLite: the file `<database>.db` in `[database] data_dir`
    /// (required then: the producer does not know which service's outbox it writes).
    pub database: Option<String>,
    /// Redis: the stream's key. NATS: the JetStream stream capturing the subject (default
    /// the subject with `.` as `_`). Kafka: the topic. Default: the subject.
    pub stream: Option<String>,
    /// Kafka: librdkafka properties passed as they are (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `compression.type`, ...).
    /// Refused with any other backend.
    pub kafka: BTreeMap<String, String>,
}

impl Section for ProducerConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(why) = self.backend.not_built() {
            return Err(ValidationError::new("backend", why));
        }
        super::consumer::kafka_only(self.backend, &self.kafka)
    }
}

/// `[producers]`: one [`ProducerConfig`] per subject.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ProducersConfig(pub BTreeMap<String, ProducerConfig>);

impl Section for ProducersConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        for (name, producer) in &self.0 {
            producer
                .validate()
                .map_err(|e| e.within(&format!("\"{name}\"")))?;
        }
        Ok(())
    }
}

impl Producer {
    /// A producer for `subject` as `[producers."<subject>"]` says (the process's
    /// [`MemoryBackend::shared`] queue of that name when absent), with the app's `[breaker]`.
    ///
    /// A backend named but unreachable at start is an [`AppError::Dependency`]; later
    /// outages answer each `send` with a fast 503, never a panic.
    pub async fn from_config<T>(config: &Config<T>, subject: &str) -> Result<Producer, AppError> {
        let settings = config.producers.0.get(subject).cloned().unwrap_or_default();
        let sink: Arc<dyn Publish> = match settings.backend {
            QueueBackend::Memory => MemoryBackend::shared(subject),
            #[cfg(feature = "redis")]
            QueueBackend::Redis => redis_sink(config, subject, &settings).await?,
            #[cfg(feature = "sql")]
            QueueBackend::Sql => sql_sink(config, subject, &settings).await?,
            #[cfg(feature = "nats")]
            QueueBackend::Nats => nats_sink(subject, &settings).await?,
            #[cfg(feature = "kafka")]
            QueueBackend::Kafka => kafka_sink(subject, &settings)?,
            // A backend whose feature is not built in.
            #[allow(unreachable_patterns)]
            other => {
                let key = format!("producers.\"{subject}\".backend");
                let why = other.not_built().unwrap_or_default();
                return Err(ConfigError::one(key, "the app's configuration", why).into());
            }
        };
        Ok(Producer::new(subject, sink, &config.breaker))
    }
}

#[cfg(any(
    feature = "redis",
    feature = "sql",
    feature = "nats",
    feature = "kafka"
))]
fn unreachable(subject: &str, error: impl std::fmt::Display) -> AppError {
    AppError::Dependency {
        name: "producers",
        message: format!("{subject}: {error}"),
    }
}

#[cfg(feature = "redis")]
async fn redis_sink<T>(
    config: &Config<T>,
    subject: &str,
    settings: &ProducerConfig,
) -> Result<Arc<dyn Publish>, AppError> {
    let Some(url) = config.redis.url.as_deref() else {
        let key = format!("producers.\"{subject}\".backend");
        let why = "\"redis\" needs a Redis server: set `[redis] url`";
        return Err(ConfigError::one(key, "the app's configuration", why).into());
    };
    let stream = settings.stream.as_deref().unwrap_or(subject);
    let sink = super::RedisStreams::publisher(url, stream)
        .await
        .map_err(|e| unreachable(subject, format!("cannot reach Redis: {e}")))?;
    Ok(Arc::new(sink))
}

#[cfg(feature = "sql")]
async fn sql_sink<T>(
    config: &Config<T>,
    subject: &str,
    settings: &ProducerConfig,
) -> Result<Arc<dyn Publish>, AppError> {
    let mut database = config.database.clone();
    if let Some(url) = &settings.url {
        // Another database: the app's read replicas are not its.
        database.url = Some(url.clone());
        database.replicas.clear();
    }
    // With a server URL (the producer's own, or the app's) the name only labels the pool.
    let Some(name) = settings
        .database
        .as_deref()
        .or(database.url.as_ref().map(|_| "queue"))
    else {
        let key = format!("producers.\"{subject}\".database");
        let why = "\"sql\" on SQLite needs the database to write to: the name of its file in \
                   [database] data_dir (or set `url`)";
        return Err(ConfigError::one(key, "the app's configuration", why).into());
    };
    let db = crate::sql::Database::connect(&database, name)
        .await
        .map_err(|e| unreachable(subject, format!("cannot open the queue's database: {e}")))?;
    super::SqlQueue::create_tables(&db)
        .await
        .map_err(|e| unreachable(subject, format!("cannot create the queue tables: {e}")))?;
    Ok(Arc::new(SqlSink {
        db,
        subject: subject.to_owned(),
    }))
}

#[cfg(feature = "nats")]
async fn nats_sink(subject: &str, settings: &ProducerConfig) -> Result<Arc<dyn Publish>, AppError> {
    let url = settings.url.as_deref().unwrap_or(super::nats::DEFAULT_URL);
    let mut js = super::JetStreamSettings::new(subject, "truss-producer");
    if let Some(stream) = &settings.stream {
        js.stream.clone_from(stream);
    }
    let sink = super::NatsJetStream::publisher(url, js)
        .await
        .map_err(|e| unreachable(subject, format!("cannot reach NATS: {e}")))?;
    Ok(Arc::new(sink))
}

#[cfg(feature = "kafka")]
fn kafka_sink(subject: &str, settings: &ProducerConfig) -> Result<Arc<dyn Publish>, AppError> {
    let bootstrap = settings.url.as_deref().unwrap_or("127.0.0.1:9092");
    let topic = settings.stream.as_deref().unwrap_or(subject);
    let mut kafka = super::KafkaSettings::new(bootstrap, topic, "truss-producer");
    kafka.extra.clone_from(&settings.kafka);
    let sink = super::KafkaTopic::publisher(kafka)
        .map_err(|e| unreachable(subject, format!("cannot set up the Kafka producer: {e}")))?;
    Ok(Arc::new(sink))
}

/// Publishes into `truss_queue` outside any caller's transaction (for the outbox, call
/// [`enqueue`](super::enqueue) inside yours instead).
#[cfg(feature = "sql")]
struct SqlSink {
    db: crate::sql::Database,
    subject: String,
}

#[cfg(feature = "sql")]
impl Publish for SqlSink {
    fn publish_message(
        &self,
        payload: bytes::Bytes,
        headers: BTreeMap<String, String>,
    ) -> crate::registry::BoxFuture<'_, Result<String, crate::BoxError>> {
        Box::pin(async move {
            let subject = self.subject.as_str();
            let id = self
                .db
                .run("queue_publish", async |conn| {
                    super::enqueue(conn, subject, &payload, &headers).await
                })
                .await?;
            Ok(id)
        })
    }
}
