//! Per-subscription admission for consumers: a rate limit on handler starts, and per-key
//! lanes that keep the messages of one key in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Evenly spaced starts: at most `rate` per second, with a burst of `burst` after a pause
/// (GCRA: one "theoretical arrival time" moved forward by each start).
#[derive(Debug)]
pub(crate) struct Pace {
    interval: Duration,
    burst: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pace {
    /// `rate` starts per second (at least 0.001, as validated), `burst` at once after
    /// idling (at least 1).
    pub(crate) fn new(rate: f64, burst: u32) -> Self {
        let interval =
            Duration::try_from_secs_f64(1.0 / rate.max(0.001)).unwrap_or(Duration::from_secs(1000));
        Self {
            interval,
            burst: interval.saturating_mul(burst.max(1) - 1),
            next: Mutex::new(None),
        }
    }

    /// Reserves the next start and waits for it.
    pub(crate) async fn wait(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at).await;
    }

    /// When a start asked for at `now` may happen.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let earliest = now.checked_sub(self.burst).unwrap_or(now);
        let at = next.map_or(earliest, |n| n.max(earliest));
        *next = Some(at + self.interval);
        at.max(now)
    }
}

/// One key's turn: finished when its message is settled (or its task ends).
#[derive(Debug, Default)]
pub(crate) struct Turn {
    done: AtomicBool,
    notify: Notify,
}

impl Turn {
    /// Waits until this turn is finished.
    pub(crate) async fn finished(&self) {
        loop {
            let notified = self.notify.notified();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Finishes its turn when dropped: a panicking or aborted task still lets the key go on.
#[derive(Debug)]
pub(crate) struct TurnGuard(Arc<Turn>);

impl Drop for TurnGuard {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// The last turn of each key, so the next message of a key waits for the one before.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    last: HashMap<String, Arc<Turn>>,
}

impl Lanes {
    /// The turn to wait for (the key's previous message, if unfinished) and this message's
    /// own turn. Call in delivery order.
    pub(crate) fn enter(&mut self, key: &str) -> (Option<Arc<Turn>>, TurnGuard) {
        if self.last.len() >= 4096 {
            self.last
                .retain(|_, turn| !turn.done.load(Ordering::Acquire));
        }
        let mine = Arc::new(Turn::default());
        let before = self.last.insert(key.to_owned(), mine.clone());
        let before = before.filter(|turn| !turn.done.load(Ordering::Acquire));
        (before, TurnGuard(mine))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn starts_are_spaced_by_the_rate_after_the_burst() {
        let pace = Pace::new(10.0, 3);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..6 {
            pace.wait().await;
            at.push(start.elapsed().as_millis());
        }
        // Three at once, then one every 100 ms.
        assert_eq!(at, [0, 0, 0, 100, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_waits_for_its_previous_message_only() {
        let mut lanes = Lanes::default();
        let (none, first) = lanes.enter("a");
        assert!(none.is_none());
        let (wait_a, _second) = lanes.enter("a");
        let (none_b, _b) = lanes.enter("b");
        assert!(none_b.is_none(), "another key does not wait");
        let wait_a = wait_a.expect("the second message of a waits");
        let waiting = tokio::spawn(async move { wait_a.finished().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        waiting.await.expect("finished once the first is settled");
    }
}
