//! [`KafkaTopic`]: a Kafka topic read by a consumer group (feature `kafka`, rdkafka on
//! librdkafka).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

use super::Publish;
use super::backend::{Backend, Delivery};
use crate::BoxError;
use crate::registry::BoxFuture;

type StreamConsumer = rdkafka::consumer::StreamConsumer<Tracking>;

/// The header counting deliveries of a message (a retry is a copy with one more). Named
/// for truss: a producer's own `attempt` header is the application's, passed on untouched.
const ATTEMPT_HEADER: &str = "truss-attempt";

/// How long a produce may wait in librdkafka's queue and for the broker.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a [`KafkaTopic`] reads and writes.
///
/// ```
/// let settings = truss::queue::KafkaSettings::new("127.0.0.1:9092", "order.created", "notify");
/// assert_eq!(settings.dead_letter_topic, "order.created.dead");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub bootstrap: String,
    /// The topic consumed and published to.
    pub topic: String,
    /// The consumer group (`group.id`): each message goes to one member.
    pub group: String,
    /// Where dead letters go. Default `<topic>.dead`.
    pub dead_letter_topic: String,
    /// Any other librdkafka settings (`security.protocol`, `sasl.*`, `session.timeout.ms`),
    /// over truss's defaults (`auto.offset.reset = earliest`, `auto.commit.interval.ms =
    /// 1000`, `message.timeout.ms = 5000`, `enable.idempotence = true`). Truss owns
    /// `bootstrap.servers`, `group.id`, `enable.auto.commit`, `enable.auto.offset.store` and
    /// `enable.partition.eof` (at-least-once: offsets stored only for settled messages):
    /// `[consumers."<s>".kafka]` refuses them, and set here the consumer overrides them.
    pub extra: BTreeMap<String, String>,
}

impl KafkaSettings {
    /// Settings for `topic` at `bootstrap`, read by `group`, dead letters to `<topic>.dead`.
    pub fn new(bootstrap: &str, topic: &str, group: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            dead_letter_topic: format!("{topic}.dead"),
            extra: BTreeMap::new(),
        }
    }

    /// The client's config: truss's `defaults`, then [`extra`](Self::extra) over them.
    fn client_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }
}

/// A Kafka topic consumed by a consumer group, at least once.
///
/// * Offsets are stored only for settled messages: per partition, the commit position is
///   the lowest offset still in flight (or past the highest seen when none is), so a
///   message finishing before an older one does not commit past it. librdkafka commits the
///   stored positions every second, on a rebalance and at [`flush`](Backend::flush).
/// * A retry is a copy produced to the same topic after the delay, with `attempt` one
///   higher; the original's offset is settled only once the copy is stored (a crash before
///   leaves the original to be delivered again). The copy lands behind later messages of its
///   partition.
/// * A dead letter is produced to `dead_letter_topic` with a `dead-letter-reason` header,
///   then the original is settled.
/// * The message key is the ordering key ([`Delivery::key`]); Kafka keeps one key in one
///   partition, in order.
#[derive(Clone)]
pub struct KafkaTopic {
    consumer: Option<Arc<StreamConsumer>>,
    producer: FutureProducer,
    tracker: Arc<Mutex<OffsetTracker>>,
    settings: Arc<KafkaSettings>,
}

impl std::fmt::Debug for KafkaTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTopic")
            .field("topic", &self.settings.topic)
            .field("group", &self.settings.group)
            .finish_non_exhaustive()
    }
}

impl KafkaTopic {
    /// A consumer of the topic in the group (subscribed from the earliest offset the group
    /// has not committed), and a producer for retries, dead letters and publishing.
    pub fn connect(settings: KafkaSettings) -> Result<Self, BoxError> {
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let consumer: StreamConsumer = settings
            .client_with(&[
                ("auto.commit.interval.ms", "1000"),
                ("auto.offset.reset", "earliest"),
            ])
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(Tracking {
                tracker: tracker.clone(),
            })?;
        consumer.subscribe(&[settings.topic.as_str()])?;
        Ok(Self {
            consumer: Some(Arc::new(consumer)),
            producer: producer(&settings)?,
            tracker,
            settings: Arc::new(settings),
        })
    }

    /// A producer only, for [`Producer`](super::Producer)s.
    pub fn publisher(settings: KafkaSettings) -> Result<Self, BoxError> {
        Ok(Self {
            consumer: None,
            producer: producer(&settings)?,
            tracker: Arc::default(),
            settings: Arc::new(settings),
        })
    }

