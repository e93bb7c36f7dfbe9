//! [`MemoryBackend`]: a queue inside the process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::backend::{Backend, Delivery};
use crate::BoxError;
use crate::registry::BoxFuture;

/// A queue kept in memory, for tests and single-process setups: published messages are
/// delivered to the consumers of this value; unacknowledged ones stay pending until
/// acknowledged, retried, dead-lettered or [redelivered](Self::redeliver_unacked) (what a
/// broker does for a consumer that died). Time is `tokio::time`, so retry delays follow a
/// paused clock in tests.
///
/// ```
/// # tokio_test_block_on(async {
/// use truss::queue::{Backend, MemoryBackend};
///
/// let queue = MemoryBackend::new();
/// queue.publish(r#"{"order_id":7}"#, truss::queue::trace_headers());
/// let got = queue.fetch(10, std::time::Duration::ZERO).await.unwrap();
/// assert_eq!(got.len(), 1);
/// queue.ack(&got[0]).await.unwrap();
/// assert_eq!(queue.pending(), 0);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    ready: VecDeque<Delivery>,
    delayed: Vec<(Instant, Delivery)>,
    unacked: HashMap<String, Delivery>,
    dead: Vec<Delivery>,
    acked: u64,
}

impl MemoryBackend {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide queue called `name`, created empty on first use: what a
    /// `[consumers."<name>"]` entry with `backend = "memory"` consumes, and where a
    /// producer in the same process publishes.
    ///
    /// ```
    /// use truss::queue::MemoryBackend;
    /// let a = MemoryBackend::shared("docs.example");
    /// let b = MemoryBackend::shared("docs.example");
    /// assert!(std::sync::Arc::ptr_eq(&a, &b));
    /// ```
    pub fn shared(name: &str) -> Arc<Self> {
        static QUEUES: OnceLock<Mutex<HashMap<String, Arc<MemoryBackend>>>> = OnceLock::new();
        let queues = QUEUES.get_or_init(Default::default);
        let mut queues = queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.entry(name.to_owned()).or_default().clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a message; returns its id.
    pub fn publish(&self, payload: impl Into<Bytes>, headers: BTreeMap<String, String>) -> String {
        let mut state = self.state();
        state.next_id += 1;
        let id = state.next_id.to_string();
        state.ready.push_back(Delivery {
            id: id.clone(),
            key: None,
            headers,
            payload: payload.into(),
            attempt: 1,
        });
        drop(state);
        self.arrived.notify_waiters();
        id
    }

    /// Messages not yet settled: ready, waiting for a retry, or being handled.
    pub fn pending(&self) -> usize {
        let state = self.state();
        state.ready.len() + state.delayed.len() + state.unacked.len()
    }

    /// How many deliveries were acknowledged.
    pub fn acked(&self) -> u64 {
        self.state().acked
    }

    /// The dead letters so far, each with its `dead-letter-reason` header.
    pub fn dead_letters(&self) -> Vec<Delivery> {
        self.state().dead.clone()
    }

    /// Makes every delivered but unacknowledged message ready again, as a broker does for
    /// the messages of a consumer that went away; returns how many.
    pub fn redeliver_unacked(&self) -> usize {
        let mut state = self.state();
        let mut back: Vec<Delivery> = state.unacked.drain().map(|(_, d)| d).collect();
        back.sort_by_key(|d| d.id.parse::<u64>().unwrap_or_default());
        let n = back.len();
        for delivery in back.into_iter().rev() {
            state.ready.push_front(delivery);
        }
        drop(state);
        self.arrived.notify_waiters();
        n
    }

    /// Up to `max` ready deliveries (due retries first made ready), now marked unacked.
    fn take(&self, max: usize) -> Vec<Delivery> {
        let mut state = self.state();
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut state.delayed)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        state.delayed = later;
        state.ready.extend(due.into_iter().map(|(_, d)| d));
        let n = max.min(state.ready.len());
        let taken: Vec<Delivery> = state.ready.drain(..n).collect();
        for delivery in &taken {
            state.unacked.insert(delivery.id.clone(), delivery.clone());
        }
        taken
    }

    /// When the next delayed retry is due, if any.
    fn next_due(&self) -> Option<Instant> {
        self.state().delayed.iter().map(|(at, _)| *at).min()
    }

    fn settle(&self, delivery: &Delivery) -> Result<(), BoxError> {
        match self.state().unacked.remove(&delivery.id) {
            Some(_) => Ok(()),
            None => Err(format!("delivery {} is not pending", delivery.id).into()),
        }
    }
}

impl Backend for MemoryBackend {
    fn fetch(&self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Delivery>, BoxError>> {
        Box::pin(async move {
            let until = Instant::now() + wait;
            loop {
                let arrived = self.arrived.notified();
                let taken = self.take(max);
                if !taken.is_empty() || Instant::now() >= until {
                    return Ok(taken);
                }
                let wake = self.next_due().map_or(until, |due| due.min(until));
                tokio::select! {
                    _ = arrived => {}
                    _ = tokio::time::sleep_until(wake) => {}
                }
            }
        })
    }

    fn lag(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        Box::pin(async move {
            let state = self.state();
            Ok(Some((state.ready.len() + state.delayed.len()) as u64))
        })
    }

    fn ack<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.settle(delivery)?;
            self.state().acked += 1;
            Ok(())
        })
    }

    fn retry<'a>(
        &'a self,
        delivery: &'a Delivery,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let mut again = delivery.clone();
            again.attempt += 1;
            let mut state = self.state();
            if state.unacked.remove(&delivery.id).is_none() {
                return Err(format!("delivery {} is not pending", delivery.id).into());
            }
            state.delayed.push((Instant::now() + delay, again));
            drop(state);
            self.arrived.notify_waiters();
            Ok(())
        })
    }

    fn dead_letter<'a>(
        &'a self,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.settle(delivery)?;
            let mut dead = delivery.clone();
            dead.headers
                .insert("dead-letter-reason".to_owned(), reason.to_owned());
            self.state().dead.push(dead);
            Ok(())
        })
    }
}
