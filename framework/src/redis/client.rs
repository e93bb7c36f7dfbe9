use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, FromRedisValue, Pipeline, RedisResult, Script};
use tokio::time::Instant;
use tracing::Instrument;

use super::RedisError;
use super::config::RedisConfig;
use crate::labels::BoundedMap;
use crate::observe::metrics::ClientOperation;
use crate::resilience::breaker::{Breaker, BreakerState};
use crate::resilience::deadline::Deadline;
use crate::section::Section;

/// First pause between background reconnection attempts; it doubles up to
/// [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(50);
/// Longest pause between background reconnection attempts while Redis is down: a restarted
/// server is in use again at most this long after it answers (plus the breaker's say).
const RECONNECT_MAX: Duration = Duration::from_millis(400);

/// A governed Redis client: every command through [`query`](Self::query),
/// [`query_within`](Self::query_within), [`eval`](Self::eval) or
/// [`pipeline`](Self::pipeline) runs under the request's deadline and `command_timeout`,
/// behind the client's breaker, counted in `truss_client_*` (`transport="redis"`) and traced
/// as a `redis` span. Cheap to clone; clones share one multiplexed connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), truss::redis::RedisError> {
/// use truss::redis::{Redis, RedisConfig, cmd};
///
/// let config = RedisConfig { url: Some("redis://127.0.0.1:6379/0".into()), ..Default::default() };
/// let redis = Redis::connect(&config).await?;   // never fails on a down server
/// redis.query::<()>("set_greeting", cmd("SET").arg("greeting").arg("hello")).await?;
/// let greeting: Option<String> = redis.query("get_greeting", cmd("GET").arg("greeting")).await?;
/// assert_eq!(greeting.as_deref(), Some("hello"));
/// # Ok(()) }
/// ```
///
/// The connection is redis-rs's `ConnectionManager`: one multiplexed connection, replaced
/// when it breaks. While the server is down, calls fail fast with
/// [`RedisError::Unavailable`] (the breaker opens after a few), and a background task keeps
/// reconnecting (every 50 ms, backing off to 400 ms) until it answers again. Commands are
/// never retried: the first one sent on a connection the server has closed fails with
/// `Unavailable` (it may have reached the server) and starts the reconnection; with
/// `required = true`, the readiness ping is usually that first command. A server that
/// vanishes without closing the connection (its host died, a firewall dropped the flow) is
/// noticed by TCP keepalive and `TCP_USER_TIMEOUT` within about 10 s; until then calls time
/// out (504, counted by the breaker), then the connection is replaced like a closed one.
#[derive(Clone)]
pub struct Redis {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("breaker", &self.breaker_state())
            .finish_non_exhaustive()
    }
}

pub(super) struct Inner {
    manager: ConnectionManager,
    pub(super) client: ::redis::Client,
    breaker: Option<Breaker>,
    pub(super) config: RedisConfig,
    operations: BoundedMap<Arc<ClientOperation>>,
    reconnecting: AtomicBool,
}

impl Redis {
    /// A client for `config.url`. Connecting happens in the background: a server that is
    /// down (or not yet up) is not an error here; calls fail with
    /// [`RedisError::Unavailable`] until it answers. An invalid config, a missing `url` or a
    /// malformed url is an error ([`RedisError::Command`], the url's password never in it).
    /// Call it inside the tokio runtime.
    pub async fn connect(config: &RedisConfig) -> Result<Redis, RedisError> {
        config
            .validate()
            .map_err(|e| RedisError::Command(format!("invalid [redis] config: {e}")))?;
        let url = config
            .url
            .as_deref()
            .ok_or_else(|| RedisError::Command("no [redis] url is configured".to_owned()))?;
        // Metrics recorded before the app installs the recorder would be lost.
        let _ = crate::observe::metrics::install();
        let invalid = |e: ::redis::RedisError| {
            RedisError::Command(format!(
                "invalid redis url: {}",
                e.to_string().replace(url, "<url>")
            ))
        };
        let info = ::redis::IntoConnectionInfo::into_connection_info(url).map_err(invalid)?;
        let client =
            ::redis::Client::open(info.set_tcp_settings(tcp_settings())).map_err(invalid)?;
        // One attempt per (re)connection, bounded by connect_timeout; the reconnect task
        // below paces the next ones, so calls never queue behind a backoff.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(invalid)?;
        let breaker = (config.breaker.enabled && !config.breaker.skip.contains("redis"))
            .then(|| Breaker::new("redis", &config.breaker));
        let redis = Redis {
            inner: Arc::new(Inner {
                manager,
                client,
                breaker,
                config: config.clone(),
                operations: BoundedMap::default(),
                reconnecting: AtomicBool::new(false),
            }),
        };
        redis.reconnect_in_background();
        Ok(redis)
    }

