//! How cached values become bytes in Redis, and back.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// How a [`Cache`](super::Cache) stores its values in Redis. [`Json`] (serde, the default)
/// and [`Prost`] (protobuf messages) are provided; implement it for anything else.
///
/// ```
/// use truss::redis::{Codec, Json};
///
/// let bytes = <Json as Codec<Vec<u32>>>::encode(&vec![1, 2]).unwrap();
/// assert_eq!(bytes, b"[1,2]");
/// assert_eq!(<Json as Codec<Vec<u32>>>::decode(&bytes).unwrap(), vec![1, 2]);
/// ```
///
/// A value that no longer decodes (its type changed in a deploy) is treated as a miss: the
/// loader runs and the entry is overwritten.
pub trait Codec<V>: Send + Sync + 'static {
    /// The bytes stored for `value`.
    fn encode(value: &V) -> Result<Vec<u8>, String>;
    /// The value `bytes` hold.
    fn decode(bytes: &[u8]) -> Result<V, String>;
}

/// JSON through serde: readable in `redis-cli`, for any `Serialize + DeserializeOwned`
/// value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<V: Serialize + DeserializeOwned> Codec<V> for Json {
    fn encode(value: &V) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }

    fn decode(bytes: &[u8]) -> Result<V, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Protobuf through prost: compact, for the messages a gRPC service already has.
///
/// ```
/// use truss::redis::{Codec, Prost};
///
/// let bytes = <Prost as Codec<String>>::encode(&"hi".to_owned()).unwrap();
/// assert_eq!(<Prost as Codec<String>>::decode(&bytes).unwrap(), "hi");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Prost;

impl<V: prost::Message + Default> Codec<V> for Prost {
    fn encode(value: &V) -> Result<Vec<u8>, String> {
        Ok(value.encode_to_vec())
    }

    fn decode(bytes: &[u8]) -> Result<V, String> {
        V::decode(bytes).map_err(|e| e.to_string())
    }
}

/// The first byte of a value entry; the codec's bytes follow.
const VALUE: u8 = 1;
/// The whole of a "not found" entry.
const NOT_FOUND: u8 = 0;

/// What an entry in Redis holds.
pub(super) enum Entry<V> {
    /// A value.
    Value(V),
    /// The loader found nothing (negative caching).
    NotFound,
}

/// The bytes stored for `entry`: `[1, codec bytes…]` for a value, `[0]` for "not found",
/// so the placeholder cannot collide with any encoded value (an empty protobuf message
/// encodes to no bytes at all).
pub(super) fn encode<V, C: Codec<V>>(entry: Entry<&V>) -> Result<Vec<u8>, String> {
    match entry {
        Entry::Value(value) => {
            let mut bytes = vec![VALUE];
            bytes.extend(C::encode(value)?);
            Ok(bytes)
        }
        Entry::NotFound => Ok(vec![NOT_FOUND]),
    }
}

/// The entry `bytes` hold.
pub(super) fn decode<V, C: Codec<V>>(bytes: &[u8]) -> Result<Entry<V>, String> {
    match bytes.split_first() {
        Some((&VALUE, rest)) => C::decode(rest).map(Entry::Value),
        Some((&NOT_FOUND, [])) => Ok(Entry::NotFound),
        _ => Err("not a cache entry".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_the_placeholder_is_distinct() {
        let empty = encode::<String, Prost>(Entry::Value(&String::new())).unwrap();
        let none = encode::<String, Prost>(Entry::NotFound).unwrap();
        assert_ne!(empty, none);
        assert!(matches!(decode::<String, Prost>(&empty), Ok(Entry::Value(s)) if s.is_empty()));
        assert!(matches!(
            decode::<String, Prost>(&none),
            Ok(Entry::NotFound)
        ));
        let json = encode::<Option<u8>, Json>(Entry::Value(&None)).unwrap();
        assert_eq!(json, b"\x01null");
        assert!(decode::<u8, Json>(b"").is_err());
        assert!(decode::<u8, Json>(b"\x00junk").is_err());
        assert!(decode::<u8, Json>(b"\x01\"x\"").is_err());
    }
}
