//! Watching the config file: by content, so an editor's save (a temp file renamed over the
//! original, or several writes) reloads once, and touching the file reloads nothing.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::engine::Trigger;

/// Reads `path` every `poll` and sends [`Trigger::File`] when its content differs from the
/// last content seen, starting from `loaded` (the hash of what was loaded). A missing or unreadable file (mid-rename, or deleted) is not a change:
/// the config in force stays until a readable file differs.
///
/// Reading by content rather than by inotify events makes renames, symlink swaps (as
/// Kubernetes ConfigMaps do) and editors' temp files all look the same: the file's bytes
/// changed or they did not.
pub(crate) fn watch(
    path: PathBuf,
    loaded: Option<u64>,
    poll: Duration,
    tx: mpsc::Sender<Trigger>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = loaded;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(now) = fingerprint(&path).await else {
                continue;
            };
            if seen != Some(now) {
                seen = Some(now);
                tracing::debug!(file = %path.display(), "config file changed");
                if tx.send(Trigger::File).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// A hash of the file's bytes, or `None` when it cannot be read now.
async fn fingerprint(path: &PathBuf) -> Option<u64> {
    let bytes = tokio::fs::read(path).await.ok()?;
    Some(crate::config::origin::content_hash(&bytes))
}

/// Sends [`Trigger::Signal`] on every SIGHUP (Unix only).
pub(crate) fn on_sighup(tx: mpsc::Sender<Trigger>) -> std::io::Result<JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                if tx.send(Trigger::Signal).await.is_err() {
                    return;
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        drop(tx);
        Ok(tokio::spawn(async {}))
    }
}
