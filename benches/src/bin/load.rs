//! What truss costs over bare hyper and bare tonic, end to end over loopback.
//!
//! ```sh
//! cargo run --release -p truss-benches --bin load                  # defaults
//! cargo run --release -p truss-benches --bin load -- --secs 10 --conns 32 --workers 1
//! ```
//!
//! Four servers, each in its own child process with the same number of tokio worker
//! threads (`--workers`, default 1) and the same trivial handler: bare hyper (HTTP/1.1),
//! truss HTTP (the app with its full default stack: trace + access log, metrics, in-flight
//! limit, load shedding, breaker, deadline), bare tonic, and truss gRPC (the same stack). The
//! servers' output goes to /dev/null, so truss's access log is formatted and written as in
//! production.
//!
//! Each is driven in turn by the same closed-loop generator (`--conns` connections or
//! streams, each sending the next request when the last answer arrived; every answer is
//! checked: status 200 and body `ok`, or `grpc-status` 0 and the reply message) for `--secs`
//! after a one-second warm-up. Then an open-loop pass offers 50 % of bare's maximum rate to
//! both (latency measured from each request's scheduled send time, so queueing counts), and
//! the added p50 / p99 are printed. `axum` (axum's own server, same route, no layers) and the
//! `-quiet` variants (truss without the access-log line) show where the cost comes from;
//! `LOAD_LOG_LEVEL=warn` turns truss's request logging off entirely.
//!
//! With two or more CPUs the servers are pinned (`taskset`) to the last CPU and the
//! generator to the others. Load shedding stays in the stack but with a 100 % threshold: it
//! follows the host's CPU, which a benchmark saturates by design.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

mod pb {
    tonic::include_proto!("bench.v1");
}

use pb::echo_client::EchoClient;
use pb::echo_server::{Echo, EchoServer};
use pb::{Ping, Pong};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        let kind = args.get(2).cloned().unwrap_or_default();
        let addr: SocketAddr = args.get(3).and_then(|a| a.parse().ok()).expect("address");
        serve(&kind, addr, arg("--workers", 1) as usize);
        return;
    }
    let secs = Duration::from_secs(arg("--secs", 5));
    let conns = arg("--conns", 32) as usize;
    let workers = arg("--workers", 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(drive(secs, conns, workers));
}

// ---------- servers ----------

#[derive(Default)]
struct Trivial;

#[tonic::async_trait]
impl Echo for Trivial {
    async fn ping(
        &self,
        req: tonic::Request<Ping>,
    ) -> Result<tonic::Response<Pong>, tonic::Status> {
        Ok(tonic::Response::new(Pong {
            message: req.into_inner().message,
        }))
    }
}

fn serve(kind: &str, addr: SocketAddr, workers: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        match kind {
            "bare-hyper" => bare_hyper(addr).await,
            // axum's own server with the same route and no layers: what the router costs.
            "axum" => {
                let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
                let router = Router::new().route("/", get(|| async { "ok" }));
                axum::serve(listener, router).await.expect("axum");
            }
            "bare-tonic" => {
                tonic::transport::Server::builder()
                    .add_service(EchoServer::new(Trivial))
                    .serve(addr)
                    .await
                    .expect("tonic");
            }
            "truss-http" | "truss-grpc" | "truss-http-quiet" | "truss-grpc-quiet" => {
                let mut config = truss::Config::<truss::config::NoAppConfig>::default();
                // `-quiet`: the same stack without the access log line per request.
                config.log.access = !kind.ends_with("-quiet");
                // Load shedding stays in the stack (its per-request bookkeeping runs) but may
                // not reject: it reads the host's CPU, which this benchmark saturates on
                // purpose (the load generator included), so it would measure overload
                // protection rather than cost. The overload experiment measures that.
                config.admission.shed.cpu_threshold = 100;
                if let Ok(level) = std::env::var("LOAD_LOG_LEVEL") {
                    config.log.level = level;
                }
                config.http.addr = addr;
                config.grpc.addr = addr;
                config.admin.addr = SocketAddr::from(([127, 0, 0, 1], 0));
                let app = truss::App::builder("bench").config(&config);
                let app = if kind.starts_with("truss-http") {
                    app.http(Router::new().route("/", get(|| async { "ok" })))
                } else {
                    app.grpc(EchoServer::new(Trivial))
                };
                app.run().await.expect("truss");
            }
            other => panic!("unknown server {other}"),
        }
    });
}

async fn bare_hyper(addr: SocketAddr) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"ok"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A server child process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Keeps the load generator off the servers' CPU (the last one).
fn pin_generator() -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 || !has_taskset() {
        return "not pinned".to_owned();
    }
    let list = format!("0-{}", cpus - 2);
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", &list, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        format!("generator on CPU {list}, servers on CPU {}", cpus - 1)
    } else {
        "not pinned".to_owned()
    }
}

