//! The consumer listener: fetch, handle each message through its stack, settle it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::backend::{Backend, Delivery};
use super::handler::{Erased, Failure};
use super::pace::{Lanes, Pace, TurnGuard};
use crate::observe::trace::TraceContext;
use crate::registry::BoxFuture;
use crate::resilience::deadline::Deadline;
use crate::section::duration;
use crate::section::{Section, ValidationError};
use crate::transport::listener::{Drain, Listener};

/// How one subscription is consumed: `[consumers."<subscription>"]` in config, or given in
/// code to [`AppBuilder::consume`](crate::AppBuilder::consume).
///
/// ```toml
/// [consumers."order.created"]
/// backend = "redis"        # "memory" (default), "redis", "sql", "nats" or "kafka"
/// # url = "sqlite://data/order.db"   # sql: the database holding truss_queue (default [database])
/// # database = "order"     # sql on SQLite: the file order.db in [database] data_dir
/// stream = "orders"        # redis: the stream key; default the subscription's name
/// group = "notify"         # redis: the consumer group; default the service's name
/// claim_idle = "30s"       # a delivery stays claimed this long (at least deadline + 5s)
/// max_in_flight = 64
/// max_attempts = 5         # deliveries before the dead letter
/// backoff_min = "100ms"    # first retry delay, doubled up to backoff_max
/// backoff_max = "30s"
/// deadline = "30s"         # per handler call
/// poll = "1s"              # longest wait of one fetch
/// ordered = true           # one message at a time per key (`message-key`), in order
/// rate_limit = 0           # handler starts per second (0: no limit)
/// rate_burst = 1           # starts at once after a pause
/// # [consumers."order.created".kafka]   # kafka: librdkafka properties, as they are
/// # "security.protocol" = "sasl_ssl"
/// ```
///
/// ```
/// use std::time::Duration;
/// let config = truss::queue::ConsumerConfig {
///     max_in_flight: 16,
///     max_attempts: 5,
///     ..Default::default()
/// };
/// assert_eq!(config.deadline, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Where the messages are (used by [`AppBuilder::consumer`](crate::AppBuilder::consumer)).
    /// Default [`QueueBackend::Memory`].
    pub backend: QueueBackend,
    /// SQL: the database holding the `truss_queue` table (another service's outbox, say).
    /// Default: the app's `[database]`. NATS: the server, default `nats://127.0.0.1:4222`.
    /// Kafka: the bootstrap servers, default `127.0.0.1:9092`.
    pub url: Option<String>,
    /// SQL without `url`, on SQLite: the database's name, so the file `<database>.db` in
    /// `[database] data_dir`, such as the outbox of another service sharing the directory.
    /// Default: the service's own database.
    pub database: Option<String>,
    /// Redis: the stream's key. NATS: the JetStream stream (default the subject with `.`
    /// as `_`). Kafka: the topic. Default: the subscription's name.
    pub stream: Option<String>,
    /// Redis and Kafka: the consumer group. NATS: the durable consumer. Default: the
    /// service's name.
    pub group: Option<String>,
    /// How long a delivered message stays claimed before another consumer may take it
    /// over (Redis: pending on a dead consumer; SQL: `claimed_until`; NATS: the consumer's
    /// `ack_wait`): the longer of this and `deadline` + 5 s, so a handler that is still
    /// within its deadline is never run a second time beside it. Default `30s`.
    #[serde(with = "duration")]
    pub claim_idle: Duration,
    /// Messages handled at once. Default 64.
    pub max_in_flight: usize,
    /// Deliveries of one message before it is dead-lettered (1: no retry). Default 5.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time up to `backoff_max`. Default `100ms`.
    #[serde(with = "duration")]
    pub backoff_min: Duration,
    /// Longest delay between retries. Default `30s`.
    #[serde(with = "duration")]
    pub backoff_max: Duration,
    /// How long one handler call may run. Default `30s`.
    #[serde(with = "duration")]
    pub deadline: Duration,
    /// Longest wait of one fetch when nothing is ready. Default `1s`.
    #[serde(with = "duration")]
    pub poll: Duration,
    /// Messages with a key (the broker's, or the `message-key` header a
    /// [`Producer::send_keyed`](super::Producer::send_keyed) sets) are handled one at a time
    /// per key, in the order they were delivered; other keys and keyless messages run
    /// concurrently. Within one instance: instances sharing a group see one key at the same
    /// time unless the broker routes a key to one of them (Kafka partitions). A retried
    /// message goes back to the broker, so it comes after the later messages of its key.
    /// Messages waiting for their key's turn are claimed already: keep `claim_idle` (NATS:
    /// `ack_wait`) above the time a key's backlog takes. Default `true`.
    pub ordered: bool,
    /// Handler starts per second, evenly spaced (a downstream that takes only so much).
    /// `0`: no limit (default).
    pub rate_limit: f64,
    /// Starts allowed at once after a pause, with `rate_limit`. Default 1.
    pub rate_burst: u32,
    /// Kafka: librdkafka properties passed as they are (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `session.timeout.ms`, ...).
    /// Refused with any other backend.
    pub kafka: BTreeMap<String, String>,
}

