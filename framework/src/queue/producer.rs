//! [`Producer`]: publishing with the protection of every other outgoing call.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tracing::Instrument;

use super::body::{CONTENT_TYPE, Encode};
use crate::observe::metrics::ClientOperation;
use crate::registry::BoxFuture;
use crate::resilience::breaker::{Breaker, BreakerConfig};
use crate::resilience::deadline::Deadline;
use crate::{BoxError, Error};

/// Where a [`Producer`] puts messages: a backend that can publish.
pub trait Publish: Send + Sync + 'static {
    /// Appends one message; returns its id.
    fn publish_message(
        &self,
        payload: Bytes,
        headers: BTreeMap<String, String>,
    ) -> BoxFuture<'_, Result<String, BoxError>>;
}

/// Publishes JSON messages to one subject with what every governed client gets: the trace
/// carried in the message's headers, the caller's deadline, a breaker for the subject, and
/// `truss_client_requests_total{transport="queue", target=<subject>, operation="publish",
/// code}` with its duration histogram, inside a `publish` span.
///
/// ```
/// # async fn demo() -> Result<(), truss::Error> {
/// use std::sync::Arc;
/// use truss::queue::{MemoryBackend, Producer};
///
/// let orders = MemoryBackend::shared("order.created");
/// let producer = Producer::new("order.created", orders.clone(), &Default::default());
/// producer.send(&serde_json::json!({"order_id": 7})).await?;
/// assert_eq!(orders.pending(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    subject: Arc<str>,
    sink: Arc<dyn Publish>,
    breaker: Arc<Breaker>,
    meter: Arc<ClientOperation>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// A producer for `subject` on `sink`, its breaker configured by `breaker` (which must
    /// be valid, as `[breaker]` is once loaded).
    pub fn new(subject: &str, sink: Arc<dyn Publish>, breaker: &BreakerConfig) -> Self {
        let _ = crate::observe::metrics::install();
        Self {
            subject: subject.into(),
            sink,
            breaker: Arc::new(Breaker::new(format!("queue/{subject}"), breaker)),
            meter: Arc::new(ClientOperation::new("queue", subject, "publish")),
        }
    }

    /// Publishes `body` (JSON, or protobuf for a [`Proto`](super::Proto), with its
    /// `content-type`); its id, or a 503 (`QUEUE_UNAVAILABLE`, `CIRCUIT_OPEN`), a 504
    /// (`DEADLINE_EXCEEDED`) or a 500 (`ENCODE_FAILED`).
    pub async fn send<T: Encode + ?Sized>(&self, body: &T) -> Result<String, Error> {
        self.send_with(body, BTreeMap::new()).await
    }

    /// [`send`](Self::send) with an ordering key (the `message-key` header): consumers
    /// handle the messages of one key one at a time, in order
    /// ([`ConsumerConfig::ordered`](super::ConsumerConfig::ordered)).
    ///
    /// ```
    /// # async fn demo() -> Result<(), truss::Error> {
    /// let producer = truss::queue::Producer::new(
    ///     "order.events",
    ///     truss::queue::MemoryBackend::shared("order.events"),
    ///     &Default::default(),
    /// );
    /// producer.send_keyed("order-7", &serde_json::json!({"status": "paid"})).await?;
    /// producer.send_keyed("order-7", &serde_json::json!({"status": "shipped"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_keyed<T: Encode + ?Sized>(
        &self,
        key: &str,
        body: &T,
    ) -> Result<String, Error> {
        let headers = BTreeMap::from([(MESSAGE_KEY.to_owned(), key.to_owned())]);
        self.send_with(body, headers).await
    }

    async fn send_with<T: Encode + ?Sized>(
        &self,
        body: &T,
        mut headers: BTreeMap<String, String>,
    ) -> Result<String, Error> {
        let payload = body.encode().map_err(|e| {
            Error::internal("ENCODE_FAILED", format!("the message does not encode: {e}"))
        })?;
        headers.insert(CONTENT_TYPE.to_owned(), T::CONTENT_TYPE.to_owned());
        let span = tracing::info_span!("publish", subject = %self.subject);
        let id = format!(
            "{:016x}{:016x}",
            crate::random::next_u64(),
            crate::random::next_u64()
        );
        self.publish(Bytes::from(payload), message_headers(id, headers))
            .instrument(span)
            .await
    }

    /// The handler of [`AppBuilder::relay`](crate::AppBuilder::relay): each message
    /// published unchanged, its headers kept (its `message-id` too, so consumers'
    /// idempotency absorbs a repeated relay), the trace continued. A failed publish is a
    /// 503: retried, the message left in its source until it succeeds.
    pub(crate) fn relay_handler(self) -> super::Erased {
        let producer = Arc::new(self);
        Arc::new(move |delivery: super::Delivery| {
            let producer = producer.clone();
            Box::pin(async move {
                let id = delivery
                    .headers
                    .get(MESSAGE_ID)
                    .cloned()
                    .unwrap_or_else(|| delivery.id.clone());
                let mut headers = delivery.headers;
                if let Some(key) = delivery.key {
                    headers.entry(MESSAGE_KEY.to_owned()).or_insert(key);
                }
                let headers = message_headers(id, headers);
                let span = tracing::info_span!("relay", subject = %producer.subject);
                producer
                    .publish(delivery.payload, headers)
                    .instrument(span)
                    .await
                    .map(drop)
                    .map_err(super::handler::Failure::Handler)
            })
        })
    }

    async fn publish(
        &self,
        payload: Bytes,
        headers: BTreeMap<String, String>,
    ) -> Result<String, Error> {
        let started = std::time::Instant::now();
        let deadline = Deadline::current();
        if deadline.is_some_and(|d| d.is_expired()) {
            self.meter.count("deadline_exceeded");
            return Err(deadline_exceeded());
        }
        if !self.breaker.allow() {
            self.meter.count("circuit_open");
            return Err(Error::unavailable(
                "CIRCUIT_OPEN",
                format!("publishing to {} is failing; not trying now", self.subject),
            ));
        }
        let call = self.sink.publish_message(payload, headers);
        let out = match deadline {
            Some(d) => tokio::time::timeout_at(d.instant(), call)
                .await
                .unwrap_or_else(|_| Err("the deadline passed".into())),
            None => call.await,
        };
        self.breaker.record(out.is_ok());
        self.meter.time(started.elapsed());
        match out {
            Ok(id) => {
                self.meter.count("ok");
                Ok(id)
            }
            Err(error) if deadline.is_some_and(|d| d.is_expired()) => {
                self.meter.count("deadline_exceeded");
                tracing::debug!(%error, "publish cut off by the deadline");
                Err(deadline_exceeded())
            }
            Err(error) => {
                self.meter.count("unavailable");
                tracing::warn!(subject = %self.subject, %error, "publish failed");
                Err(Error::unavailable(
                    "QUEUE_UNAVAILABLE",
                    format!("cannot publish to {}", self.subject),
                ))
            }
        }
    }
}

