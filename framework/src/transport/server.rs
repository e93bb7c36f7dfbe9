//! One accept loop per listener. On stop it closes the listener (new connections are refused),
//! asks every connection to finish gracefully (HTTP/1.1 closes after the response in flight,
//! idle keep-alive connections close at once; HTTP/2 sends GOAWAY and lets open streams
//! finish), and after `grace`, or when shutdown is forced, aborts whatever is left.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_service::Service;

use super::listener::{Drain, Listener};
use crate::registry::BoxFuture;

/// Which protocols a listener speaks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Protocol {
    /// HTTP/1.1 and HTTP/2 with prior knowledge (h2c).
    Auto { header_read_timeout: Duration },
    /// HTTP/2 only (gRPC).
    Http2 { max_concurrent_streams: u32 },
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

fn builder(protocol: Protocol) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    match protocol {
        Protocol::Auto {
            header_read_timeout,
        } => {
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            builder.http2().timer(TokioTimer::new());
        }
        Protocol::Http2 {
            max_concurrent_streams,
        } => {
            builder = builder.http2_only();
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(max_concurrent_streams);
        }
    }
    builder
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
        let builder = Arc::new(builder(protocol));
        let conn_stop = stop.clone();
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let conn = serve_connection(
                            builder.clone(), stream, peer, router.clone(), conn_stop.clone());
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
    builder: Arc<Builder<TokioExecutor>>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: RouterSlot,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = Router::clone(&router.load());
        let fut = router.call(req);
        async move { Ok::<_, Infallible>(fut.await.unwrap_or_else(|never| match never {})) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            return;
        }
        _ = stopped(&mut stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(error) = conn.await {
        tracing::debug!(%peer, %error, "connection ended with an error while draining");
    }
}

/// Completes once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
