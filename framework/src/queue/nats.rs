//! [`NatsJetStream`]: a NATS JetStream stream read by a durable pull consumer (feature
//! `nats`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, AckKind};
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use tokio_stream::StreamExt;

use super::Publish;
use super::backend::{Backend, Delivery};
use crate::BoxError;
use crate::registry::BoxFuture;

/// The server a backend with no `url` connects to.
pub(crate) const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// The header carrying a message's ordering key ([`Delivery::key`]).
const KEY_HEADER: &str = "key";

/// The header saying why a message was dead-lettered.
const REASON_HEADER: &str = "dead-letter-reason";

/// Longest `dead-letter-reason` kept, in bytes: headers count toward the server's
/// `max_payload`, and a handler's error can be long.
const MAX_REASON: usize = 1024;

/// Longest pause after a fetch the server ended early with nothing in it (a `408 Requests
/// Pending`, when other instances' pull requests already cover every waiting message), so
/// the consumer loop does not spin.
const EMPTY_PAUSE: Duration = Duration::from_millis(100);

/// Where a [`NatsJetStream`] reads and writes.
///
/// ```
/// use std::time::Duration;
/// use truss::queue::JetStreamSettings;
///
/// let mut settings = JetStreamSettings::new("order.created", "notify");
/// settings.ack_wait = Duration::from_secs(90);
/// assert_eq!(settings.stream, "order_created");
/// assert_eq!(settings.dead_letter_subject, "order.created.dead");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamSettings {
    /// The subject messages are published to and consumed from (no wildcards): the
    /// consumer's filter.
    pub subject: String,
    /// The stream holding `subject`. Created, capturing `subject` and
    /// `dead_letter_subject`, with file storage and no limits, when missing; an existing
    /// stream (made by an operator, with its own limits) is used as it is.
    pub stream: String,
    /// The durable pull consumer, shared by every instance of one service: each message
    /// goes to one of them. Another service reads the same subject with its own durable.
    pub durable: String,
    /// Where dead letters are published. Default `<subject>.dead`; it must be captured by
    /// a stream (the one created here captures it) and differ from `subject`.
    pub dead_letter_subject: String,
    /// How long a delivery may stay unsettled before the server delivers it again (to any
    /// instance): the time to take over a dead consumer's messages. Must exceed the
    /// longest handler run plus its settling, or a slow handler's message is handled twice
    /// at once. Default `60s`. Only applied when this creates the consumer.
    pub ack_wait: Duration,
}

impl JetStreamSettings {
    /// Settings for `subject` read by the durable `durable`: the stream is named after the
    /// subject (`order.created` → `order_created`), dead letters go to `<subject>.dead`.
    /// Characters a JetStream name cannot hold (`.`, `*`, `>`, `/`, `\`, whitespace) become
    /// `_` in the stream and durable names.
    pub fn new(subject: &str, durable: &str) -> Self {
        Self {
            subject: subject.to_owned(),
            stream: name_from(subject),
            durable: name_from(durable),
            dead_letter_subject: format!("{subject}.dead"),
            ack_wait: Duration::from_secs(60),
        }
    }

    /// Rejects what would fail later, less clearly, on the server or in the client (whose
    /// API calls build subjects from these names).
    fn check(&self) -> Result<(), BoxError> {
        for (what, subject) in [
            ("subject", &self.subject),
            ("dead_letter_subject", &self.dead_letter_subject),
        ] {
            if !is_literal_subject(subject) {
                return Err(format!(
                    "{what} {subject:?} is not a NATS subject to publish to (empty token, \
                     whitespace or wildcard)"
                )
                .into());
            }
        }
        if self.subject == self.dead_letter_subject {
            return Err("dead_letter_subject must differ from subject".into());
        }
        for (what, name) in [("stream", &self.stream), ("durable", &self.durable)] {
            if name.is_empty() || name.chars().any(is_forbidden_in_name) {
                return Err(format!("{what} {name:?} is not a valid JetStream name").into());
            }
        }
        if self.ack_wait.is_zero() {
            return Err("ack_wait must be above 0".into());
        }
        Ok(())
    }
}

