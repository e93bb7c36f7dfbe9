//! The HTTP/2 handshake guard. hyper's HTTP/2 server waits for a client's preface and first
//! frame without a timeout, so a client that connects and sends nothing, or the preface and
//! then nothing, would hold its connection (and its task) until shutdown, even through a
//! graceful one. On the gRPC listener such a connection is closed once
//! `grpc.handshake_timeout` has passed since the accept without the preface and the header
//! of the first frame after it (the `SETTINGS` that must follow); on the HTTP and admin
//! listeners, where a client picks HTTP/2 by its preface, once `header_read_timeout` has.
//! An HTTP/1.1 connection there must deliver its first request's head within the same
//! budget from the accept (hyper's own header timer starts only at its first read, after
//! the sniff, so a client silent for most of the budget could otherwise trickle its head
//! for another whole one). A client that has greeted may then stay idle as long as it likes:
//! this guards against clients that send nothing, not against every slow one.
//!
//! [`Greeted`] counts the bytes read from the client until there are enough for the preface
//! and one frame header (an HTTP/1.1 connection's flag is set by its first request instead);
//! [`silent_past`] completes when the time is up and the flag is not set.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The preface (24 bytes) and one frame header (9).
const GREETING: usize = 24 + 9;

/// A connection's stream, noting when the client's greeting has been read.
pub(crate) struct Greeted<T> {
    io: T,
    read: usize,
    greeted: Arc<AtomicBool>,
}

impl<T> Greeted<T> {
    /// Wraps `io`; `greeted` turns true once the greeting has been read.
    pub(crate) fn new(io: T, greeted: Arc<AtomicBool>) -> Self {
        Greeted {
            io,
            read: 0,
            greeted,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Greeted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if self.read < GREETING {
            self.read += buf.filled().len() - before;
            if self.read >= GREETING {
                self.greeted.store(true, Ordering::Release);
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Greeted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Completes at `deadline` if `greeted` is still false then; otherwise never.
pub(crate) fn silent_past(
    deadline: Instant,
    greeted: Arc<AtomicBool>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        tokio::time::sleep_until(deadline).await;
        if greeted.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn greeted_once_the_preface_and_a_frame_header_are_read() {
        let (client, server) = tokio::io::duplex(64);
        let greeted = Arc::new(AtomicBool::new(false));
        let mut server = Greeted::new(server, greeted.clone());
        let mut client = client;
        let mut buf = [0u8; 64];
        client.write_all(&[0; 32]).await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 32);
        assert!(
            !greeted.load(Ordering::Acquire),
            "32 bytes are not a greeting"
        );
        client.write_all(&[0; 1]).await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
        assert!(greeted.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn the_guard_fires_only_for_a_silent_client() {
        let in_10s = Instant::now() + Duration::from_secs(10);
        let silent = Arc::new(AtomicBool::new(false));
        let guard = silent_past(in_10s, silent);
        tokio::time::timeout(Duration::from_secs(11), guard)
            .await
            .expect("a silent client is cut off after the wait");

        let greeted = Arc::new(AtomicBool::new(true));
        let guard = silent_past(in_10s, greeted);
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), guard)
                .await
                .is_err(),
            "a client that greeted is never cut off"
        );
    }
}