/// Where a subscription's messages are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// In this process ([`MemoryBackend::shared`](super::MemoryBackend::shared)): no server.
    #[default]
    Memory,
    /// A Redis stream (feature `redis`, `[redis] url`).
    Redis,
    /// The `truss_queue` table of a SQL database (feature `sql`): the transactional outbox
    /// of the service that writes it.
    Sql,
    /// A NATS JetStream stream read by a durable pull consumer (feature `nats`, `url` the
    /// server's, default `nats://127.0.0.1:4222`).
    Nats,
    /// A Kafka topic read by a consumer group (feature `kafka`, `url` the bootstrap
    /// servers, default `127.0.0.1:9092`).
    Kafka,
}

impl QueueBackend {
    /// Why this backend cannot be used, when truss was built without its feature.
    pub(crate) fn not_built(self) -> Option<String> {
        let feature = match self {
            QueueBackend::Memory => None,
            QueueBackend::Redis => cfg!(not(feature = "redis")).then_some("redis"),
            QueueBackend::Sql => cfg!(not(feature = "sql")).then_some("sql"),
            QueueBackend::Nats => cfg!(not(feature = "nats")).then_some("nats"),
            QueueBackend::Kafka => cfg!(not(feature = "kafka")).then_some("kafka"),
        }?;
        Some(format!(
            "is \"{feature}\", but truss was built without its `{feature}` feature"
        ))
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            backend: QueueBackend::Memory,
            url: None,
            database: None,
            stream: None,
            group: None,
            claim_idle: Duration::from_secs(30),
            max_in_flight: 64,
            max_attempts: 5,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            deadline: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            ordered: true,
            rate_limit: 0.0,
            rate_burst: 1,
            kafka: BTreeMap::new(),
        }
    }
}

impl Section for ConsumerConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.max_in_flight == 0 {
            return Err(ValidationError::new("max_in_flight", "must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(ValidationError::new("max_attempts", "must be at least 1"));
        }
        if self.backoff_min > self.backoff_max {
            return Err(ValidationError::new(
                "backoff_min",
                "must not exceed backoff_max",
            ));
        }
        let rate = self.rate_limit;
        if !rate.is_finite() || rate < 0.0 || (rate > 0.0 && rate < 0.001) {
            return Err(ValidationError::new(
                "rate_limit",
                "must be messages per second from 0.001 up, or 0 for none",
            ));
        }
        if self.rate_burst == 0 {
            return Err(ValidationError::new("rate_burst", "must be at least 1"));
        }
        if self.deadline.is_zero() || self.poll.is_zero() {
            return Err(ValidationError::new(
                "deadline",
                "deadline and poll must be above 0",
            ));
        }
        if let Some(why) = self.backend.not_built() {
            return Err(ValidationError::new("backend", why));
        }
        kafka_only(self.backend, &self.kafka)
    }
}

/// `kafka` properties are refused on other backends: they would be silently ignored.
pub(crate) fn kafka_only(
    backend: QueueBackend,
    kafka: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    match kafka.keys().next() {
        Some(first) if backend != QueueBackend::Kafka => Err(ValidationError::new(
            "kafka",
            format!("librdkafka properties (\"{first}\") apply only to backend = \"kafka\""),
        )),
        _ => match kafka
            .keys()
            .find(|k| KAFKA_OWNED_KEYS.contains(&k.as_str()))
        {
            Some(owned) => Err(ValidationError::new(
                "kafka",
                format!(
                    "\"{owned}\" is set by truss (use `url` and `group` for the servers and the group)"
                ),
            )),
            None => Ok(()),
        },
    }
}

