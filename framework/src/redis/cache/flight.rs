//! Singleflight: one leader per key does the work, the callers that arrive meanwhile wait
//! for its result.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;
use tokio::time::Instant;

/// A flight's key: the kind of result it produces (callers of one key with different
/// result types do not share flights) and the key.
type FlightKey = (TypeId, String);

/// A flight in progress: its id and where its result will appear.
type Flight<T> = (u64, watch::Receiver<Option<T>>);

/// The flights in progress, by key.
pub(super) struct Flights<T> {
    map: Mutex<HashMap<FlightKey, Flight<T>>>,
    next_id: AtomicU64,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }
}

/// What a caller does for a key: lead the flight, or wait for the one in progress.
pub(super) enum Role<'a, T> {
    /// No flight was in progress: do the work, then [`Leading::finish`].
    Leader(Leading<'a, T>),
    /// Another caller leads: [`wait`] for it.
    Follower(watch::Receiver<Option<T>>),
}

/// The leader's handle. Dropped without [`finish`](Self::finish) (the leader was cancelled
/// or panicked), it ends the flight empty-handed, and its followers try again.
pub(super) struct Leading<'a, T> {
    flights: &'a Flights<T>,
    key: FlightKey,
    id: u64,
    tx: watch::Sender<Option<T>>,
    /// Whether the flight is out of the map already (so `Drop` does not look again).
    ended: bool,
}

/// How waiting for a leader ended.
pub(super) enum Waited<T> {
    /// The leader's result.
    Done(T),
    /// The leader gave up without a result: try again (perhaps as the leader).
    Abandoned,
    /// The waiter's own deadline passed first.
    TimedOut,
}

impl<T: Clone> Flights<T> {
    /// Joins the flight for `key` producing results of type `kind`, or starts one.
    pub(super) fn join(&self, kind: TypeId, key: &str) -> Role<'_, T> {
        let key = (kind, key.to_owned());
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, rx)) = map.get(&key) {
            return Role::Follower(rx.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), (id, rx));
        Role::Leader(Leading {
            flights: self,
            key,
            id,
            tx,
            ended: false,
        })
    }

    /// Flights in progress (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<T> Leading<'_, T> {
    /// Ends the flight (a caller arriving after this starts a new one), then hands `value`
    /// to every follower.
    pub(super) fn finish(mut self, value: T) {
        self.end();
        self.tx.send_replace(Some(value));
    }

    /// Takes the flight out of the map, if it is still this one (once).
    fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            map.remove(&self.key);
        }
    }
}

impl<T> Drop for Leading<'_, T> {
    fn drop(&mut self) {
        self.end();
    }
}

/// Waits for the leader behind `rx`, until `deadline` if there is one.
pub(super) async fn wait<T: Clone>(
    mut rx: watch::Receiver<Option<T>>,
    deadline: Option<Instant>,
) -> Waited<T> {
    let done = async {
        match rx.wait_for(Option::is_some).await {
            Ok(value) => value.clone().map_or(Waited::Abandoned, Waited::Done),
            Err(_) => Waited::Abandoned,
        }
    };
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, done)
            .await
            .unwrap_or(Waited::TimedOut),
        None => done.await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_value_and_an_abandoned_flight_is_retried() {
        let flights = Flights::<u32>::default();
        let kind = TypeId::of::<u32>();
        let Role::Leader(lead) = flights.join(kind, "k") else {
            panic!("first caller leads")
        };
        assert!(matches!(
            flights.join(TypeId::of::<u8>(), "k"),
            Role::Leader(_)
        ));
        let Role::Follower(rx) = flights.join(kind, "k") else {
            panic!("second caller follows")
        };
        let waiting = tokio::spawn(wait(rx, None));
        lead.finish(7);
        assert!(matches!(waiting.await.unwrap(), Waited::Done(7)));
        assert_eq!(flights.len(), 0);

        let Role::Leader(lead) = flights.join(kind, "k") else {
            panic!("a finished flight is gone")
        };
        let Role::Follower(rx) = flights.join(kind, "k") else {
            panic!("follows")
        };
        drop(lead);
        assert!(matches!(wait(rx, None).await, Waited::Abandoned));
        assert!(matches!(flights.join(kind, "k"), Role::Leader(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_stops_waiting_at_its_deadline() {
        let flights = Flights::<u32>::default();
        let _lead = flights.join(TypeId::of::<u32>(), "k");
        let Role::Follower(rx) = flights.join(TypeId::of::<u32>(), "k") else {
            panic!("follows")
        };
        let deadline = Instant::now() + Duration::from_millis(100);
        assert!(matches!(wait(rx, Some(deadline)).await, Waited::TimedOut));
        assert_eq!(Instant::now(), deadline);
    }
}
