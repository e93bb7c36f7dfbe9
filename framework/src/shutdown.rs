//! Shutdown triggers: SIGTERM / SIGINT, and a [`ShutdownHandle`] code and tests can use.
//!
//! A first trigger starts the graceful sequence described on
//! [`ShutdownConfig`](crate::config::ShutdownConfig); a second one (a second Ctrl-C, or
//! [`ShutdownHandle::force`]) skips the remaining waits and closes every connection at once.

use std::sync::Arc;

use tokio::sync::watch;

/// How far shutdown has been requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Running,
    Graceful,
    Force,
}

/// Requests shutdown of a running app. Cheap to clone; every clone controls the same app.
///
/// ```no_run
/// # async fn demo(app: truss::AppBuilder) -> Result<(), truss::AppError> {
/// let running = app.start().await?;
/// let handle = running.shutdown_handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(std::time::Duration::from_secs(60)).await;
///     handle.shutdown(); // the same sequence as SIGTERM
/// });
/// running.wait().await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    tx: Arc<watch::Sender<Level>>,
}

impl Default for ShutdownHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownHandle {
    /// A handle with nothing requested yet.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(Level::Running)),
        }
    }

    /// Starts the graceful shutdown sequence. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.raise(Level::Graceful);
    }

    /// Skips whatever waits remain and closes every connection now.
    pub fn force(&self) {
        self.raise(Level::Force);
    }

    /// Whether shutdown has been requested.
    pub fn is_shutting_down(&self) -> bool {
        *self.tx.borrow() >= Level::Graceful
    }

    /// Completes once shutdown has been requested.
    pub async fn requested(&self) {
        self.reached(Level::Graceful).await;
    }

    fn raise(&self, level: Level) {
        self.tx.send_if_modified(|current| {
            if *current < level {
                *current = level;
                true
            } else {
                false
            }
        });
    }

    pub(crate) async fn reached(&self, level: Level) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail.
        let _ = rx.wait_for(|l| *l >= level).await;
    }

    pub(crate) async fn forced(&self) {
        self.reached(Level::Force).await;
    }
}

/// Turns SIGTERM / SIGINT into calls on `handle`: the first starts graceful shutdown, the
/// next forces it.
pub(crate) fn listen_for_signals(handle: ShutdownHandle) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                if handle.is_shutting_down() {
                    tracing::warn!(signal = name, "second signal: forcing shutdown");
                    handle.force();
                } else {
                    tracing::info!(signal = name, "signal received: shutting down");
                    handle.shutdown();
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if handle.is_shutting_down() {
                    handle.force();
                } else {
                    handle.shutdown();
                }
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn levels_only_rise() {
        let handle = ShutdownHandle::new();
        assert!(!handle.is_shutting_down());
        handle.force();
        handle.shutdown();
        assert!(handle.is_shutting_down());
        handle.forced().await; // still forced, not lowered back to graceful
        handle.requested().await;
    }
}