/// A NATS JetStream stream consumed through a durable pull consumer.
///
/// * [`publish`](Self::publish) sends a message to `subject` with its headers (`key` for
///   the ordering key) and waits for the stream's acknowledgement. The stream sequence is
///   the id of the publish and of every delivery of that message; the server's delivery
///   count is the attempt.
/// * At-least-once: a delivery stays pending on the consumer until settled; one left
///   unsettled for `ack_wait` (its consumer died, or the fetch was cancelled) is delivered
///   again, to any instance sharing the durable.
/// * Retries are negative acknowledgements with the delay, redelivered by the server;
///   dead letters are published to `dead_letter_subject` with a `dead-letter-reason`
///   header, and only once the stream acknowledged that copy is the original terminated.
/// * A [`Delivery`] alone cannot be acknowledged: the NATS message of each delivery
///   (holding its ack subject) is kept here until settled. Settle a delivery through the
///   value that fetched it (or a clone): another connection does not know it.
///
/// Headers starting with `Nats-` (`Nats-Msg-Id`, expectations) are the broker's and are
/// left out of [`Delivery::headers`]; so is `key`, which becomes [`Delivery::key`].
#[derive(Clone)]
pub struct NatsJetStream {
    client: async_nats::Client,
    context: jetstream::Context,
    /// `None` for a [`publisher`](Self::publisher).
    consumer: Option<PullConsumer>,
    settings: Arc<JetStreamSettings>,
    in_flight: Arc<Mutex<HashMap<String, jetstream::Message>>>,
}

impl std::fmt::Debug for NatsJetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsJetStream")
            .field("subject", &self.settings.subject)
            .field("stream", &self.settings.stream)
            .field("durable", &self.settings.durable)
            .finish_non_exhaustive()
    }
}