/// librdkafka properties truss sets itself: at-least-once needs offsets stored only for
/// settled messages, and the servers and group come from `url` and `group`.
const KAFKA_OWNED_KEYS: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
];

/// `[consumers]`: one [`ConsumerConfig`] per subscription name.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ConsumersConfig(pub BTreeMap<String, ConsumerConfig>);

impl Section for ConsumersConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        for (name, consumer) in &self.0 {
            consumer
                .validate()
                .map_err(|e| e.within(&format!("\"{name}\"")))?;
        }
        Ok(())
    }
}

impl ConsumerConfig {
    /// How long a delivery stays claimed: `claim_idle`, but past a handler's `deadline` with
    /// 5 s to settle, so a message is not taken over while its handler may still run.
    #[cfg_attr(
        not(any(feature = "redis", feature = "sql", feature = "nats")),
        allow(dead_code)
    )]
    pub(crate) fn claim(&self) -> Duration {
        self.claim_idle.max(self.deadline + Duration::from_secs(5))
    }

    /// The delay before delivery `attempt + 1`.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff_min
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// One subscription's consumer: a [`Listener`] of the app.
pub(crate) struct Consumer {
    pub(crate) subscription: Arc<str>,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) handler: Erased,
    pub(crate) config: ConsumerConfig,
}

impl Listener for Consumer {
    fn name(&self) -> &'static str {
        "consumer"
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }

    fn serve(self: Box<Self>, drain: Drain) -> BoxFuture<'static, ()> {
        Box::pin(self.run(drain))
    }
}

