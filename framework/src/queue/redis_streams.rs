//! [`RedisStreams`]: a Redis stream read by a consumer group (feature `redis`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};

use super::backend::{Backend, Delivery};
use crate::BoxError;
use crate::registry::BoxFuture;

/// Moves due retries from the delay set into the stream, atomically.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[2], member)
  redis.call('XADD', KEYS[1], '*', unpack(cjson.decode(member)))
end
return #due
";

/// A Redis stream consumed through a consumer group (`XREADGROUP`, `XACK`, `XAUTOCLAIM`).
///
/// * Entries are `payload` plus `attempt`, optional `key` and one `h:<name>` field per
///   header; [`publish`](Self::publish) writes them.
/// * At-least-once: an entry stays pending in the group until acknowledged; entries pending
///   longer than `claim_idle` on any consumer (one that died) are claimed by the next fetch.
/// * Retries wait in a sorted set `<stream>:delayed` and go back into the stream when due;
///   dead letters go to the stream `<stream>:dead` with a `dead-letter-reason` field. Each
///   is stored before the original is acknowledged.
///
/// Blocking reads use a connection of their own, with no response timeout.
#[derive(Clone)]
pub struct RedisStreams {
    reader: MultiplexedConnection,
    writer: MultiplexedConnection,
    stream: String,
    group: String,
    consumer: String,
    claim_idle: Duration,
}

impl std::fmt::Debug for RedisStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreams")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisStreams {
    /// Connects to `url` and makes sure `group` exists on `stream` (created empty when
    /// missing, reading from the start). `consumer` names this instance in the group;
    /// deliveries pending longer than `claim_idle` elsewhere are taken over.
    pub async fn connect(
        url: &str,
        stream: &str,
        group: &str,
        consumer: &str,
        claim_idle: Duration,
    ) -> Result<Self, BoxError> {
        let client = redis::Client::open(url)?;
        let blocking = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let reader = client
            .get_multiplexed_async_connection_with_config(&blocking)
            .await?;
        let mut writer = client.get_multiplexed_async_connection().await?;
        let created: redis::RedisResult<()> =
            writer.xgroup_create_mkstream(stream, group, "0").await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(e.into());
        }
        Ok(Self {
            reader,
            writer,
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            claim_idle,
        })
    }

    /// Connects to `url` to publish to `stream` only (no consumer group is created).
    pub async fn publisher(url: &str, stream: &str) -> Result<Self, BoxError> {
        let client = redis::Client::open(url)?;
        let writer = client.get_multiplexed_async_connection().await?;
        Ok(Self {
            reader: writer.clone(),
            writer,
            stream: stream.to_owned(),
            group: String::new(),
            consumer: String::new(),
            claim_idle: Duration::ZERO,
        })
    }

    /// Appends a message; returns its entry id.
    pub async fn publish(
        &self,
        payload: impl Into<Bytes>,
        headers: BTreeMap<String, String>,
    ) -> Result<String, BoxError> {
        let fields = fields(&payload.into(), &headers, None, 1);
        let id: String = self.writer.clone().xadd(&self.stream, "*", &fields).await?;
        Ok(id)
    }

    /// The dead-letter stream's key.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}:dead", self.stream)
    }

    fn delayed_key(&self) -> String {
        format!("{}:delayed", self.stream)
    }

    async fn promote_due(&self) -> Result<(), BoxError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let _: i64 = redis::Script::new(PROMOTE)
            .key(&self.stream)
            .key(self.delayed_key())
            .arg(now)
            .invoke_async(&mut self.writer.clone())
            .await?;
        Ok(())
    }

    async fn claim(&self, max: usize) -> Result<Vec<Delivery>, BoxError> {
        let idle = self.claim_idle.as_millis() as u64;
        let options = StreamAutoClaimOptions::default().count(max);
        let reply: redis::streams::StreamAutoClaimReply = self
            .writer
            .clone()
            .xautoclaim_options(
                &self.stream,
                &self.group,
                &self.consumer,
                idle,
                "0-0",
                options,
            )
            .await?;
        Ok(reply.claimed.iter().map(delivery).collect())
    }

    async fn read(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BoxError> {
        let options = StreamReadOptions::default()
            .group(&self.group, &self.consumer)
            .count(max)
            .block(wait.as_millis().max(1) as usize);
        let reply: Option<StreamReadReply> = self
            .reader
            .clone()
            .xread_options(&[&self.stream], &[">"], &options)
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|entry| delivery(&entry))
            .collect())
    }

    async fn ack_id(&self, id: &str) -> Result<(), BoxError> {
        let _: i64 = self
            .writer
            .clone()
            .xack(&self.stream, &self.group, &[id])
            .await?;
        Ok(())
    }
}