impl NatsJetStream {
    /// Connects to `url` (`nats://host:4222`; `tls://` for TLS) and makes sure the stream
    /// and the durable pull consumer exist (created when missing: the stream capturing
    /// `subject` and `dead_letter_subject`, the consumer filtering `subject`, reading from
    /// the start, with explicit acks and `ack_wait`).
    ///
    /// An existing consumer keeps its configuration (a changed `ack_wait` is not applied;
    /// a warning says so), but one without explicit acknowledgements is refused.
    pub async fn connect(url: &str, settings: JetStreamSettings) -> Result<Self, BoxError> {
        let (client, context, stream) = Self::stream(url, &settings).await?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &settings.durable,
                pull::Config {
                    durable_name: Some(settings.durable.clone()),
                    filter_subject: settings.subject.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    ..Default::default()
                },
            )
            .await?;
        check_existing(&consumer.cached_info().config, &settings)?;
        Ok(Self {
            client,
            context,
            consumer: Some(consumer),
            settings: Arc::new(settings),
            in_flight: Arc::default(),
        })
    }

    /// Connects to `url` to publish only: the stream is made sure of (created when
    /// missing), no consumer is.
    pub async fn publisher(url: &str, settings: JetStreamSettings) -> Result<Self, BoxError> {
        let (client, context, _) = Self::stream(url, &settings).await?;
        Ok(Self {
            client,
            context,
            consumer: None,
            settings: Arc::new(settings),
            in_flight: Arc::default(),
        })
    }

    /// The connection's JetStream context and the stream, created when missing.
    async fn stream(
        url: &str,
        settings: &JetStreamSettings,
    ) -> Result<
        (
            async_nats::Client,
            jetstream::Context,
            jetstream::stream::Stream,
        ),
        BoxError,
    > {
        settings.check()?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("truss {}", settings.durable))
            .connect(url)
            .await?;
        let context = jetstream::new(client.clone());
        let stream = context
            .get_or_create_stream(jetstream::stream::Config {
                name: settings.stream.clone(),
                subjects: vec![
                    settings.subject.clone(),
                    settings.dead_letter_subject.clone(),
                ],
                ..Default::default()
            })
            .await?;
        warn_if_not_captured(&stream.cached_info().config.subjects, settings);
        Ok((client, context, stream))
    }

    fn consumer(&self) -> Result<&PullConsumer, BoxError> {
        self.consumer
            .as_ref()
            .ok_or_else(|| "this NatsJetStream publishes only (see `publisher`)".into())
    }

    /// Publishes a message to the subject and waits for the stream to store it; returns
    /// its stream sequence (the id its deliveries carry). A header whose name is not a NATS
    /// header name or whose value holds a line break is an error, never a panic.
    pub async fn publish(
        &self,
        payload: impl Into<Bytes>,
        headers: BTreeMap<String, String>,
    ) -> Result<String, BoxError> {
        let headers = header_map(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let ack = self
            .context
            .publish_with_headers(self.settings.subject.clone(), headers, payload.into())
            .await?
            .await?;
        Ok(ack.sequence.to_string())
    }

    /// Messages of the subject this durable has not acknowledged yet: not delivered, being
    /// handled, or waiting out a retry's delay.
    pub async fn unsettled(&self) -> Result<u64, BoxError> {
        let info = self.consumer()?.get_info().await?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    /// The subject dead letters are published to.
    pub fn dead_letter_subject(&self) -> &str {
        &self.settings.dead_letter_subject
    }

    fn in_flight(&self) -> MutexGuard<'_, HashMap<String, jetstream::Message>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The NATS message of an unsettled delivery, no longer kept.
    fn take(&self, delivery: &Delivery) -> Result<jetstream::Message, BoxError> {
        let id = &delivery.id;
        self.in_flight()
            .remove(&flight_key(delivery))
            .ok_or_else(|| {
                BoxError::from(format!(
                    "delivery {id} is not in flight on this connection (settled already, or \
                 fetched by another one); the server delivers it again after ack_wait"
                ))
            })
    }

    /// One pull request: up to `max` messages, the server answering as soon as it has any
    /// and at the latest after `wait` (`no_wait` with `expires`). An error after some
    /// messages arrived ends the batch but keeps them: they are pending on the server now.
    async fn pull(&self, max: usize, wait: Duration) -> Result<Vec<jetstream::Message>, BoxError> {
        let mut batch = self
            .consumer()?
            .fetch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await?;
        let mut got = Vec::new();
        while let Some(next) = batch.next().await {
            match next {
                Ok(message) => got.push(message),
                Err(error) if got.is_empty() => return Err(error),
                Err(error) => {
                    tracing::debug!(%error, kept = got.len(), "pull request ended early");
                    break;
                }
            }
        }
        Ok(got)
    }

    /// Keeps each message until it is settled and returns it as a delivery.
    fn admit(&self, messages: Vec<jetstream::Message>) -> Vec<Delivery> {
        let mut in_flight = self.in_flight();
        messages
            .into_iter()
            .filter_map(|message| {
                let delivery = self.delivery(&message)?;
                in_flight.insert(flight_key(&delivery), message);
                Some(delivery)
            })
            .collect()
    }

    /// A message as a delivery; `None` (logged) for one without JetStream metadata, which
    /// cannot be acknowledged either.
    fn delivery(&self, message: &jetstream::Message) -> Option<Delivery> {
        let info = match message.info() {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(subject = message.subject.as_str(), %error,
                    "skipping a message without JetStream metadata");
                return None;
            }
        };
        let headers = message.headers.as_ref();
        Some(Delivery {
            id: info.stream_sequence.to_string(),
            key: ordering_key(headers, message.subject.as_str(), &self.settings.subject),
            headers: headers.map(delivery_headers).unwrap_or_default(),
            payload: message.payload.clone(),
            attempt: u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX),
        })
    }

    /// Stores the dead letter: the delivery's payload and headers, its key, the reason.
    /// Its `Nats-Msg-Id` names the original, so a second copy (after a crash between this
    /// and the termination) within the stream's duplicate window is dropped by the server.
    async fn store_dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), BoxError> {
        let reason = header_text(reason);
        let mut pairs: Vec<(&str, &str)> = delivery
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .filter(|(name, _)| *name != REASON_HEADER && *name != KEY_HEADER)
            .collect();
        if let Some(key) = delivery.key.as_deref() {
            pairs.push((KEY_HEADER, key));
        }
        pairs.push((REASON_HEADER, &reason));
        let message = PublishMessage::build()
            .payload(delivery.payload.clone())
            .headers(header_map(pairs)?)
            .message_id(format!(
                "truss-dead-{}-{}-{}",
                self.settings.stream, self.settings.durable, delivery.id
            ));
        self.context
            .send_publish(self.settings.dead_letter_subject.clone(), message)
            .await?
            .await?;
        Ok(())
    }
}