    /// Runs one command; `operation` names it in metrics and the span (a fixed name such as
    /// `get_user`, never a key).
    ///
    /// ```no_run
    /// # async fn demo(redis: truss::redis::Redis) -> Result<(), truss::Error> {
    /// use truss::redis::cmd;
    ///
    /// let visits: i64 = redis.query("count_visit", cmd("INCR").arg("visits")).await?;
    /// # let _ = visits; Ok(()) }
    /// ```
    pub async fn query<T: FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &Cmd,
    ) -> Result<T, RedisError> {
        self.govern(operation, None, async |mut conn| {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    /// The same as [`query`](Self::query) within `budget` as well: for calls that must not
    /// take the request's whole deadline (a rate limiter asking Redis in 5 ms, say).
    pub async fn query_within<T: FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &Cmd,
        budget: Duration,
    ) -> Result<T, RedisError> {
        self.govern(operation, Some(budget), async |mut conn| {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    /// Runs a Lua script with `EVALSHA`, loading it on `NOSCRIPT` (a restarted or flushed
    /// server) and running it again, all within one governed call (and `budget`, if given).
    ///
    /// ```no_run
    /// # async fn demo(redis: truss::redis::Redis) -> Result<(), truss::redis::RedisError> {
    /// use truss::redis::Script;
    ///
    /// let incr_by = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    /// let n: i64 = redis
    ///     .eval("incr_by", &incr_by, &["hits".to_owned()], &["5".to_owned()], None)
    ///     .await?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub async fn eval<T: FromRedisValue>(
        &self,
        operation: &'static str,
        script: &Script,
        keys: &[String],
        args: &[String],
        budget: Option<Duration>,
    ) -> Result<T, RedisError> {
        self.govern(operation, budget, async |mut conn| {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Runs a pipeline (or a `MULTI`/`EXEC` transaction, with `pipe().atomic()`) as one
    /// governed call.
    ///
    /// ```no_run
    /// # async fn demo(redis: truss::redis::Redis) -> Result<(), truss::redis::RedisError> {
    /// let (a, b): (i64, i64) = redis
    ///     .pipeline("incr_both", truss::redis::pipe().incr("a", 1).incr("b", 1))
    ///     .await?;
    /// # let _ = (a, b); Ok(()) }
    /// ```
    pub async fn pipeline<T: FromRedisValue>(
        &self,
        operation: &'static str,
        pipe: &Pipeline,
    ) -> Result<T, RedisError> {
        self.pipeline_within(operation, pipe, None).await
    }

    /// [`pipeline`](Self::pipeline) within `budget` as well, when given (the cache's own
    /// calls).
    pub(super) async fn pipeline_within<T: FromRedisValue>(
        &self,
        operation: &'static str,
        pipe: &Pipeline,
        budget: Option<Duration>,
    ) -> Result<T, RedisError> {
        self.govern(operation, budget, async |mut conn| {
            pipe.query_async(&mut conn).await
        })
        .await
    }

    /// A governed `PING` (operation `ping`).
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.query("ping", &::redis::cmd("PING")).await
    }

    /// The raw connection, ungoverned: no deadline, breaker, metrics or span (commands are
    /// still bounded by `command_timeout`). For what the governed calls do not cover, such as
    /// blocking commands with their own timeouts.
    pub fn manager(&self) -> ConnectionManager {
        self.inner.manager.clone()
    }

    /// Where the client's breaker stands (`None` when `[redis.breaker] enabled = false`).
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.inner.breaker.as_ref().map(Breaker::state)
    }

    /// The config the client was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Metrics, span and outcome around one call.
    async fn govern<T>(
        &self,
        operation: &'static str,
        budget: Option<Duration>,
        call: impl AsyncFnOnce(ConnectionManager) -> RedisResult<T>,
    ) -> Result<T, RedisError> {
        let meter = self.meter(operation);
        let start = Instant::now();
        let span = tracing::info_span!("redis", db.system = "redis", db.operation = operation);
        let out = self.admit(budget, call).instrument(span).await;
        meter.time(start.elapsed());
        meter.count(out.as_ref().map_or_else(RedisError::kind, |_| "ok"));
        if let Err(e) = &out
            && !e.redis_answered()
        {
            tracing::debug!(operation, error = %e, "redis call failed");
        }
        out
    }

    /// The deadline and the breaker: a call whose time is already up, or that the breaker
    /// rejects, fails at once (neither is recorded by the breaker).
    async fn admit<T>(
        &self,
        budget: Option<Duration>,
        call: impl AsyncFnOnce(ConnectionManager) -> RedisResult<T>,
    ) -> Result<T, RedisError> {
        let (end, redis_bound) = self.end_by(budget);
        if end <= Instant::now() {
            return Err(RedisError::DeadlineExceeded);
        }
        let breaker = self.inner.breaker.as_ref();
        if !breaker.is_none_or(Breaker::allow) {
            return Err(RedisError::Unavailable("circuit breaker open".to_owned()));
        }
        let out = match tokio::time::timeout_at(end, call(self.inner.manager.clone())).await {
            Ok(out) => out.map_err(RedisError::from),
            Err(_) => Err(RedisError::DeadlineExceeded),
        };
        if let Some(breaker) = breaker {
            match &out {
                // Cut off by the request's deadline first: says nothing about Redis (counted,
                // callers short of time would open the breaker on a healthy server and send
                // every read to the loader).
                Err(RedisError::DeadlineExceeded) if !redis_bound => {}
                out => breaker.record(
                    out.as_ref()
                        .map_or_else(RedisError::redis_answered, |_| true),
                ),
            }
        }
        if matches!(out, Err(RedisError::Unavailable(_))) {
            self.reconnect_in_background();
        }
        out
    }

    /// The earliest of the request deadline, `command_timeout` and `budget`, and whether it
    /// comes before the request deadline (a limit on Redis's latency: `command_timeout`, or
    /// the call's own budget, such as the cache's 100 ms), rather than being the caller's
    /// time running out.
    fn end_by(&self, budget: Option<Duration>) -> (Instant, bool) {
        let now = Instant::now();
        let mut end = now + self.inner.config.command_timeout;
        if let Some(budget) = budget {
            end = end.min(now + budget);
        }
        match Deadline::current() {
            Some(deadline) if deadline.instant() <= end => (deadline.instant(), false),
            _ => (end, true),
        }
    }

    /// Handles for the client metrics of `operation`.
    fn meter(&self, operation: &'static str) -> Arc<ClientOperation> {
        let make = |name: &str| Arc::new(ClientOperation::new("redis", "redis", name));
        self.inner.operations.with(operation, make, Arc::clone)
    }

    /// Starts (unless one runs) a task that pings Redis through the connection manager until
    /// it answers: each failed ping makes the manager try a new connection, so a restarted
    /// server is found without waiting for the breaker's next trial call. The task ends once
    /// Redis answers or every clone of this client is dropped.
    pub(super) fn reconnect_in_background(&self) {
        if self.inner.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.reconnecting.store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut pause = RECONNECT_MIN;
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let mut conn = inner.manager.clone();
                // Longer than the manager's own timeouts, so they decide.
                let limit = inner.config.connect_timeout + inner.config.command_timeout;
                drop(inner);
                let ping = ::redis::cmd("PING");
                let ping = ping.query_async::<()>(&mut conn);
                let answered = matches!(tokio::time::timeout(limit, ping).await, Ok(Ok(())));
                drop(conn);
                if answered {
                    if let Some(inner) = weak.upgrade() {
                        inner.reconnecting.store(false, Ordering::Release);
                    }
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECONNECT_MAX);
            }
        });
    }
}

/// How long a peer may leave sent data or keepalive probes unanswered before the kernel
/// drops the connection. A server that vanishes without a reset (its host died, a firewall
/// forgot the flow) is noticed within about this long, and the client reconnects; without
/// it, the dead socket would be kept until the kernel's own retransmissions give up
/// (about 15 minutes by default).
const DEAD_PEER: Duration = Duration::from_secs(10);

/// TCP settings of every connection: no Nagle delay (commands are whole writes), keepalive
/// probes on idle connections, and `TCP_USER_TIMEOUT` at [`DEAD_PEER`] (Linux).
fn tcp_settings() -> ::redis::io::tcp::TcpSettings {
    use ::redis::io::tcp::socket2::TcpKeepalive;
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(1));
    let settings = ::redis::io::tcp::TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(DEAD_PEER);
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handlers run on a multi-threaded runtime: every governed call must be `Send`.
    #[allow(dead_code)]
    fn calls_are_send(redis: &Redis, cmd: &Cmd, script: &Script, pipe: &Pipeline) {
        fn send<T: Send>(_: T) {}
        send(redis.query::<String>("get", cmd));
        send(redis.query_within::<String>("get", cmd, Duration::from_millis(5)));
        send(redis.eval::<i64>("eval", script, &[], &[], None));
        send(redis.pipeline::<()>("pipe", pipe));
    }

    #[tokio::test]
    async fn config_errors_are_errors_but_a_down_server_is_not() {
        let none = Redis::connect(&RedisConfig::default()).await.unwrap_err();
        assert!(none.to_string().contains("no [redis] url"), "{none}");
        let config = |url: &str| RedisConfig {
            url: Some(url.to_owned()),
            ..RedisConfig::default()
        };
        let bad = Redis::connect(&config("redis://:secret@[::1"))
            .await
            .unwrap_err();
        assert_eq!(bad.kind(), "command");
        assert!(!bad.to_string().contains("secret"), "{bad}");
        // Nothing listens on port 1: connecting is not an error, calls are.
        let redis = Redis::connect(&config("redis://127.0.0.1:1/0"))
            .await
            .unwrap();
        let err = redis.ping().await.unwrap_err();
        assert_eq!(err.kind(), "unavailable", "{err}");
    }
}
