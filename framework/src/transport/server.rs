//! One accept loop per listener. On stop it closes the listener (new connections are refused),
//! asks every connection to finish gracefully (HTTP/1.1 closes after the response in flight,
//! idle keep-alive connections close at once; HTTP/2 sends GOAWAY and lets open streams
//! finish), and after `grace`, or when shutdown is forced, aborts whatever is left.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_service::Service;

use super::greeting::Greeted;
use super::listener::{Drain, Listener};
use crate::registry::BoxFuture;

/// Which protocols a listener speaks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Protocol {
    /// HTTP/1.1 and HTTP/2 with prior knowledge (h2c).
    Auto { header_read_timeout: Duration },
    /// HTTP/2 only (gRPC).
    Http2 {
        max_concurrent_streams: u32,
        handshake_timeout: Duration,
    },
}

/// The router a listener serves, replaced whole when the config is reloaded. Every request
/// reads the current one (an atomic load), so even long-lived keep-alive connections pick
/// up a new stack at once.
pub(crate) type RouterSlot = Arc<ArcSwap<Router>>;

/// A TCP listener served by hyper through an axum router: the HTTP, gRPC and admin
/// listeners.
pub(crate) struct Server {
    name: &'static str,
    listener: TcpListener,
    addr: SocketAddr,
    router: RouterSlot,
    protocol: Protocol,
}

/// A listener that could not be bound.
#[derive(Debug)]
pub(crate) struct BindError {
    pub(crate) listener: &'static str,
    pub(crate) addr: SocketAddr,
    pub(crate) source: std::io::Error,
}

/// The connection builders of a listener, made once.
struct Builders {
    protocol: Protocol,
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(protocol: Protocol) -> Self {
        let mut http1 = http1::Builder::new();
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new());
        match protocol {
            Protocol::Auto {
                header_read_timeout,
            } => {
                http1
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout);
            }
            Protocol::Http2 {
                max_concurrent_streams,
                ..
            } => {
                http2.max_concurrent_streams(max_concurrent_streams);
            }
        }
        Builders {
            protocol,
            http1,
            http2,
        }
    }
}

impl Server {
    /// Binds `addr` for the router in `router`, speaking `protocol`.
    pub(crate) async fn bind(
        name: &'static str,
        addr: SocketAddr,
        router: RouterSlot,
        protocol: Protocol,
    ) -> Result<Self, BindError> {
        let error = |source| BindError {
            listener: name,
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(error)?;
        let addr = listener.local_addr().map_err(error)?;
        Ok(Server {
            name,
            listener,
            addr,
            router,
            protocol,
        })
    }

    /// Serves until `stop` turns true, then closes the listener, reports that on `closed`, and
    /// drains for up to `grace` (or until `force`).
    async fn run(self, drain: Drain) {
        let Server {
            name,
            listener,
            router,
            protocol,
            ..
        } = self;
        let Drain {
            mut stop,
            closed,
            grace,
            force,
        } = drain;
        let builders = Arc::new(Builders::new(protocol));
        let conn_stop = stop.clone();
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let conn = serve_connection(
                            builders.clone(), stream, peer, router.clone(), conn_stop.clone());
                        conns.spawn(conn);
                    }
                    Err(error) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(listener = name, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                _ = stopped(&mut stop) => break,
            }
        }
        drop(listener);
        let _ = closed.send(());
        tracing::debug!(listener = name, open = conns.len(), "stopped accepting");

        let drained = async { while conns.join_next().await.is_some() {} };
        tokio::select! {
            _ = drained => {}
            _ = tokio::time::sleep(grace) => {
                tracing::warn!(listener = name, open = conns.len(), ?grace,
                    "grace period over: closing connections by force");
            }
            _ = force.forced() => {
                tracing::warn!(listener = name, open = conns.len(),
                    "forced shutdown: closing connections");
            }
        }
        conns.shutdown().await;
    }
}

impl Listener for Server {
    fn name(&self) -> &'static str {
        self.name
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }

    fn serve(self: Box<Self>, drain: Drain) -> BoxFuture<'static, ()> {
        Box::pin(self.run(drain))
    }
}

