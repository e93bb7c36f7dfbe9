//! The in-process L1 (moka) and the pub/sub subscriber that drops entries other instances
//! deleted.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio_stream::StreamExt;

use crate::redis::config::CacheConfig;

/// First pause before resubscribing after the subscription broke; doubles up to 2 s.
const RESUBSCRIBE_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);

/// Entries by Redis key: `Some(value)`, or `None` for a remembered "not found".
pub(super) type L1<V> = moka::future::Cache<String, Option<V>>;

/// Values live `l1.ttl`; "not found" lives at most `negative_ttl` too.
struct Expiry {
    ttl: Duration,
    negative_ttl: Duration,
}

impl Expiry {
    fn of<V>(&self, value: &Option<V>) -> Duration {
        match value {
            Some(_) => self.ttl,
            None => self.ttl.min(self.negative_ttl),
        }
    }
}

impl<V> moka::Expiry<String, Option<V>> for Expiry {
    fn expire_after_create(
        &self,
        _: &String,
        value: &Option<V>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.of(value))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Option<V>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.of(value))
    }
}

/// An L1 for `config` (whose `l1` is enabled).
pub(super) fn build<V: Clone + Send + Sync + 'static>(config: &CacheConfig) -> L1<V> {
    moka::future::Cache::builder()
        .max_capacity(config.l1.capacity)
        .expire_after(Expiry {
            ttl: config.l1.ttl,
            negative_ttl: config.negative_ttl,
        })
        .build()
}

/// What the subscriber needs.
pub(super) struct Subscriber<V> {
    pub(super) client: ::redis::Client,
    pub(super) channel: String,
    /// `{name}:`: messages for other caches are ignored.
    pub(super) prefix: String,
    pub(super) l1: L1<V>,
    pub(super) connect_timeout: Duration,
}

impl<V: Clone + Send + Sync + 'static> Subscriber<V> {
    /// Listens on the invalidation channel until `stop` resolves (its sender is dropped with
    /// the cache), dropping each announced key of this cache from the L1. Whenever the
    /// subscription (re)starts, the whole L1 is dropped: messages sent while it was down are
    /// lost.
    pub(super) async fn run(self, mut stop: oneshot::Receiver<()>) {
        let mut pause = RESUBSCRIBE_MIN;
        loop {
            let listened = tokio::select! {
                _ = &mut stop => return,
                listened = self.listen() => listened,
            };
            self.l1.invalidate_all();
            if listened {
                pause = RESUBSCRIBE_MIN;
            }
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(RESUBSCRIBE_MAX);
        }
    }

    /// One subscription, until the connection ends; whether it got as far as subscribing.
    async fn listen(&self) -> bool {
        let subscribed = tokio::time::timeout(self.connect_timeout, async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match subscribed {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cache: cannot subscribe to invalidations");
                return false;
            }
            Err(_) => return false,
        };
        // Entries loaded before this point may have missed their invalidation.
        self.l1.invalidate_all();
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let key = String::from_utf8_lossy(message.get_payload_bytes());
            if key.starts_with(&self.prefix) {
                self.l1.invalidate(key.as_ref()).await;
            }
        }
        tracing::debug!(channel = %self.channel, "cache: invalidation subscription ended");
        true
    }
}
