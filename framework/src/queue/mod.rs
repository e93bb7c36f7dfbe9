//! Message consumers: the fourth kind of listener, beside HTTP, gRPC and admin.
//!
//! ```
//! use std::sync::Arc;
//! use serde::Deserialize;
//! use truss::queue::{ConsumerConfig, MemoryBackend, Message};
//!
//! #[derive(Deserialize)]
//! struct OrderCreated { order_id: u64 }
//!
//! async fn notify(msg: Message<OrderCreated>) -> Result<(), truss::Error> {
//!     tracing::info!(order = msg.body.order_id, "notifying"); // logged with the producer's trace id
//!     Ok(())
//! }
//!
//! let orders = Arc::new(MemoryBackend::new());
//! let app = truss::App::builder("notify")
//!     .consume("order.created", orders.clone(), ConsumerConfig::default(), notify);
//! # let _ = app;
//! ```
//!
//! Each message goes through the same kind of stack as a request:
//!
//! * **Trace.** The `traceparent` header the producer set ([`trace_headers`]) becomes the
//!   handler's trace context and span, so its logs carry the producer's trace id.
//! * **Admission.** At most [`ConsumerConfig::max_in_flight`] messages are handled at once;
//!   no more are fetched until one finishes.
//! * **Deadline.** Each handler runs under [`ConsumerConfig::deadline`] (the request-scoped
//!   [`Deadline`](crate::resilience::deadline::Deadline) clients pass on).
//! * **Retries, then a dead letter.** A handler error with a 5xx (or 408/429) code, a
//!   deadline passed or a panic is retried after an exponential backoff, up to
//!   [`ConsumerConfig::max_attempts`]; then, and at once for a 4xx error or a body that does
//!   not decode, the message goes to the backend's dead-letter destination with the reason.
//!   A panicking handler never takes the consumer down.
//! * **At-least-once.** A message is acknowledged only after its handler succeeded, or after
//!   its retry or dead letter is stored: a crash in between delivers it again. Handlers are
//!   written to be idempotent.
//! * **Metrics.** `truss_consumer_messages_total{subscription, result}` (`acked`,
//!   `retried`, `dead_lettered`), `truss_consumer_handler_duration_seconds{subscription}`,
//!   `truss_consumer_in_flight{subscription}`.
//! * **Once-effective handlers** (feature `sql`): `queue::first_delivery` records the message id
//!   in the handler's own transaction, so a redelivered message is recognised and skipped.
//! * **Shutdown.** With the app's phases: the consumer stops fetching when the listeners
//!   close, messages in flight get `shutdown.grace` to finish and be acknowledged, and what
//!   is left unacknowledged is delivered again by the backend later, never lost.
//!
//! Handlers are async functions of a [`Message<T>`], or tower services wrapped by
//! [`service`]; `T` is any serde type (JSON) or a [`Proto`] (protobuf), told apart on the
//! wire by the `content-type` header a [`Producer`] sets.
//!
//! Backends implement [`Backend`]: [`MemoryBackend`] keeps messages in the process (tests,
//! and a single-process `make run`); `SqlQueue` (feature `sql`) is a service's transactional
//! outbox table; `RedisStreams` (feature `redis`) reads a stream through a consumer group;
//! `NatsJetStream` (feature `nats`) a JetStream durable pull consumer; `KafkaTopic` (feature
//! `kafka`) a consumer group with committed offsets. `[consumers."<subscription>"]` and
//! `[producers."<subject>"]` choose one per entry.
//!
//! **Producers** ([`Producer`]) publish with the trace in the headers, the caller's
//! deadline, a breaker per subject and `truss_client_*` metrics (`transport="queue"`).
//! [`AppBuilder::relay`](crate::AppBuilder::relay) moves an outbox's messages to a broker.

mod backend;
mod body;
mod consumer;
mod handler;
#[cfg(feature = "sql")]
mod idempotency;
#[cfg(feature = "kafka")]
mod kafka;
mod memory;
#[cfg(feature = "nats")]
mod nats;
mod pace;
mod producer;
mod producers;
#[cfg(feature = "redis")]
mod redis_streams;
#[cfg(feature = "sql")]
mod sql_queue;

pub use backend::{Backend, Delivery};
pub use body::{CONTENT_TYPE, Decode, Encode, Proto};
pub(crate) use consumer::Consumer;
pub use consumer::{ConsumerConfig, ConsumersConfig, QueueBackend};
pub(crate) use handler::Erased;
pub use handler::{Handler, Message, ServiceHandler, service};
#[cfg(feature = "sql")]
pub use idempotency::{PROCESSED_TABLE, first_delivery};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaSettings, KafkaTopic};
pub use memory::MemoryBackend;
#[cfg(feature = "nats")]
pub use nats::{JetStreamSettings, NatsJetStream};

/// The NATS server a `backend = "nats"` entry without `url` reaches.
#[cfg(feature = "nats")]
pub(crate) fn nats_default_url() -> &'static str {
    nats::DEFAULT_URL
}
pub use producer::{MESSAGE_ID, MESSAGE_KEY, Producer, Publish};
pub use producers::{ProducerConfig, ProducersConfig};
#[cfg(feature = "redis")]
pub use redis_streams::RedisStreams;
#[cfg(feature = "sql")]
pub use sql_queue::{QUEUE_TABLES, SqlQueue, enqueue};

use std::collections::BTreeMap;

/// The headers a producer sends with a message so the consumer continues the current
/// trace: `traceparent` (and `tracestate`) of a child of the task's trace context, or none
/// outside a traced task.
///
/// ```
/// let headers = truss::queue::trace_headers();
/// assert!(headers.is_empty()); // no request being served here
/// ```
pub fn trace_headers() -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    if let Some(ctx) = crate::observe::trace::TraceContext::current() {
        if let Ok(value) = ctx.child_traceparent().to_str() {
            headers.insert("traceparent".to_owned(), value.to_owned());
        }
        if let Some(state) = ctx.tracestate.as_ref().and_then(|s| s.to_str().ok()) {
            headers.insert("tracestate".to_owned(), state.to_owned());
        }
    }
    headers
}
