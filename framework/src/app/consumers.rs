//! Consumers declared with [`AppBuilder::consumer`]: their `[consumers."<subscription>"]`
//! entry and their backend, connected at start.

use std::sync::Arc;

#[cfg(any(feature = "redis", feature = "sql"))]
use super::start::instance_id;
use super::{AppBuilder, AppError};
use crate::config::{Config, ConfigError, NoAppConfig};
#[cfg(any(
    feature = "redis",
    feature = "sql",
    feature = "nats",
    feature = "kafka"
))]
use crate::queue::ConsumerConfig;
use crate::queue::{Backend, Consumer, Erased, MemoryBackend, QueueBackend};

/// A consumer declared on the builder, connected at start.
pub(super) struct Configured {
    pub(super) subscription: String,
    pub(super) handler: Erased,
    /// An outbox relay ([`AppBuilder::relay`]): retries a failure that may pass for ever.
    pub(super) relay: bool,
}

impl AppBuilder {
    /// A consumer as `[consumers."<subscription>"]` describes it (defaults when absent).
    pub(super) async fn configured_consumer(
        &self,
        config: &Config<NoAppConfig>,
        configured: Configured,
    ) -> Result<Consumer, AppError> {
        let Configured {
            subscription,
            handler,
            relay,
        } = configured;
        let mut settings = config
            .consumers
            .0
            .get(&subscription)
            .cloned()
            .unwrap_or_default();
        if relay {
            // A broker that is down must not move the outbox to the dead letters: its
            // failures (503, 504) are retried at `backoff_max` for as long as it lasts.
            settings.max_attempts = u32::MAX;
        }
        let backend: Arc<dyn Backend> = match settings.backend {
            QueueBackend::Memory => MemoryBackend::shared(&subscription),
            #[cfg(feature = "redis")]
            QueueBackend::Redis => redis(config, &subscription, &settings, &self.name).await?,
            #[cfg(feature = "sql")]
            QueueBackend::Sql => sql(config, &subscription, &settings, &self.name).await?,
            #[cfg(feature = "nats")]
            QueueBackend::Nats => nats(&subscription, &settings, &self.name).await?,
            #[cfg(feature = "kafka")]
            QueueBackend::Kafka => kafka(&subscription, &settings, &self.name)?,
            // A backend whose feature is not built in.
            #[allow(unreachable_patterns)]
            other => {
                let why = other.not_built().unwrap_or_default();
                return Err(backend_error(&subscription, &why));
            }
        };
        Ok(Consumer {
            subscription: subscription.into(),
            backend,
            handler,
            config: settings,
        })
    }
}

/// A config error about `consumers."<subscription>".backend`.
fn backend_error(subscription: &str, message: &str) -> AppError {
    let key = format!("consumers.\"{subscription}\".backend");
    ConfigError::one(key, "the configuration given to the app builder", message).into()
}

#[cfg(any(
    feature = "redis",
    feature = "sql",
    feature = "nats",
    feature = "kafka"
))]
fn unreachable_backend(subscription: &str, what: &str, error: impl std::fmt::Display) -> AppError {
    AppError::Dependency {
        name: "consumers",
        message: format!("{subscription}: {what}: {error}"),
    }
}

/// The subscription's Redis stream, read by the service's group.
#[cfg(feature = "redis")]
async fn redis(
    config: &Config<NoAppConfig>,
    subscription: &str,
    settings: &ConsumerConfig,
    service: &str,
) -> Result<Arc<dyn Backend>, AppError> {
    let Some(url) = config.redis.url.as_deref() else {
        return Err(backend_error(
            subscription,
            "\"redis\" needs a Redis server: set `[redis] url`",
        ));
    };
    let stream = settings.stream.as_deref().unwrap_or(subscription);
    let group = settings.group.as_deref().unwrap_or(service);
    let consumer = instance_id(service);
    let streams =
        crate::queue::RedisStreams::connect(url, stream, group, &consumer, settings.claim())
            .await
            .map_err(|e| unreachable_backend(subscription, "cannot reach Redis", e))?;
    Ok(Arc::new(streams))
}

/// The `truss_queue` table of `url`'s database, or of the app's `[database]`.
#[cfg(feature = "sql")]
async fn sql(
    config: &Config<NoAppConfig>,
    subscription: &str,
    settings: &ConsumerConfig,
    service: &str,
) -> Result<Arc<dyn Backend>, AppError> {
    let mut database = config.database.clone();
    if let Some(url) = &settings.url {
        // Another database: the app's read replicas are not its.
        database.url = Some(url.clone());
        database.replicas.clear();
    }
    let name = settings.database.as_deref().unwrap_or(service);
    let db = crate::sql::Database::connect(&database, name)
        .await
        .map_err(|e| unreachable_backend(subscription, "cannot open the queue's database", e))?;
    crate::queue::SqlQueue::create_tables(&db)
        .await
        .map_err(|e| unreachable_backend(subscription, "cannot create the queue tables", e))?;
    let consumer = instance_id(service);
    let queue = crate::queue::SqlQueue::new(db, subscription, &consumer, settings.claim());
    Ok(Arc::new(queue))
}

/// The subscription's subject in NATS JetStream, read by the service's durable consumer.
#[cfg(feature = "nats")]
async fn nats(
    subscription: &str,
    settings: &ConsumerConfig,
    service: &str,
) -> Result<Arc<dyn Backend>, AppError> {
    let url = settings
        .url
        .as_deref()
        .unwrap_or(crate::queue::nats_default_url());
    let group = settings.group.as_deref().unwrap_or(service);
    let mut js = crate::queue::JetStreamSettings::new(subscription, group);
    if let Some(stream) = &settings.stream {
        js.stream.clone_from(stream);
    }
    // Redelivered only once a handler that started at once surely no longer runs (past its
    // deadline, settled); one kept waiting for its key's turn can outlast it.
    js.ack_wait = settings.claim();
    let stream = crate::queue::NatsJetStream::connect(url, js)
        .await
        .map_err(|e| unreachable_backend(subscription, "cannot reach NATS", e))?;
    Ok(Arc::new(stream))
}

/// The subscription's Kafka topic, read by the service's consumer group.
#[cfg(feature = "kafka")]
fn kafka(
    subscription: &str,
    settings: &ConsumerConfig,
    service: &str,
) -> Result<Arc<dyn Backend>, AppError> {
    let bootstrap = settings.url.as_deref().unwrap_or("127.0.0.1:9092");
    let topic = settings.stream.as_deref().unwrap_or(subscription);
    let group = settings.group.as_deref().unwrap_or(service);
    let mut kafka = crate::queue::KafkaSettings::new(bootstrap, topic, group);
    kafka.extra.clone_from(&settings.kafka);
    let topic = crate::queue::KafkaTopic::connect(kafka)
        .map_err(|e| unreachable_backend(subscription, "cannot set up the Kafka consumer", e))?;
    Ok(Arc::new(topic))
}
