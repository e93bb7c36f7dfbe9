//! Handlers: async functions or tower services taking a typed [`Message`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tower::{Service, ServiceExt};

use super::backend::Delivery;
use super::body::{CONTENT_TYPE, Decode, decode};
use crate::registry::BoxFuture;
use crate::{BoxError, Error};

/// A decoded message, as a handler receives it.
#[derive(Debug, Clone)]
pub struct Message<T> {
    /// The body, decoded from JSON, or from protobuf for a [`Proto`](super::Proto).
    pub body: T,
    /// The message's id: its `message-id` header when the producer set one (a
    /// [`Producer`](super::Producer) always does, and a relay keeps it), so a message
    /// published twice has one id; otherwise the broker's id of this delivery. The key to
    /// give [`first_delivery`](super::first_delivery).
    pub id: String,
    /// The ordering key, if any: the broker's, or the `message-key` header.
    pub key: Option<String>,
    /// 1 for the first delivery, higher for retries.
    pub attempt: u32,
    /// The headers the producer sent.
    pub headers: BTreeMap<String, String>,
}

/// A delivery's ordering key: the broker's, else its `message-key` header.
pub(crate) fn key_of(delivery: &Delivery) -> Option<&str> {
    delivery
        .key
        .as_deref()
        .or_else(|| {
            delivery
                .headers
                .get(super::producer::MESSAGE_KEY)
                .map(String::as_str)
        })
        .filter(|key| !key.is_empty())
}

/// Why a message was not handled.
#[doc(hidden)]
#[derive(Debug)]
pub enum Failure {
    /// The body does not decode: never retried.
    Malformed(String),
    /// The handler's error.
    Handler(Error),
}

/// The type-erased form the consumer calls.
#[doc(hidden)]
pub type Erased = Arc<dyn Fn(Delivery) -> BoxFuture<'static, Result<(), Failure>> + Send + Sync>;

/// What [`AppBuilder::consume`](crate::AppBuilder::consume) takes: an async function of a
/// [`Message<T>`] returning `Result<(), E>` with `E: Into<truss::Error>`, or a tower
/// `Service` wrapped by [`service`]. `T` is any serde type (JSON) or a [`Proto`](super::Proto)
/// (protobuf).
pub trait Handler<T>: Send + Sync + 'static {
    /// The handler as the consumer calls it: decode, then run.
    #[doc(hidden)]
    fn erase(self) -> Erased;
}

impl<F, Fut, T, E> Handler<T> for F
where
    F: Fn(Message<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    T: Decode + Send + 'static,
    E: Into<Error>,
{
    fn erase(self) -> Erased {
        let handler = Arc::new(self);
        Arc::new(move |delivery: Delivery| {
            let handler = handler.clone();
            Box::pin(async move {
                let message = message::<T>(delivery)?;
                handler(message)
                    .await
                    .map_err(|e| Failure::Handler(e.into()))
            })
        })
    }
}

/// A tower [`Service`] of [`Message<T>`] as a handler, so tower middleware (your own, or
/// tower's) wraps the consumer's work.
///
/// The service is cloned per message and called when ready. Its error becomes the
/// message's outcome: a [`truss::Error`](struct@crate::Error) as it is (its code decides retry or
/// dead letter), tower's timeout `Elapsed` a 504 (retried), anything else a 500 (retried).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use truss::queue::{ConsumerConfig, MemoryBackend, Message};
///
/// let handler = ServiceBuilder::new()
///     .timeout(Duration::from_secs(2))
///     .service_fn(|msg: Message<serde_json::Value>| async move {
///         tracing::info!(id = %msg.id, "handled");
///         Ok::<_, truss::Error>(())
///     });
/// let app = truss::App::builder("notify").consume(
///     "order.created",
///     Arc::new(MemoryBackend::new()),
///     ConsumerConfig::default(),
///     truss::queue::service(handler),
/// );
/// # let _ = app;
/// ```
pub fn service<S>(service: S) -> ServiceHandler<S> {
    ServiceHandler(service)
}

/// A tower `Service` as a [`Handler`]: made by [`service`].
#[derive(Debug, Clone)]
pub struct ServiceHandler<S>(S);

impl<S, T> Handler<T> for ServiceHandler<S>
where
    S: Service<Message<T>, Response = ()> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    T: Decode + Send + 'static,
{
    fn erase(self) -> Erased {
        let service = self.0;
        Arc::new(move |delivery: Delivery| {
            let service = service.clone();
            Box::pin(async move {
                let message = message::<T>(delivery)?;
                service
                    .oneshot(message)
                    .await
                    .map_err(|e| Failure::Handler(service_error(e.into())))
            })
        })
    }
}

/// A service's error as the consumer's outcome.
fn service_error(error: BoxError) -> Error {
    match error.downcast::<Error>() {
        Ok(error) => *error,
        Err(error) if error.is::<tower::timeout::error::Elapsed>() => {
            Error::deadline_exceeded("HANDLER_TIMEOUT", error.to_string())
        }
        Err(error) => Error::internal("HANDLER_FAILED", error.to_string()),
    }
}

/// The delivery as the handler's [`Message`], or why its body is refused.
fn message<T: Decode>(delivery: Delivery) -> Result<Message<T>, Failure> {
    let content_type = delivery.headers.get(CONTENT_TYPE).map(String::as_str);
    let body = decode::<T>(&delivery.payload, content_type).map_err(Failure::Malformed)?;
    let key = key_of(&delivery).map(str::to_owned);
    let id = match delivery.headers.get(super::producer::MESSAGE_ID) {
        Some(id) if !id.is_empty() => id.clone(),
        _ => delivery.id,
    };
    Ok(Message {
        body,
        id,
        key,
        attempt: delivery.attempt,
        headers: delivery.headers,
    })
}
