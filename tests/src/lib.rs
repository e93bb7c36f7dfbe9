//! Helpers for truss's cross-crate integration tests: small real HTTP/1.1 and HTTP/2 clients
//! and app configs that bind port 0.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use truss::config::{Config, NoAppConfig};

/// Any error, for test plumbing.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A config whose listeners bind 127.0.0.1:0, with the given shutdown timings.
pub fn local_config(drain_delay: Duration, grace: Duration) -> Config<NoAppConfig> {
    let mut config = Config::<NoAppConfig>::default();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    config.http.addr = any;
    config.grpc.addr = any;
    config.admin.addr = any;
    config.shutdown.drain_delay = drain_delay;
    config.shutdown.grace = grace;
    config.shutdown.hook_timeout = Duration::from_secs(2);
    config
}

/// An open HTTP/1.1 connection (kept alive between requests).
pub struct H1 {
    send: http1::SendRequest<Empty<Bytes>>,
}

impl H1 {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { send })
    }

    /// Sends `GET path` and reads the whole response.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), BoxError> {
        self.send.ready().await?;
        let req = Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(Empty::new())?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// An open HTTP/2 (prior knowledge, h2c) connection.
pub struct H2 {
    send: http2::SendRequest<Empty<Bytes>>,
}

impl H2 {
    /// Connects to `addr` speaking HTTP/2 from the first byte.
    pub async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { send })
    }

    /// Sends `GET path` and reads the whole response.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), BoxError> {
        self.send.ready().await?;
        let req = Request::get(format!("http://localhost{path}")).body(Empty::new())?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// `GET path` on a fresh HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), BoxError> {
    H1::connect(addr).await?.get(path).await
}
