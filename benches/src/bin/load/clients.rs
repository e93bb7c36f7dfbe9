//! The generator side of the load harness: checked HTTP/1.1 and gRPC calls, closed and open
//! loops, and what they measure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::pb::Ping;
use crate::pb::echo_client::EchoClient;
use crate::servers::{Server, own_cpu};

pub enum Client {
    Http(http1::SendRequest<Empty<Bytes>>),
    Grpc(EchoClient<tonic::transport::Channel>),
}

impl Client {
    pub async fn connect(addr: SocketAddr, grpc: bool) -> Client {
        if grpc {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect");
            Client::Grpc(EchoClient::new(channel))
        } else {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = stream.set_nodelay(true);
            let (send, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            Client::Http(send)
        }
    }

    /// One checked call.
    pub async fn call(&mut self) -> Result<(), String> {
        match self {
            Client::Http(send) => {
                send.ready().await.map_err(|e| e.to_string())?;
                let req = Request::get("/")
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                if status != StatusCode::OK || body.as_ref() != b"ok" {
                    return Err(format!("bad answer {status} {body:?}"));
                }
                Ok(())
            }
            Client::Grpc(client) => {
                let reply = client
                    .ping(Ping {
                        message: "ok".into(),
                    })
                    .await
                    .map_err(|s| format!("grpc-status {}", s.code() as i32))?;
                if reply.get_ref().message != "ok" {
                    return Err("bad reply".into());
                }
                Ok(())
            }
        }
    }
}

/// One client per caller: HTTP/1.1 callers each own a connection; gRPC callers share one
/// HTTP/2 connection per 8 of them, as a real client would.
pub async fn connect_all(addr: SocketAddr, grpc: bool, conns: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(conns);
    let mut shared: Option<EchoClient<tonic::transport::Channel>> = None;
    for i in 0..conns {
        if grpc {
            if i % 8 == 0 {
                shared = match Client::connect(addr, true).await {
                    Client::Grpc(c) => Some(c),
                    Client::Http(_) => None,
                };
            }
            if let Some(c) = &shared {
                clients.push(Client::Grpc(c.clone()));
            }
        } else {
            clients.push(Client::connect(addr, false).await);
        }
    }
    clients
}

pub struct Stats {
    pub rps: f64,
    /// Latencies in µs, sorted.
    pub lat: Vec<u32>,
    pub errors: u64,
    /// Server CPU time per answered request, in µs.
    pub server_us: f64,
    /// The load generator's CPU use over the measured window (1.0 = one core busy).
    pub generator_cpu: f64,
}

impl Stats {
    pub fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 * p).ceil() as usize).clamp(1, self.lat.len()) - 1;
        f64::from(self.lat[i])
    }
}

/// Closed loop: `conns` callers, each sending its next request when the last one answered.
pub async fn closed(
    server: &Server,
    addr: SocketAddr,
    grpc: bool,
    conns: usize,
    secs: Duration,
) -> Stats {
    // gRPC callers share a few HTTP/2 connections, as a real client would.
    let clients = connect_all(addr, grpc, conns).await;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut client in clients {
        let (measuring, stop, errors) = (measuring.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let ok = client.call().await;
                if measuring.load(Ordering::Relaxed) {
                    match ok {
                        Ok(()) => {
                            lat.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32)
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let (server_before, own_before) = (server.cpu(), own_cpu());
    tokio::time::sleep(secs).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let server_cpu = server.cpu().saturating_sub(server_before);
    let own = own_cpu().saturating_sub(own_before);
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    lat.sort_unstable();
    Stats {
        rps: lat.len() as f64 / elapsed.as_secs_f64(),
        server_us: server_cpu.as_secs_f64() * 1e6 / lat.len().max(1) as f64,
        generator_cpu: own.as_secs_f64() / elapsed.as_secs_f64(),
        lat,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Waits until `due` to within a few microseconds: tokio's timer wheel has millisecond
/// ticks and rounds up, which would add up to a millisecond of send lateness to every
/// open-loop latency (for the baseline as much as for truss, but as noise larger than the
/// differences measured). The timer sleeps to a tick before `due`, then the task yields
/// until the clock reaches it. That spins, so only when the generator has CPUs of its own
/// (the servers are pinned elsewhere); otherwise the timer alone.
async fn pace_until(due: tokio::time::Instant) {
    if !crate::servers::servers_have_own_cpu() {
        tokio::time::sleep_until(due).await;
        return;
    }
    if let Some(early) = due.checked_sub(Duration::from_millis(2)) {
        tokio::time::sleep_until(early).await;
    }
    while tokio::time::Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// Open loop at `rate` per second: request k is due at `start + k / rate`; caller i sends
/// requests i, i + n, i + 2n, ... each at its due time (or at once when late), and latency
/// counts from the due time, so time spent queued behind a slow answer counts too.
pub async fn open(
    addr: SocketAddr,
    grpc: bool,
    callers: usize,
    rate: f64,
    secs: Duration,
) -> Stats {
    let total = (rate * secs.as_secs_f64()) as u64;
    let errors = Arc::new(AtomicU64::new(0));
    let clients = connect_all(addr, grpc, callers).await;
    let n = clients.len() as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut k = i as u64;
            while k < total {
                let due = start + Duration::from_secs_f64(k as f64 / rate);
                pace_until(due).await;
                match client.call().await {
                    Ok(()) => lat.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                k += n;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    lat.sort_unstable();
    Stats {
        rps: lat.len() as f64 / start.elapsed().as_secs_f64(),
        lat,
        errors: errors.load(Ordering::Relaxed),
        server_us: f64::NAN,
        generator_cpu: f64::NAN,
    }
}