/// The fields of an entry.
fn fields(
    payload: &Bytes,
    headers: &BTreeMap<String, String>,
    key: Option<&str>,
    attempt: u32,
) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("payload".to_owned(), payload.to_vec()),
        ("attempt".to_owned(), attempt.to_string().into_bytes()),
    ];
    if let Some(key) = key {
        out.push(("key".to_owned(), key.as_bytes().to_vec()));
    }
    for (name, value) in headers {
        out.push((format!("h:{name}"), value.as_bytes().to_vec()));
    }
    out
}

/// A field as text for the delayed set (a JSON array of strings): a binary payload
/// (protobuf) becomes `payload:b64`, base64, which [`delivery`] decodes.
fn textual(name: String, value: Vec<u8>) -> (String, String) {
    match String::from_utf8(value) {
        Ok(text) => (name, text),
        Err(binary) => (format!("{name}:b64"), BASE64.encode(binary.into_bytes())),
    }
}

/// A stream entry as a delivery; missing or odd fields give an empty payload (which then
/// fails to decode and is dead-lettered, never a panic).
fn delivery(entry: &StreamId) -> Delivery {
    let text = |name: &str| -> Option<String> {
        entry
            .map
            .get(name)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
    };
    let payload = match entry.map.get("payload") {
        Some(v) => redis::from_redis_value_ref::<Vec<u8>>(v).ok(),
        // A retry of a binary body, through the delayed set.
        None => text("payload:b64").and_then(|b| BASE64.decode(b).ok()),
    }
    .unwrap_or_default();
    let headers = entry
        .map
        .keys()
        .filter_map(|k| Some((k.strip_prefix("h:")?.to_owned(), text(k)?)))
        .collect();
    Delivery {
        id: entry.id.clone(),
        key: text("key"),
        headers,
        payload: Bytes::from(payload),
        attempt: text("attempt").and_then(|a| a.parse().ok()).unwrap_or(1),
    }
}

impl Backend for RedisStreams {
    fn fetch(&self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Delivery>, BoxError>> {
        Box::pin(async move {
            self.promote_due().await?;
            let claimed = self.claim(max).await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
            self.read(max, wait).await
        })
    }

    fn ack<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(self.ack_id(&delivery.id))
    }

    /// The group's `lag` from `XINFO GROUPS` (Redis 7), plus retries waiting to be due.
    fn lag(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        Box::pin(async move {
            let mut conn = self.writer.clone();
            let groups: redis::streams::StreamInfoGroupsReply =
                conn.xinfo_groups(&self.stream).await?;
            let waiting: u64 = conn.zcard(self.delayed_key()).await?;
            Ok(groups
                .groups
                .iter()
                .find(|g| g.name == self.group)
                .and_then(|g| g.lag)
                .map(|lag| lag as u64 + waiting))
        })
    }

    fn retry<'a>(
        &'a self,
        delivery: &'a Delivery,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let due = SystemTime::now()
                .checked_add(delay)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default();
            // The copy is a new entry: it keeps the message's id for `first_delivery`.
            let mut headers = delivery.headers.clone();
            headers
                .entry(super::MESSAGE_ID.to_owned())
                .or_insert_with(|| delivery.id.clone());
            let flat: Vec<serde_json::Value> = fields(
                &delivery.payload,
                &headers,
                delivery.key.as_deref(),
                delivery.attempt + 1,
            )
            .into_iter()
            .flat_map(|(k, v)| {
                let (k, v) = textual(k, v);
                [k.into(), v.into()]
            })
            .collect();
            let member = serde_json::to_string(&flat)?;
            let _: i64 = self
                .writer
                .clone()
                .zadd(self.delayed_key(), member, due)
                .await?;
            self.ack_id(&delivery.id).await
        })
    }

    fn dead_letter<'a>(
        &'a self,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let mut entry = fields(
                &delivery.payload,
                &delivery.headers,
                delivery.key.as_deref(),
                delivery.attempt,
            );
            entry.push(("dead-letter-reason".to_owned(), reason.as_bytes().to_vec()));
            let _: String = self
                .writer
                .clone()
                .xadd(self.dead_letter_stream(), "*", &entry)
                .await?;
            self.ack_id(&delivery.id).await
        })
    }
}
