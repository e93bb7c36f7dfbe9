//! Handlers: async functions taking a typed [`Message`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::backend::Delivery;
use crate::Error;
use crate::registry::BoxFuture;

/// A decoded message, as a handler receives it.
#[derive(Debug, Clone)]
pub struct Message<T> {
    /// The body, decoded from JSON.
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
/// [`Message<T>`] returning `Result<(), E>` with `E: Into<truss::Error>`.
pub trait Handler<T>: Send + Sync + 'static {
    /// The handler as the consumer calls it: decode, then run.
    #[doc(hidden)]
    fn erase(self) -> Erased;
}

impl<F, Fut, T, E> Handler<T> for F
where
    F: Fn(Message<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    T: DeserializeOwned + Send + 'static,
    E: Into<Error>,
{
    fn erase(self) -> Erased {
        let handler = Arc::new(self);
        Arc::new(move |delivery: Delivery| {
            let handler = handler.clone();
            Box::pin(async move {
                let body = serde_json::from_slice::<T>(&delivery.payload)
                    .map_err(|e| Failure::Malformed(format!("the body does not decode: {e}")))?;
                let key = key_of(&delivery).map(str::to_owned);
                let id = match delivery.headers.get(super::producer::MESSAGE_ID) {
                    Some(id) if !id.is_empty() => id.clone(),
                    _ => delivery.id,
                };
                let message = Message {
                    body,
                    id,
                    key,
                    attempt: delivery.attempt,
                    headers: delivery.headers,
                };
                handler(message)
                    .await
                    .map_err(|e| Failure::Handler(e.into()))
            })
        })
    }
}