/// A delivery's key in the in-flight map: its stream sequence and delivery count, so a
/// redelivery of a message still being handled (its `ack_wait` passed) does not take the
/// first delivery's place.
fn flight_key(delivery: &Delivery) -> String {
    format!("{}#{}", delivery.id, delivery.attempt)
}

/// Warns when an existing stream does not capture a subject this backend publishes to:
/// publishing there would fail (or land in another stream, for the dead letters).
fn warn_if_not_captured(stream_subjects: &[String], settings: &JetStreamSettings) {
    for subject in [&settings.subject, &settings.dead_letter_subject] {
        if !stream_subjects.iter().any(|p| subject_matches(p, subject)) {
            tracing::warn!(stream = %settings.stream, %subject, ?stream_subjects,
                "the existing stream does not capture this subject");
        }
    }
}

/// Refuses an existing consumer that would break at-least-once (acks not explicit, or a
/// push consumer: the client refuses those itself); warns about settings not applied.
fn check_existing(
    existing: &consumer::Config,
    settings: &JetStreamSettings,
) -> Result<(), BoxError> {
    if existing.ack_policy != AckPolicy::Explicit {
        return Err(format!(
            "the existing consumer {} has ack_policy {:?}; explicit is needed",
            settings.durable, existing.ack_policy
        )
        .into());
    }
    if existing.filter_subject != settings.subject || existing.ack_wait != settings.ack_wait {
        tracing::warn!(durable = %settings.durable,
            filter = %existing.filter_subject, ack_wait = ?existing.ack_wait,
            wanted_filter = %settings.subject, wanted_ack_wait = ?settings.ack_wait,
            "the existing consumer keeps its own settings");
    }
    Ok(())
}

/// Whether the subject pattern `pattern` (`*` one token, `>` one or more at the end)
/// matches the literal `subject`.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut subject = subject.split('.');
    loop {
        match (pattern.next(), subject.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

/// A subject one can publish to: non-empty tokens, no wildcard, no whitespace.
fn is_literal_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">" && !t.chars().any(char::is_whitespace))
}

fn is_forbidden_in_name(c: char) -> bool {
    c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\')
}

/// `text` with every character a JetStream name cannot hold turned into `_`.
fn name_from(text: &str) -> String {
    text.chars()
        .map(|c| if is_forbidden_in_name(c) { '_' } else { c })
        .collect()
}

/// `text` fit for a header value: line breaks become spaces, cut to [`MAX_REASON`] bytes.
fn header_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    if out.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// The `key` header, or else what follows the consumed subject in the message's subject
/// (`order.created.<key>`, for a stream and filter set up with a wildcard by an operator).
fn ordering_key(headers: Option<&HeaderMap>, subject: &str, base: &str) -> Option<String> {
    if let Some(key) = headers.and_then(|h| h.get(KEY_HEADER)) {
        return Some(key.as_str().to_owned());
    }
    subject
        .strip_prefix(base)?
        .strip_prefix('.')
        .filter(|rest| !rest.is_empty())
        .map(str::to_owned)
}

/// A message's headers as a delivery shows them: the first value of each, without the
/// broker's `Nats-*` headers and without `key`.
fn delivery_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter_map(|(name, values)| {
            let name = name.to_string();
            let broker = name
                .get(..5)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case("nats-"));
            if broker || name == KEY_HEADER {
                return None;
            }
            Some((name, values.first()?.as_str().to_owned()))
        })
        .collect()
}

/// NATS headers from name/value pairs; a name or value NATS cannot carry is an error (the
/// client's own conversions panic on those).
fn header_map<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<HeaderMap, BoxError> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let parsed_name = name
            .parse::<HeaderName>()
            .ok()
            .filter(|_| !name.is_empty())
            .ok_or_else(|| format!("{name:?} is not a NATS header name"))?;
        let parsed_value = value
            .parse::<HeaderValue>()
            .map_err(|_| format!("the value of header {name:?} holds a line break"))?;
        map.insert(parsed_name, parsed_value);
    }
    Ok(map)
}

