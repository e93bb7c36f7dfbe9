//! Liveness and readiness, served on the admin listener as `/healthz` and `/readyz`.
//!
//! The app is ready once every listener is bound and until shutdown begins; anything else can
//! hold readiness down with a named check (the registry does while it is not registered):
//!
//! ```
//! let health = truss::Health::new();
//! health.set_ready(true);
//! assert!(health.is_ready());
//! health.set_check("database", false);
//! assert!(!health.is_ready());
//! health.set_check("database", true);
//! assert!(health.is_ready());
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Shared readiness state. Cheap to clone; clones share state.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    ready: AtomicBool,
    checks: Mutex<BTreeMap<String, bool>>,
}

impl Health {
    /// Not ready, with no checks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the app-level flag (the app sets it after binding and clears it on shutdown).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Sets a named check; readiness requires every check to pass.
    pub fn set_check(&self, name: impl Into<String>, ok: bool) {
        self.checks().insert(name.into(), ok);
    }

    /// Removes a named check.
    pub fn remove_check(&self, name: &str) {
        self.checks().remove(name);
    }

    /// The app flag and every check.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire) && self.checks().values().all(|ok| *ok)
    }

    /// Every check and its state, for the `/readyz` body.
    pub fn checks_snapshot(&self) -> BTreeMap<String, bool> {
        self.checks().clone()
    }

    fn checks(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.inner
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
