//! [`Live<T>`]: a value the app replaces when its config is reloaded.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

/// The current value of a reloadable section, usually the team's `[app]`: cheap to read on
/// the hot path, and a watch for code that reacts to changes.
///
/// Get one from [`Config::live_app`](super::Config::live_app); the running app replaces its
/// value each time a reload of the config file (or its etcd source, or SIGHUP) passes
/// validation. An invalid reload leaves it untouched.
///
/// ```
/// use truss::config::Live;
///
/// let greeting = Live::new("Hello".to_owned());
/// assert_eq!(*greeting.get(), "Hello");
///
/// greeting.set("Hi".to_owned()); // what a reload does
/// assert_eq!(*greeting.get(), "Hi");
/// assert_eq!(greeting.revision(), 1);
/// ```
///
/// In a handler:
///
/// ```
/// # use truss::config::Live;
/// # #[derive(Clone)] struct Hello { greeting: String }
/// async fn hello(live: Live<Hello>) -> String {
///     format!("{}, world", live.get().greeting) // one atomic load, no lock
/// }
/// ```
pub struct Live<T> {
    value: Arc<ArcSwap<T>>,
    revision: watch::Sender<u64>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            revision: self.revision.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("value", &self.value.load())
            .field("revision", &*self.revision.borrow())
            .finish()
    }
}

impl<T> Live<T> {
    /// A handle holding `value` at revision 0.
    pub fn new(value: T) -> Self {
        Self {
            value: Arc::new(ArcSwap::from_pointee(value)),
            revision: watch::Sender::new(0),
        }
    }

    /// The current value. Lock-free: an atomic load and a reference count.
    pub fn get(&self) -> Arc<T> {
        self.value.load_full()
    }

    /// Replaces the value and wakes every [`changed`](Self::changed) waiter.
    pub fn set(&self, value: T) {
        self.value.store(Arc::new(value));
        self.revision.send_modify(|r| *r += 1);
    }

    /// How many times the value was replaced.
    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// A receiver that wakes on every change, for code that reacts rather than reads:
    ///
    /// ```
    /// # use truss::config::Live;
    /// # async fn demo() {
    /// let level = Live::new(1u32);
    /// let mut changes = level.changed();
    /// tokio::spawn({
    ///     let level = level.clone();
    ///     async move { level.set(2) }
    /// });
    /// changes.changed().await.unwrap();
    /// assert_eq!(*level.get(), 2);
    /// # }
    /// ```
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }
}