impl Backend for NatsJetStream {
    fn fetch(&self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Delivery>, BoxError>> {
        Box::pin(async move {
            if max == 0 {
                return Ok(Vec::new());
            }
            let started = Instant::now();
            let messages = self.pull(max, wait).await?;
            if messages.is_empty() {
                let left = wait.saturating_sub(started.elapsed());
                tokio::time::sleep(left.min(EMPTY_PAUSE)).await;
                return Ok(Vec::new());
            }
            Ok(self.admit(messages))
        })
    }

    fn ack<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { self.take(delivery)?.ack().await })
    }

    /// A negative acknowledgement with `delay`: the server delivers it again once the delay
    /// passed, its delivery count (the attempt) one higher.
    fn retry<'a>(
        &'a self,
        delivery: &'a Delivery,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let message = self.take(delivery)?;
            message.ack_with(AckKind::Nak(Some(delay))).await
        })
    }

    /// Publishes the copy to the dead-letter subject, then terminates the original (no
    /// redelivery). When the copy cannot be stored the original stays pending and is
    /// delivered again after `ack_wait`.
    fn dead_letter<'a>(
        &'a self,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let message = self.take(delivery)?;
            self.store_dead_letter(delivery, reason).await?;
            message.ack_with(AckKind::Term).await
        })
    }

    /// Acknowledgements are publishes the client buffers: flushed, they reached the server.
    fn flush(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move { Ok(self.client.flush().await?) })
    }

    /// The consumer's `num_pending`: messages of the subject not yet delivered to the
    /// durable. Retries waiting for their delay count as pending acknowledgements on the
    /// server, not here.
    fn lag(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        Box::pin(async move {
            let info = self.consumer()?.get_info().await?;
            Ok(Some(info.num_pending))
        })
    }
}

impl Publish for NatsJetStream {
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
    fn subject_patterns_match_like_the_server() {
        assert!(subject_matches("order.created", "order.created"));
        assert!(subject_matches("order.*", "order.created"));
        assert!(subject_matches("order.>", "order.created.dead"));
        assert!(!subject_matches("order.*", "order.created.dead"));
        assert!(!subject_matches("order.created", "order.created.dead"));
        assert!(!subject_matches("order.>", "order"));
    }

    #[test]
    fn settings_default_and_check() {
        let settings = JetStreamSettings::new("order.created", "notify svc");
        assert_eq!(settings.stream, "order_created");
        assert_eq!(settings.durable, "notify_svc");
        assert!(settings.check().is_ok());
        let wild = JetStreamSettings::new("order.*", "notify");
        assert!(wild.check().is_err());
        let mut same = JetStreamSettings::new("order.created", "notify");
        same.dead_letter_subject = same.subject.clone();
        assert!(same.check().is_err());
        let mut dotted = JetStreamSettings::new("order.created", "notify");
        dotted.durable = "a.b".to_owned();
        assert!(dotted.check().is_err());
    }

    #[test]
    fn reasons_fit_in_a_header() {
        assert_eq!(header_text("line one\r\nline two"), "line one  line two");
        let long = "é".repeat(MAX_REASON);
        let cut = header_text(&long);
        assert!(cut.len() <= MAX_REASON && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn headers_convert_without_panics() {
        assert!(header_map([("traceparent", "00-abc-def-01")]).is_ok());
        assert!(header_map([("", "x")]).is_err());
        assert!(header_map([("bad name", "x")]).is_err());
        assert!(header_map([("reason", "two\nlines")]).is_err());
    }

    #[test]
    fn deliveries_hide_broker_headers_and_take_the_key() -> Result<(), BoxError> {
        let map = header_map([
            ("traceparent", "00-abc-def-01"),
            ("Nats-Msg-Id", "m1"),
            ("key", "customer-7"),
        ])?;
        let shown = delivery_headers(&map);
        assert_eq!(shown.len(), 1);
        assert_eq!(
            shown.get("traceparent").map(String::as_str),
            Some("00-abc-def-01")
        );
        let key = ordering_key(Some(&map), "order.created", "order.created");
        assert_eq!(key.as_deref(), Some("customer-7"));
        let from_subject = ordering_key(None, "order.created.eu", "order.created");
        assert_eq!(from_subject.as_deref(), Some("eu"));
        assert_eq!(ordering_key(None, "order.created", "order.created"), None);
        Ok(())
    }
}