    /// Produces a message to the topic (the `message-key` header, if any, as its key);
    /// returns `partition/offset` once the broker stored it.
    pub async fn publish(
        &self,
        payload: impl Into<Bytes>,
        headers: BTreeMap<String, String>,
    ) -> Result<String, BoxError> {
        let key = headers.get(super::MESSAGE_KEY).cloned();
        let topic = self.settings.topic.clone();
        self.produce(&topic, key.as_deref(), &payload.into(), &headers)
            .await
    }

    async fn produce(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
        headers: &BTreeMap<String, String>,
    ) -> Result<String, BoxError> {
        let mut owned = OwnedHeaders::new();
        for (name, value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .payload(payload)
            .headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        match self.producer.send(record, SEND_TIMEOUT).await {
            Ok(delivery) => Ok(format!("{}/{}", delivery.partition, delivery.offset)),
            Err((error, _)) => Err(error.into()),
        }
    }

    fn consumer(&self) -> Result<&Arc<StreamConsumer>, BoxError> {
        self.consumer
            .as_ref()
            .ok_or_else(|| "this KafkaTopic publishes only (see `publisher`)".into())
    }

    fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One received message as a delivery, recorded as in flight.
    fn admit(&self, message: &rdkafka::message::BorrowedMessage<'_>) -> Delivery {
        let (partition, offset) = (message.partition(), message.offset());
        self.tracker().received(partition, offset);
        let mut headers: BTreeMap<String, String> = message
            .headers()
            .map(|h| {
                (0..h.count())
                    .filter_map(|i| h.try_get(i))
                    .filter_map(|h| {
                        let value = String::from_utf8_lossy(h.value?).into_owned();
                        Some((h.key.to_owned(), value))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let attempt = headers
            .remove(ATTEMPT_HEADER)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1)
            .max(1);
        Delivery {
            id: format!("{partition}/{offset}"),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
            attempt,
        }
    }

    /// The delivery is done with: store the partition's new commit position, if it moved.
    fn settle(&self, delivery: &Delivery) -> Result<(), BoxError> {
        let (partition, offset) = parse_id(&delivery.id)?;
        let Some(position) = self.tracker().settled(partition, offset) else {
            return Ok(());
        };
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.settings.topic, partition, Offset::Offset(position))?;
        match self.consumer()?.store_offsets(&list) {
            Ok(()) => Ok(()),
            // Revoked meanwhile: its new owner reads again from the last commit.
            Err(error) => {
                tracing::debug!(%error, partition, "offset not stored (partition revoked?)");
                Ok(())
            }
        }
    }

    /// A copy of `delivery` for `topic`, its headers with `extra` and `attempt`.
    async fn copy_to(
        &self,
        topic: &str,
        delivery: &Delivery,
        attempt: u32,
        extra: Option<(&str, &str)>,
    ) -> Result<(), BoxError> {
        let mut headers = delivery.headers.clone();
        headers.insert(ATTEMPT_HEADER.to_owned(), attempt.to_string());
        // A copy is a new record: it keeps the message's id for `first_delivery`.
        headers
            .entry(super::MESSAGE_ID.to_owned())
            .or_insert_with(|| delivery.id.clone());
        if let Some((name, value)) = extra {
            headers.insert(name.to_owned(), value.to_owned());
        }
        self.produce(topic, delivery.key.as_deref(), &delivery.payload, &headers)
            .await
            .map(drop)
    }
}

fn producer(settings: &KafkaSettings) -> Result<FutureProducer, BoxError> {
    Ok(settings
        .client_with(&[
            ("message.timeout.ms", "5000"),
            ("enable.idempotence", "true"),
        ])
        .create()?)
}

/// `partition/offset` back into numbers.
fn parse_id(id: &str) -> Result<(i32, i64), BoxError> {
    let parsed = id
        .split_once('/')
        .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)));
    parsed.ok_or_else(|| format!("{id:?} is not a Kafka delivery id").into())
}

/// The offsets in flight per partition, and how far the commit may go.
#[derive(Debug, Default)]
struct OffsetTracker {
    parts: HashMap<i32, Part>,
}

#[derive(Debug)]
struct Part {
    in_flight: BTreeSet<i64>,
    max_seen: i64,
    position: i64,
}

impl OffsetTracker {
    /// Call in fetch order, before the delivery is handed over.
    fn received(&mut self, partition: i32, offset: i64) {
        let part = self.parts.entry(partition).or_insert(Part {
            in_flight: BTreeSet::new(),
            max_seen: -1,
            position: -1,
        });
        part.in_flight.insert(offset);
        part.max_seen = part.max_seen.max(offset);
    }

