//! The overload experiment: does adaptive shedding keep goodput up when offered far more
//! than the service can do?
//!
//! ```sh
//! cargo run --release -p truss-benches --bin overload            # defaults
//! cargo run --release -p truss-benches --bin overload -- --phase-secs 15 --work-us 20000
//! ```
//!
//! On a 2-core machine the load generator and the server share the CPU, so the server runs
//! one worker thread and the shedder's threshold defaults to 45 % (`--cpu-threshold`): with
//! no container quota here, the CPU figure is the host's, of which the server can own about
//! half. The handler defaults to 20 ms of CPU so that the cost of rejecting a request
//! (parsing it, answering 503) stays small next to serving one; with 5 ms handlers at 5×
//! the rejections themselves eat a large share of the single worker.
//!
//! It serves a CPU-bound handler (`--work-us` of busy CPU per request, yielding every
//! 100 µs) with truss in a child
//! process, finds the knee capacity C with closed-loop load, then offers 1×, 2× and 5× C
//! open-loop (fixed rate, each request with its own deadline), once with shedding on and once
//! off, and prints goodput: responses that are 200 and within `--slo-ms`, per second.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

struct Args {
    phase: Duration,
    cpu_threshold: u64,
    work: Duration,
    slo: Duration,
}

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        let shed = args.get(2).map(String::as_str) == Some("on");
        let work = Duration::from_micros(arg("--work-us").unwrap_or(20000));
        let threshold = arg("--cpu-threshold").unwrap_or(45) as u32;
        serve(shed, work, threshold);
        return;
    }
    let args = Args {
        phase: Duration::from_secs(arg("--phase-secs").unwrap_or(10)),
        cpu_threshold: arg("--cpu-threshold").unwrap_or(45),
        work: Duration::from_micros(arg("--work-us").unwrap_or(20000)),
        slo: Duration::from_millis(arg("--slo-ms").unwrap_or(250)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(args));
}

/// The server: truss with a CPU-bound route, shedding on or off, everything else default.
fn serve(shed: bool, work: Duration, cpu_threshold: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut config = truss::Config::<truss::config::NoAppConfig>::default();
        config.http.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.admin.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.admission.max_in_flight = 0;
        config.admission.shed.enabled = shed;
        config.admission.shed.cpu_threshold = cpu_threshold;
        let router = Router::new().route(
            "/work",
            get(move || async move {
                // CPU-bound, but cooperative: it yields every 100 µs of work, as a
                // well-behaved async handler does (a handler that never yields holds its
                // worker thread, and requests queue in the runtime before any layer sees
                // them).
                let mut done = Duration::ZERO;
                let mut x = 0u64;
                while done < work {
                    let slice = Instant::now();
                    while slice.elapsed() < Duration::from_micros(100) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                    done += slice.elapsed();
                    tokio::task::yield_now().await;
                }
                "done"
            }),
        );
        let running = truss::App::builder("overload")
            .config(&config)
            .http(router)
            .start()
            .await
            .expect("start");
        println!("ADDR {}", running.http_addr().expect("http"));
        running.wait().await.expect("run");
    });
}

struct Server(Child, SocketAddr);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(shed: bool, work: Duration, cpu_threshold: u64) -> Server {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["--serve", if shed { "on" } else { "off" }])
        .args(["--work-us", &work.as_micros().to_string()])
        .args(["--cpu-threshold", &cpu_threshold.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("ADDR "))
        .expect("server address");
    let addr = line[5..].parse().expect("address");
    Server(child, addr)
}

/// A few HTTP/2 connections, used round-robin.
#[derive(Clone)]
struct Pool {
    conns: Arc<Vec<http2::SendRequest<Empty<Bytes>>>>,
    next: Arc<AtomicU64>,
}

