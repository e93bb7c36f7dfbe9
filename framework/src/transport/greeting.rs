//! The greeting guard. hyper's HTTP/2 server waits for a client's preface and first frame
//! without a timeout, so a client that connects and sends nothing, or the preface and then
//! nothing, would hold its connection (and its task) until shutdown, even through a graceful
//! one. On the gRPC listener such a connection is closed once `grpc.handshake_timeout` has
//! passed since the accept without the preface and the header of the first frame after it
//! (the `SETTINGS` that must follow); on the HTTP and admin listeners, where a client picks
//! HTTP/2 by its preface, once `header_read_timeout` has. An HTTP/1.1 connection there must
//! deliver its first request's head within the same budget from the accept (hyper's own
//! header timer starts only at its first read, after the sniff, so a client silent for most
//! of the budget could otherwise trickle its head for another whole one). A client that has
//! greeted may then stay idle as long as it likes: this guards against clients that send
//! nothing, not against every slow one.
//!
//! [`Greeted`] wraps the connection's stream: until the greeting has been read it holds the
//! deadline's timer, and a read that finds nothing more past it fails, which ends the
//! connection (hyper is always
//! reading while it waits for a greeting, so the timer's wake-up reaches that read). Once
//! greeted it drops the timer: an idle connection keeps nothing armed and no state beside
//! its stream.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The preface (24 bytes) and one frame header (9).
const H2_GREETING: usize = 24 + 9;

/// A connection's stream, closed by its first read past the deadline unless the client's
/// greeting has been read by then.
pub(crate) struct Greeted<T> {
    io: T,
    /// Until greeted: the deadline and what has been read towards the greeting.
    waiting: Option<Waiting>,
}

struct Waiting {
    deadline: Pin<Box<Sleep>>,
    progress: Progress,
}

/// What counts as a greeting, and how far the client is.
enum Progress {
    /// HTTP/2: the preface and one frame header; bytes read so far.
    H2 { read: usize },
    /// HTTP/1.1: the first request's head, up to its empty line. `started`: a byte other
    /// than CR or LF came (empty lines before the request line, which HTTP allows, are not
    /// a head); `at_line_start`: the last byte that was not `\r` ended a line.
    H1 { started: bool, at_line_start: bool },
}

impl Progress {
    /// Takes `bytes` into account; whether the greeting is complete.
    fn saw(&mut self, bytes: &[u8]) -> bool {
        match self {
            Progress::H2 { read } => {
                *read += bytes.len();
                *read >= H2_GREETING
            }
            Progress::H1 {
                started,
                at_line_start,
            } => {
                for &byte in bytes {
                    match byte {
                        b'\r' => {}
                        b'\n' if !*started => {}
                        b'\n' if *at_line_start => return true,
                        b'\n' => *at_line_start = true,
                        _ => {
                            *started = true;
                            *at_line_start = false;
                        }
                    }
                }
                false
            }
        }
    }
}

impl<T> Greeted<T> {
    /// An HTTP/2 client's stream, which must bring the preface and a frame header by
    /// `deadline`.
    pub(crate) fn h2(io: T, deadline: Instant) -> Self {
        Self::new(io, deadline, Progress::H2 { read: 0 })
    }

    /// An HTTP/1.1 client's stream, which must bring its first request's head by
    /// `deadline`.
    pub(crate) fn h1(io: T, deadline: Instant) -> Self {
        let progress = Progress::H1 {
            started: false,
            at_line_start: false,
        };
        Self::new(io, deadline, progress)
    }

    fn new(io: T, deadline: Instant, progress: Progress) -> Self {
        Greeted {
            io,
            waiting: Some(Waiting {
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                progress,
            }),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Greeted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(waiting) = &mut this.waiting else {
            return polled;
        };
        match &polled {
            // What arrived counts, however late it is read.
            Poll::Ready(Ok(())) => {
                if waiting.progress.saw(&buf.filled()[before..]) {
                    this.waiting = None;
                }
            }
            // Nothing more yet: past the deadline, the connection ends; before it, the
            // timer's wake-up brings hyper back to this read.
            Poll::Pending => {
                if waiting.deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not greet in time",
                    )));
                }
            }
            Poll::Ready(Err(_)) => {}
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[tokio::test]
    async fn h2_greeted_once_the_preface_and_a_frame_header_are_read() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = Greeted::h2(server, later());
        let mut buf = [0u8; 64];
        client.write_all(&[0; 32]).await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 32);
        assert!(server.waiting.is_some(), "32 bytes are not a greeting");
        client.write_all(&[0; 1]).await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
        assert!(server.waiting.is_none(), "greeted: the timer is gone");
    }

    #[tokio::test]
    async fn h1_greeted_by_the_end_of_its_first_head_in_any_pieces() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = Greeted::h1(server, later());
        let mut buf = [0u8; 64];
        for piece in [&b"GET / HTTP/1.1\r\nhost: x\r"[..], b"\n\r", b"\n"] {
            assert!(server.waiting.is_some());
            client.write_all(piece).await.unwrap();
            let _: usize = server.read(&mut buf).await.unwrap();
        }
        assert!(server.waiting.is_none());
        // Empty lines before the request line are not a head; bare line feeds end one, as
        // hyper's parser takes them.
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = Greeted::h1(server, later());
        client.write_all(b"\r\n\r\n\n").await.unwrap();
        let _: usize = server.read(&mut buf).await.unwrap();
        assert!(
            server.waiting.is_some(),
            "leading empty lines are not a head"
        );
        client
            .write_all(b"GET / HTTP/1.1\nhost: x\n\n")
            .await
            .unwrap();
        let _: usize = server.read(&mut buf).await.unwrap();
        assert!(server.waiting.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_past_the_deadline_fails_unless_greeted() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut silent = Greeted::h1(server, later());
        let mut buf = [0u8; 64];
        client.write_all(b"GET / HT").await.unwrap();
        let _: usize = silent.read(&mut buf).await.unwrap();
        // Waits for more; the deadline's wake-up ends the read with an error.
        let error = silent.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(64);
        let mut greeted = Greeted::h1(server, later());
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let _: usize = greeted.read(&mut buf).await.unwrap();
        tokio::time::advance(Duration::from_secs(3600)).await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(
            greeted.read(&mut buf).await.is_ok(),
            "a greeted client stays"
        );
    }
}
