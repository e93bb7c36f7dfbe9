//! Message bodies: JSON for serde types, protobuf for [`Proto`].
//!
//! ```
//! # async fn demo() -> Result<(), truss::Error> {
//! use truss::queue::{Message, Proto};
//!
//! #[derive(Clone, PartialEq, prost::Message)]
//! struct OrderCreated {
//!     #[prost(uint64, tag = "1")]
//!     order_id: u64,
//! }
//!
//! // The handler takes the protobuf message...
//! async fn notify(msg: Message<Proto<OrderCreated>>) -> Result<(), truss::Error> {
//!     tracing::info!(order = msg.body.order_id, "notifying"); // Proto derefs to the message
//!     Ok(())
//! }
//!
//! // ...the producer sends one (`content-type: application/protobuf`).
//! let producer = truss::queue::Producer::new(
//!     "order.created",
//!     truss::queue::MemoryBackend::shared("order.created"),
//!     &Default::default(),
//! );
//! producer.send(&Proto(OrderCreated { order_id: 7 })).await?;
//! # Ok(()) }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The header naming a message body's encoding. A consumer refuses (dead-letters) a body
/// whose `content-type` its handler does not decode (parameters such as `; charset=utf-8`
/// are ignored; JSON handlers take `application/json` and any `+json` type, protobuf
/// handlers `application/protobuf`, `application/x-protobuf` and
/// `application/vnd.google.protobuf`). A message without the header is decoded as the
/// handler's type, unless its body is empty: that is what a broken entry looks like, and an
/// empty protobuf message would decode from it as all defaults.
pub const CONTENT_TYPE: &str = "content-type";

/// A protobuf (prost) message as a message body: `Message<Proto<T>>` in a handler,
/// `producer.send(&Proto(value))` to publish. Derefs to `T`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Proto<T>(pub T);

impl<T> std::ops::Deref for Proto<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Proto<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// How a body is written: JSON for any [`Serialize`] type, protobuf for [`Proto`].
pub trait Encode {
    /// The `content-type` header sent with it.
    const CONTENT_TYPE: &'static str;

    /// The body's bytes, or why it cannot be encoded.
    fn encode(&self) -> Result<Vec<u8>, String>;
}

impl<T: Serialize + ?Sized> Encode for T {
    const CONTENT_TYPE: &'static str = "application/json";

    fn encode(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(self).map_err(|e| e.to_string())
    }
}

impl<T: prost::Message> Encode for Proto<T> {
    const CONTENT_TYPE: &'static str = "application/protobuf";

    fn encode(&self) -> Result<Vec<u8>, String> {
        Ok(self.0.encode_to_vec())
    }
}

/// How a handler's body is read: JSON into any [`DeserializeOwned`] type, protobuf into
/// [`Proto`].
pub trait Decode: Sized {
    /// The `content-type` this decodes.
    const CONTENT_TYPE: &'static str;

    /// Whether a body sent as `media_type` (lowercase, without parameters) is one.
    fn accepts(media_type: &str) -> bool {
        media_type == Self::CONTENT_TYPE
    }

    /// The body, or why the bytes are not one.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

impl<T: DeserializeOwned> Decode for T {
    const CONTENT_TYPE: &'static str = "application/json";

    fn accepts(media_type: &str) -> bool {
        media_type == Self::CONTENT_TYPE || media_type.ends_with("+json")
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

impl<T: prost::Message + Default> Decode for Proto<T> {
    const CONTENT_TYPE: &'static str = "application/protobuf";

    fn accepts(media_type: &str) -> bool {
        matches!(
            media_type,
            "application/protobuf" | "application/x-protobuf" | "application/vnd.google.protobuf"
        )
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        T::decode(bytes).map(Proto).map_err(|e| e.to_string())
    }
}

/// The body of a delivery with `content_type` (its header, if any), decoded as `T`.
pub(crate) fn decode<T: Decode>(bytes: &[u8], content_type: Option<&str>) -> Result<T, String> {
    match content_type {
        Some(sent) => {
            let media_type = sent
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !T::accepts(&media_type) {
                return Err(format!(
                    "the body is {sent}, the handler decodes {}",
                    T::CONTENT_TYPE
                ));
            }
        }
        None if bytes.is_empty() => return Err("the body is empty".to_owned()),
        None => {}
    }
    T::decode(bytes).map_err(|e| format!("the body does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Order {
        #[prost(uint64, tag = "1")]
        id: u64,
    }

    #[test]
    fn bodies_round_trip_and_a_mismatch_is_named() {
        let bytes = Proto(Order { id: 7 }).encode().unwrap_or_default();
        let back: Result<Proto<Order>, _> = decode(&bytes, Some("application/protobuf"));
        assert_eq!(back.map(|p| p.id), Ok(7));
        let json = serde_json::json!({"id": 7}).encode().unwrap_or_default();
        let wrong = decode::<Proto<Order>>(&json, Some("application/json"));
        assert_eq!(
            wrong.err().as_deref(),
            Some("the body is application/json, the handler decodes application/protobuf")
        );
        let garbage = decode::<Proto<Order>>(&[0xff, 0xff], None);
        assert!(garbage.is_err_and(|e| e.contains("does not decode")));
    }

    #[test]
    fn media_types_are_compared_without_parameters_and_empty_bodies_need_a_type() {
        let json = br#"{"id":7}"#;
        let with_charset =
            decode::<serde_json::Value>(json, Some("Application/JSON; charset=utf-8"));
        assert!(with_charset.is_ok());
        assert!(decode::<serde_json::Value>(json, Some("application/cloudevents+json")).is_ok());
        let bytes = Proto(Order { id: 300 }).encode().unwrap_or_default();
        let aliased = decode::<Proto<Order>>(&bytes, Some("application/x-protobuf"));
        assert_eq!(aliased.map(|p| p.id), Ok(300));
        // An empty protobuf message is a valid body when a producer said what it is...
        let empty = decode::<Proto<Order>>(&[], Some("application/protobuf"));
        assert_eq!(empty.map(|p| p.id), Ok(0));
        // ...and refused when nothing did (a missing field reads as empty).
        assert_eq!(
            decode::<Proto<Order>>(&[], None).err().as_deref(),
            Some("the body is empty")
        );
    }
}