impl Consumer {
    /// Fetches and handles until told to stop, then lets messages in flight finish within
    /// the grace period; what is left unsettled is delivered again by the broker.
    async fn run(self: Box<Self>, drain: Drain) {
        describe();
        let Drain {
            mut stop,
            closed,
            grace,
            force,
        } = drain;
        let this = Arc::new(*self);
        let slots = Arc::new(Semaphore::new(this.config.max_in_flight.max(1)));
        let mut tasks = JoinSet::new();
        let lag = tokio::spawn(report_lag_until(this.clone(), stop.clone()));
        let mut lanes = Lanes::default();
        let pace = (this.config.rate_limit > 0.0)
            .then(|| Arc::new(Pace::new(this.config.rate_limit, this.config.rate_burst)));
        while !*stop.borrow() {
            // Finished handlers are reaped here, not raced against the fetch below: a
            // cancelled fetch could drop deliveries the broker already handed over (they
            // would wait for `claim_idle`). Only stopping cancels a fetch.
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = stopped(&mut stop) => break,
                fetched = this.fetch(&slots, pace.as_deref()) => {
                    for (delivery, slot) in fetched {
                        let turn = this.turn(&mut lanes, &delivery);
                        let this = this.clone();
                        tasks.spawn(async move {
                            let _turn = turn.wait().await;
                            this.handle(delivery).await;
                            drop(slot);
                        });
                    }
                }
            }
        }
        lag.abort();
        let _ = closed.send(());
        let drained = async { while tasks.join_next().await.is_some() {} };
        tokio::select! {
            _ = drained => {}
            _ = tokio::time::sleep(grace) => {
                tracing::warn!(subscription = %this.subscription, open = tasks.len(),
                    "grace period over: abandoning messages in flight (they will be delivered again)");
            }
            _ = force.forced() => {}
        }
        tasks.shutdown().await;
        // Acks sent, then flushed: what was handled is not delivered again.
        let flushed = tokio::time::timeout(FLUSH_WITHIN, this.backend.flush()).await;
        if let Err(error) = flushed.unwrap_or_else(|_| Err("timed out".into())) {
            tracing::warn!(subscription = %this.subscription, %error,
                "could not flush the acknowledgements (those messages will be delivered again)");
        }
    }

    /// `truss_consumer_lag`, when the backend knows it.
    async fn report_lag(&self) {
        match self.backend.lag().await {
            Ok(Some(lag)) => metrics::gauge!("truss_consumer_lag",
                "subscription" => self.subscription.to_string())
            .set(lag as f64),
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "consumer lag unavailable"),
        }
    }

    /// The message's place in its key's lane (none unordered or keyless).
    fn turn(&self, lanes: &mut Lanes, delivery: &Delivery) -> Turn {
        match super::handler::key_of(delivery) {
            Some(key) if self.config.ordered => Turn(Some(lanes.enter(key))),
            _ => Turn(None),
        }
    }

    /// Waits for a free slot, then fetches as many deliveries as there are free slots.
    ///
    /// With a rate limit, one message per fetch once its start is due: a message is not
    /// claimed from the broker (its redelivery timer running) while it waits for its turn.
    async fn fetch(
        &self,
        slots: &Arc<Semaphore>,
        pace: Option<&Pace>,
    ) -> Vec<(Delivery, tokio::sync::OwnedSemaphorePermit)> {
        let Ok(first) = slots.clone().acquire_owned().await else {
            return Vec::new();
        };
        let max = match pace {
            Some(pace) => {
                pace.wait().await;
                1
            }
            None => slots.available_permits() + 1,
        };
        let fetched = match self.backend.fetch(max, self.config.poll).await {
            Ok(fetched) => fetched,
            Err(error) => {
                tracing::warn!(subscription = %self.subscription, %error, "fetch failed; retrying");
                tokio::time::sleep(self.config.poll).await;
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(fetched.len());
        let mut first = Some(first);
        for delivery in fetched {
            let slot = match first.take() {
                Some(slot) => slot,
                None => match slots.clone().try_acquire_owned() {
                    Ok(slot) => slot,
                    // Cannot happen (max was the free slots); wait rather than overrun.
                    Err(_) => match slots.clone().acquire_owned().await {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                },
            };
            out.push((delivery, slot));
        }
        out
    }

    /// One message through its stack: trace, span, deadline, panic recovery; then settled.
    async fn handle(&self, delivery: Delivery) {
        let trace = delivery
            .headers
            .get("traceparent")
            .and_then(|v| TraceContext::from_traceparent(v.as_bytes(), None))
            .unwrap_or_else(TraceContext::new_root);
        let span = tracing::info_span!("message", subscription = %self.subscription,
            id = %delivery.id, attempt = delivery.attempt, trace_id = %trace.trace_id_hex());
        let in_flight = metrics::gauge!("truss_consumer_in_flight",
            "subscription" => self.subscription.to_string());
        in_flight.increment(1.0);
        let started = Instant::now();
        let deadline = Deadline::after(self.config.deadline);
        let call = (self.handler)(delivery.clone());
        let call = tokio::time::timeout(self.config.deadline, deadline.scope(call));
        // Its own task: a panic ends that task, not the consumer. Aborted if this one is
        // (a message abandoned at the end of the grace period).
        let mut task = AbortOnDrop(tokio::spawn(trace.scope(call).instrument(span.clone())));
        let outcome = (&mut task.0).await;
        metrics::histogram!("truss_consumer_handler_duration_seconds",
            "subscription" => self.subscription.to_string())
        .record(started.elapsed().as_secs_f64());
        in_flight.decrement(1.0);
        let verdict = match outcome {
            Ok(Ok(Ok(()))) => Verdict::Done,
            Ok(Ok(Err(Failure::Malformed(why)))) => Verdict::Dead(why),
            Ok(Ok(Err(Failure::Handler(e)))) if retryable(e.code()) => {
                Verdict::Again(e.to_string())
            }
            Ok(Ok(Err(Failure::Handler(e)))) => Verdict::Dead(e.to_string()),
            Ok(Err(_elapsed)) => Verdict::Again("the handler's deadline passed".to_owned()),
            Err(e) if e.is_panic() => Verdict::Again("the handler panicked".to_owned()),
            Err(e) => Verdict::Again(format!("the handler was cancelled: {e}")),
        };
        self.settle(&delivery, verdict).instrument(span).await;
    }

    /// Acknowledges, retries or dead-letters one delivery, and counts it.
    async fn settle(&self, delivery: &Delivery, verdict: Verdict) {
        let (settled, result) = match verdict {
            Verdict::Done => (self.backend.ack(delivery).await, "acked"),
            Verdict::Again(why) if delivery.attempt < self.config.max_attempts => {
                let delay = self.config.backoff(delivery.attempt);
                tracing::warn!(reason = %why, ?delay, "message failed; retrying");
                (self.backend.retry(delivery, delay).await, "retried")
            }
            Verdict::Again(why) | Verdict::Dead(why) => {
                tracing::error!(reason = %why, "message dead-lettered");
                (
                    self.backend.dead_letter(delivery, &why).await,
                    "dead_lettered",
                )
            }
        };
        match settled {
            Ok(()) => metrics::counter!("truss_consumer_messages_total",
                "subscription" => self.subscription.to_string(), "result" => result)
            .increment(1),
            // Left unsettled: the broker delivers it again.
            Err(error) => tracing::error!(%error, result, "could not settle the message"),
        }
    }
}

/// A message's place in its key's lane: the turn before it to wait for, and its own.
struct Turn(Option<(Option<Arc<super::pace::Turn>>, TurnGuard)>);

impl Turn {
    /// Waits for the key's previous message; the guard ends this message's turn.
    async fn wait(self) -> Option<TurnGuard> {
        let (before, mine) = self.0?;
        if let Some(before) = before {
            before.finished().await;
        }
        Some(mine)
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What becomes of a handled message.
enum Verdict {
    Done,
    Again(String),
    Dead(String),
}

/// Server-side failures and "try later" codes are worth a retry; other client errors are
/// not.
fn retryable(code: u16) -> bool {
    code >= 500 || code == 408 || code == 429
}

/// The longest wait for [`Backend::flush`] at shutdown: a broker that is down must not
/// hold the exit.
const FLUSH_WITHIN: Duration = Duration::from_secs(3);

/// How often `truss_consumer_lag` is refreshed.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Refreshes `truss_consumer_lag` until stopped, apart from the fetch loop: the gauge keeps
/// rising while every slot is busy with a stuck handler and the loop waits for one.
async fn report_lag_until(consumer: Arc<Consumer>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(LAG_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = every.tick() => consumer.report_lag().await,
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn describe() {
    metrics::describe_counter!(
        "truss_consumer_messages_total",
        "Messages settled, by subscription and result: acked, retried, dead_lettered."
    );
    metrics::describe_histogram!(
        "truss_consumer_handler_duration_seconds",
        metrics::Unit::Seconds,
        "How long message handlers ran."
    );
    metrics::describe_gauge!(
        "truss_consumer_in_flight",
        "Messages being handled, by subscription."
    );
    metrics::describe_gauge!(
        "truss_consumer_lag",
        "Messages published but not yet delivered to this subscription's consumers."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_outlasts_the_handlers_deadline() {
        let config = ConsumerConfig::default();
        assert_eq!(
            config.claim(),
            Duration::from_secs(35),
            "30 s deadline + 5 s"
        );
        let long = ConsumerConfig {
            claim_idle: Duration::from_secs(60),
            ..ConsumerConfig::default()
        };
        assert_eq!(long.claim(), Duration::from_secs(60));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = ConsumerConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            ..ConsumerConfig::default()
        };
        let delays: Vec<u128> = (1..=4).map(|a| config.backoff(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        assert!(retryable(503) && retryable(429) && !retryable(404) && !retryable(400));
    }

    #[test]
    fn kafka_properties_are_refused_on_other_backends() {
        let mut config = ConsumerConfig::default();
        config
            .kafka
            .insert("session.timeout.ms".to_owned(), "6000".to_owned());
        let error = ConsumersConfig([("orders".to_owned(), config.clone())].into())
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("\"orders\".kafka"), "{error}");
        assert!(error.contains("session.timeout.ms"), "{error}");
        config.backend = QueueBackend::Kafka;
        assert_eq!(
            config.validate().is_ok(),
            cfg!(feature = "kafka"),
            "accepted where Kafka is built in"
        );
        config
            .kafka
            .insert("enable.auto.commit".to_owned(), "true".to_owned());
        let owned = kafka_only(QueueBackend::Kafka, &config.kafka)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(owned.contains("enable.auto.commit"), "{owned}");
    }
}