async fn start(kind: &str, workers: u64) -> (Server, SocketAddr) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let exe = std::env::current_exe().expect("own path");
    // With two or more CPUs, the server gets the last one to itself and the generator the
    // rest, so neither steals the other's cycles.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cmd = if cpus >= 2 && has_taskset() {
        let mut c = Command::new("taskset");
        c.args(["-c", &(cpus - 1).to_string()]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    let server = Server(
        cmd.args([
            "--serve",
            kind,
            &addr.to_string(),
            "--workers",
            &workers.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server"),
    );
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (server, addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{kind} did not start");
}

// ---------- clients ----------

enum Client {
    Http(http1::SendRequest<Empty<Bytes>>),
    Grpc(EchoClient<tonic::transport::Channel>),
}

impl Client {
    async fn connect(addr: SocketAddr, grpc: bool) -> Client {
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
    async fn call(&mut self) -> Result<(), String> {
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
async fn connect_all(addr: SocketAddr, grpc: bool, conns: usize) -> Vec<Client> {
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

struct Stats {
    rps: f64,
    lat: Vec<u32>, // µs, sorted
    errors: u64,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 * p).ceil() as usize).clamp(1, self.lat.len()) - 1;
        f64::from(self.lat[i])
    }
}

/// Closed loop: `conns` callers, each sending its next request when the last one answered.
async fn closed(addr: SocketAddr, grpc: bool, conns: usize, secs: Duration) -> Stats {
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
    tokio::time::sleep(secs).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    lat.sort_unstable();
    Stats {
        rps: lat.len() as f64 / elapsed.as_secs_f64(),
        lat,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Open loop at `rate` per second: request k is due at `start + k / rate`; caller i sends
/// requests i, i + n, i + 2n, ... each at its due time (or at once when late), and latency
/// counts from the due time, so time spent queued behind a slow answer counts too.
async fn open(addr: SocketAddr, grpc: bool, callers: usize, rate: f64, secs: Duration) -> Stats {
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
                tokio::time::sleep_until(due).await;
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
    }
}

async fn drive(secs: Duration, conns: usize, workers: u64) {
    let pinning = pin_generator();
    println!(
        "closed loop: {conns} callers, {}s measured after 1s warm-up; servers: {workers} worker thread(s) each; {pinning}",
        secs.as_secs()
    );
    println!();
    println!("| server | req/s | p50 | p99 | p99.9 | errors | truss ÷ bare |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut bare_max = [0.0f64; 2];
    for (i, (bare, truss, grpc)) in [
        ("bare-hyper", "truss-http", false),
        ("bare-tonic", "truss-grpc", true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut base = 0.0;
        let quiet = format!("{truss}-quiet");
        let kinds: Vec<&str> = if grpc {
            vec![bare, truss, quiet.as_str()]
        } else {
            vec![bare, "axum", truss, quiet.as_str()]
        };
        for kind in kinds {
            let (_server, addr) = start(kind, workers).await;
            let s = closed(addr, grpc, conns, secs).await;
            let ratio = if kind == bare {
                base = s.rps;
                bare_max[i] = s.rps;
                "—".to_owned()
            } else {
                format!("{:.1} %", 100.0 * s.rps / base)
            };
            println!(
                "| {kind} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {} | {ratio} |",
                s.rps,
                s.pct(0.50),
                s.pct(0.99),
                s.pct(0.999),
                s.errors
            );
        }
    }
    println!();
    println!(
        "open loop at 50 % of the bare maximum, {}s each:",
        secs.as_secs()
    );
    println!();
    println!("| server | offered req/s | p50 | p99 | added p50 | added p99 | errors |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (i, (bare, truss, grpc)) in [
        ("bare-hyper", "truss-http", false),
        ("bare-tonic", "truss-grpc", true),
    ]
    .into_iter()
    .enumerate()
    {
        let rate = bare_max[i] * 0.5;
        let mut base = (0.0, 0.0);
        for kind in [bare, truss] {
            let (_server, addr) = start(kind, workers).await;
            // Enough callers that the generator never caps the offered rate (HTTP/1.1 has one
            // request per connection in flight).
            let callers = conns * 8;
            // Warm up connections and caches.
            let _ = open(addr, grpc, callers, rate, Duration::from_secs(1)).await;
            let s = open(addr, grpc, callers, rate, secs).await;
            let (p50, p99) = (s.pct(0.50), s.pct(0.99));
            let added = if kind == bare {
                base = (p50, p99);
                ("—".to_owned(), "—".to_owned())
            } else {
                (
                    format!("{:+.0} µs", p50 - base.0),
                    format!("{:+.0} µs", p99 - base.1),
                )
            };
            println!(
                "| {kind} | {rate:.0} | {p50:.0} µs | {p99:.0} µs | {} | {} | {} |",
                added.0, added.1, s.errors
            );
        }
    }
}