    /// The new commit position (the next offset to read) when settling `offset` moved it:
    /// the lowest offset still in flight, or past the highest seen. Offsets have gaps
    /// (compaction, transaction markers), so "offset + 1 is done" is never waited for.
    fn settled(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let part = self.parts.get_mut(&partition)?;
        if !part.in_flight.remove(&offset) {
            return None;
        }
        let position = part.in_flight.first().copied().unwrap_or(part.max_seen + 1);
        (position > part.position).then(|| {
            part.position = position;
            position
        })
    }

    fn revoke(&mut self, partition: i32) {
        self.parts.remove(&partition);
    }
}

/// The consumer's context: forgets revoked partitions (their new owner starts from the
/// last commit, which librdkafka makes before the revocation).
struct Tracking {
    tracker: Arc<Mutex<OffsetTracker>>,
}

impl ClientContext for Tracking {}

impl ConsumerContext for Tracking {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
            for element in list.elements() {
                tracker.revoke(element.partition());
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(%error, "kafka offset commit failed (will retry)");
        }
    }
}

impl Backend for KafkaTopic {
    fn fetch(&self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Delivery>, BoxError>> {
        Box::pin(async move {
            let consumer = self.consumer()?;
            let mut out = Vec::new();
            // The first waits up to `wait`; the rest only take what is already there.
            // `recv` is cancellation safe: a timed-out call loses no message.
            let mut patience = wait;
            while out.len() < max {
                match tokio::time::timeout(patience, consumer.recv()).await {
                    Err(_elapsed) => break,
                    Ok(Err(error)) if out.is_empty() => return Err(error.into()),
                    Ok(Err(_)) => break,
                    Ok(Ok(message)) => out.push(self.admit(&message)),
                }
                patience = Duration::from_millis(1);
            }
            Ok(out)
        })
    }

    fn ack<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { self.settle(delivery) })
    }

    /// Waits out `delay`, produces the copy with `attempt + 1`, then settles the original.
    fn retry<'a>(
        &'a self,
        delivery: &'a Delivery,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let topic = self.settings.topic.clone();
            self.copy_to(&topic, delivery, delivery.attempt + 1, None)
                .await?;
            self.settle(delivery)
        })
    }

    fn dead_letter<'a>(
        &'a self,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let topic = self.settings.dead_letter_topic.clone();
            let reason = ("dead-letter-reason", reason);
            self.copy_to(&topic, delivery, delivery.attempt, Some(reason))
                .await?;
            self.settle(delivery)
        })
    }

    /// Commits the stored positions now, synchronously.
    fn flush(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let consumer = self.consumer()?.clone();
            tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync))
                .await??;
            Ok(())
        })
    }

    /// Over the partitions assigned here: the high watermark minus the position.
    fn lag(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        Box::pin(async move {
            let consumer = self.consumer()?.clone();
            let topic = self.settings.topic.clone();
            let lag = tokio::task::spawn_blocking(move || -> Result<u64, BoxError> {
                let mut lag = 0;
                for element in consumer.position()?.elements_for_topic(&topic) {
                    let (_, high) = consumer.fetch_watermarks(
                        &topic,
                        element.partition(),
                        Duration::from_secs(1),
                    )?;
                    let at = match element.offset() {
                        Offset::Offset(at) => at,
                        _ => 0,
                    };
                    lag += u64::try_from(high - at).unwrap_or(0);
                }
                Ok(lag)
            })
            .await??;
            Ok(Some(lag))
        })
    }
}

impl Publish for KafkaTopic {
    fn publish_message(
        &self,
        payload: Bytes,
        headers: BTreeMap<String, String>,
    ) -> BoxFuture<'_, Result<String, BoxError>> {
        Box::pin(self.publish(payload, headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_position_never_passes_a_message_in_flight() {
        let mut tracker = OffsetTracker::default();
        for offset in [10, 11, 13] {
            tracker.received(0, offset);
        }
        assert_eq!(
            tracker.settled(0, 11),
            Some(10),
            "10 is still in flight: no further"
        );
        assert_eq!(
            tracker.settled(0, 10),
            Some(13),
            "13 is the lowest in flight"
        );
        assert_eq!(
            tracker.settled(0, 13),
            Some(14),
            "nothing in flight: past the highest"
        );
        assert_eq!(tracker.settled(0, 13), None, "settled twice");
        tracker.revoke(0);
        assert_eq!(tracker.settled(0, 14), None);
    }

    #[test]
    fn delivery_ids_round_trip_and_bad_ones_are_errors() {
        assert_eq!(parse_id("3/42").ok(), Some((3, 42)));
        assert!(parse_id("3-42").is_err());
        assert!(parse_id("x/1").is_err());
    }
}