async fn serve_connection(
    builders: Arc<Builders>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: RouterSlot,
    mut stop: watch::Receiver<bool>,
) {
    // An HTTP/2 client must greet (preface, then its first frame) within the listener's
    // handshake or header timeout, as an HTTP/1.1 one must send its head: hyper's HTTP/2
    // server would wait for ever.
    // One budget from the accept: the sniff's time counts.
    let accepted = tokio::time::Instant::now();
    let (greet_by, h2) = match builders.protocol {
        Protocol::Http2 {
            handshake_timeout, ..
        } => (accepted + handshake_timeout, true),
        // Boxed: the sniffing state (timers) is not kept in every connection's task.
        Protocol::Auto {
            header_read_timeout,
        } => match Box::pin(sniff(&stream, header_read_timeout, &mut stop)).await {
            Some(h2) => (accepted + header_read_timeout, h2),
            // Closed, silent past the header timeout, or shutting down: nothing to serve.
            None => return,
        },
    };
    // The router's own future, not an `async` block around it (which would hold it twice):
    // hyper keeps room for this future in every connection.
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        Router::clone(&router.load()).call(req)
    });
    // Boxed, so a connection holds only its own protocol's state (an HTTP/1.1 connection
    // does not carry the room an HTTP/2 one needs). Either must greet by `greet_by`: an
    // HTTP/2 client with its preface and first frame header, an HTTP/1.1 one with its first
    // request's head (hyper's own header timer starts only at its first read, after the
    // sniff: the whole first head must come within the budget).
    let mut conn: Pin<Box<dyn Connection>> = if h2 {
        let io = TokioIo::new(Greeted::h2(stream, greet_by));
        Box::pin(builders.http2.serve_connection(io, service))
    } else {
        let io = TokioIo::new(Greeted::h1(stream, greet_by));
        Box::pin(builders.http1.serve_connection(io, service).with_upgrades())
    };
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            return;
        }
        _ = stopped(&mut stop) => {}
    }
    conn.as_mut().shutdown();
    // hyper's graceful shutdown of an HTTP/2 connection still in its handshake waits for
    // the client's preface: the stream's deadline still ends it.
    if let Err(error) = conn.await {
        tracing::debug!(%peer, %error, "connection ended with an error while draining");
    }
}

/// [`speaks_h2`], given up when the listener stops.
async fn sniff(
    stream: &tokio::net::TcpStream,
    wait: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Option<bool> {
    tokio::select! {
        sniffed = speaks_h2(stream, wait) => sniffed,
        _ = stopped(stop) => None,
    }
}

/// HTTP/2's connection preface, which an h2c client with prior knowledge opens with.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client opens with HTTP/2's preface, read with `peek` so the bytes stay for
/// the protocol's parser. `None` when the client closed, or sent nothing decisive within
/// `wait`.
async fn speaks_h2(stream: &tokio::net::TcpStream, wait: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; PREFACE.len()];
    // `peek` returns the same bytes at once while no more have come, so a client stuck
    // inside the preface is looked at again after a pause, doubled each time: a few dozen
    // wake-ups over a whole header timeout, not one per millisecond.
    let mut pause = Duration::from_millis(1);
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != PREFACE[..n] {
            return Some(false);
        }
        if n == PREFACE.len() {
            return Some(true);
        }
        tokio::time::timeout_at(deadline, tokio::time::sleep(pause))
            .await
            .ok()?;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// The longest pause between two looks at a connection stuck inside the preface.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// A served connection of either protocol, which can be asked to finish gracefully.
trait Connection: Future<Output = Result<(), hyper::Error>> + Send {
    fn shutdown(self: Pin<&mut Self>);
}

impl<I, S> Connection for http1::UpgradeableConnection<I, S>
where
    Self: Future<Output = Result<(), hyper::Error>> + Send,
    S: hyper::service::HttpService<Incoming>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> Connection for http2::Connection<I, S, TokioExecutor>
where
    Self: Future<Output = Result<(), hyper::Error>> + Send,
    S: hyper::service::HttpService<Incoming>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Completes once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