/// The header carrying a message's own id, stable across relays and repeated publishes:
/// [`Message::id`](super::Message::id) reads it.
pub const MESSAGE_ID: &str = "message-id";

/// The header carrying a message's ordering key (see [`Producer::send_keyed`]).
pub const MESSAGE_KEY: &str = "message-key";

/// `base` with `message-id` and the current trace (`traceparent`, `tracestate`) set.
fn message_headers(id: String, mut base: BTreeMap<String, String>) -> BTreeMap<String, String> {
    base.remove("tracestate");
    base.extend(super::trace_headers());
    base.insert(MESSAGE_ID.to_owned(), id);
    base
}

fn deadline_exceeded() -> Error {
    Error::new(504, "DEADLINE_EXCEEDED", "the request's deadline passed")
}

impl Publish for super::MemoryBackend {
    fn publish_message(
        &self,
        payload: Bytes,
        headers: BTreeMap<String, String>,
    ) -> BoxFuture<'_, Result<String, BoxError>> {
        Box::pin(async move { Ok(self.publish(payload, headers)) })
    }
}

#[cfg(feature = "redis")]
impl Publish for super::RedisStreams {
    fn publish_message(
        &self,
        payload: Bytes,
        headers: BTreeMap<String, String>,
    ) -> BoxFuture<'_, Result<String, BoxError>> {
        Box::pin(self.publish(payload, headers))
    }
}