impl Pool {
    async fn connect(addr: SocketAddr, n: usize) -> Pool {
        let mut conns = Vec::new();
        for _ in 0..n {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(TokioIo::new(stream))
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            conns.push(send);
        }
        Pool {
            conns: Arc::new(conns),
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    /// One request; its status (None on error/timeout) and latency.
    async fn get(&self, timeout: Duration) -> (Option<StatusCode>, Duration) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize % self.conns.len();
        let mut send = self.conns[i].clone();
        let start = Instant::now();
        let fut = async {
            send.ready().await.ok()?;
            let req = Request::get("http://localhost/work")
                .body(Empty::new())
                .ok()?;
            let resp = send.send_request(req).await.ok()?;
            let status = resp.status();
            resp.into_body().collect().await.ok()?;
            Some(status)
        };
        let status = tokio::time::timeout(timeout, fut).await.ok().flatten();
        (status, start.elapsed())
    }
}

#[derive(Default)]
struct Tally {
    sent: u64,
    ok: u64,
    good: u64,
    shed: u64,
    failed: u64,
    latencies: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, status: Option<StatusCode>, latency: Duration, slo: Duration) {
        match status {
            Some(StatusCode::OK) => {
                self.ok += 1;
                if latency <= slo {
                    self.good += 1;
                }
                self.latencies.push(latency);
            }
            Some(StatusCode::SERVICE_UNAVAILABLE) => self.shed += 1,
            _ => self.failed += 1,
        }
    }

    fn percentile(&mut self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

/// Closed loop: `concurrency` workers, each sending back-to-back for `dur`.
async fn closed_loop(pool: &Pool, concurrency: usize, dur: Duration, slo: Duration) -> Tally {
    let deadline = Instant::now() + dur;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while Instant::now() < deadline {
                let (s, l) = pool.get(Duration::from_secs(5)).await;
                t.sent += 1;
                t.add(s, l, slo);
            }
            t
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let t = task.await.expect("worker");
        total.sent += t.sent;
        total.ok += t.ok;
        total.good += t.good;
        total.shed += t.shed;
        total.failed += t.failed;
        total.latencies.extend(t.latencies);
    }
    total
}

/// Open loop: `rate` requests per second for `dur`, each with a 2 × SLO deadline.
async fn open_loop(pool: &Pool, rate: f64, dur: Duration, slo: Duration) -> Tally {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while start.elapsed() < dur {
        ticker.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            sent += 1;
            let pool = pool.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(pool.get(slo * 2).await);
            });
        }
    }
    drop(tx);
    let mut tally = Tally {
        sent,
        ..Tally::default()
    };
    while let Some((s, l)) = rx.recv().await {
        tally.add(s, l, slo);
    }
    tally
}

async fn run(args: Args) {
    println!(
        "overload experiment: handler = {:?} of CPU, SLO = {:?}, {:?} per phase, {} cores",
        args.work,
        args.slo,
        args.phase,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Knee: the most closed-loop throughput within the SLO, over a few concurrencies.
    let server = spawn_server(false, args.work, args.cpu_threshold);
    let pool = Pool::connect(server.1, 8).await;
    let mut capacity: f64 = 0.0;
    for concurrency in [1, 2, 4, 8, 16] {
        let dur = Duration::from_secs(2);
        let mut t = closed_loop(&pool, concurrency, dur, args.slo).await;
        let rps = t.good as f64 / dur.as_secs_f64();
        println!(
            "  closed loop, concurrency {concurrency:>2}: {rps:>7.0} good req/s, p99 {:?}",
            t.percentile(0.99)
        );
        capacity = capacity.max(rps);
    }
    drop(pool);
    drop(server);
    println!("knee capacity C = {capacity:.0} req/s\n");

    println!(
        "{:>7} {:>8} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>10}",
        "offered",
        "shedding",
        "sent/s",
        "200/s",
        "goodput/s",
        "goodput/C",
        "503/s",
        "failed/s",
        "p99 (200)"
    );
    for shed in [true, false] {
        // One server per mode, load rising 1x -> 2x -> 5x as it does in production: the
        // shedder's capacity estimate rests on the history the lighter phases give it.
        let server = spawn_server(shed, args.work, args.cpu_threshold);
        let pool = Pool::connect(server.1, 8).await;
        for factor in [1.0, 2.0, 5.0] {
            let secs = args.phase.as_secs_f64();
            let mut t = open_loop(&pool, capacity * factor, args.phase, args.slo).await;
            println!(
                "{:>6.0}x {:>8} {:>9.0} {:>9.0} {:>10.0} {:>8.0}% {:>9.0} {:>9.0} {:>10.1?}",
                factor,
                if shed { "on" } else { "off" },
                t.sent as f64 / secs,
                t.ok as f64 / secs,
                t.good as f64 / secs,
                100.0 * t.good as f64 / secs / capacity.max(1.0),
                t.shed as f64 / secs,
                t.failed as f64 / secs,
                t.percentile(0.99)
            );
        }
    }
}
