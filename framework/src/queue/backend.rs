//! What a message broker provides to a consumer.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use crate::BoxError;
use crate::registry::BoxFuture;

/// One message as the broker delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The broker's id of this delivery (a stream entry id, an offset, ...).
    pub id: String,
    /// The ordering key, where the broker has one.
    pub key: Option<String>,
    /// Headers: `traceparent`, and `dead-letter-reason` on a dead letter.
    pub headers: BTreeMap<String, String>,
    /// The body (JSON for [`Message`](super::Message) handlers).
    pub payload: Bytes,
    /// 1 for the first delivery, counted up by each retry.
    pub attempt: u32,
}

/// A broker, seen from a consumer: fetch, then settle each delivery exactly one way.
///
/// Every method that settles a delivery must leave it delivered again if the process dies
/// before it returns (at-least-once): `retry` and `dead_letter` store their copy before the
/// original is acknowledged.
pub trait Backend: Send + Sync + 'static {
    /// Up to `max` deliveries, waiting at most `wait` for the first when none is ready.
    fn fetch(&self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Delivery>, BoxError>>;

    /// The delivery was handled: never deliver it again.
    fn ack<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Deliver it again after `delay`, with `attempt + 1`.
    fn retry<'a>(
        &'a self,
        delivery: &'a Delivery,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Move it to the dead-letter destination, with `reason` in its `dead-letter-reason`
    /// header.
    fn dead_letter<'a>(
        &'a self,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Makes sure every settlement sent so far reached the broker: called once at shutdown,
    /// after the messages in flight finished, before the process exits (a client that
    /// buffers its acknowledgements flushes them here). Default: nothing to do.
    fn flush(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }

    /// Messages published but not yet delivered to this consumer's group, when the broker
    /// tells (`truss_consumer_lag`). Default: unknown.
    fn lag(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        Box::pin(async { Ok(None) })
    }
}
