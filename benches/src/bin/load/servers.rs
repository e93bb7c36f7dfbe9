//! The server side of the load harness: each kind of server, started as a child process
//! pinned to its own CPU, with its output in a file, its CPU time and memory readable.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::pb::echo_server::{Echo, EchoServer};
use crate::pb::{Ping, Pong};

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

pub fn serve(kind: &str, addr: SocketAddr, workers: usize) {
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
            "axum-stack" => axum_stack(addr).await,
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

/// A server child process writing its output to a file, killed when dropped.
pub struct Server {
    child: Child,
    log: std::path::PathBuf,
}

impl Server {
    /// The server's CPU time so far (user + system, all threads).
    pub fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// The server's resident memory.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// This process's CPU time so far (the load generator's).
pub fn own_cpu() -> Duration {
    cpu_of("/proc/self/stat")
}

/// User + system time from a `/proc/<pid>/stat` file (fields 14 and 15, in clock ticks).
fn cpu_of(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 3, so utime (14) and stime (15) are at 11, 12.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros((ticks(11) + ticks(12)) * 1_000_000 / hz)
}

/// Whether `taskset` runs here, asked once (the open loop asks before every send).
pub fn has_taskset() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The CPUs this machine gives the harness, read once: after [`pin_generator`] pins this
/// process, `available_parallelism` would answer 1 (it follows the affinity mask), and the
/// servers, started with that answer, would share the generator's CPU.
pub fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Whether the servers run on a CPU of their own, apart from the generator (what
/// [`start`] does with two or more CPUs and `taskset`).
pub fn servers_have_own_cpu() -> bool {
    cpus() >= 2 && has_taskset()
}

/// Keeps the load generator off the servers' CPU (the last one): pins this process to every
/// CPU but the last, which the servers get; returns a line saying where each runs.
pub fn pin_generator() -> String {
    let cpus = cpus();
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

pub async fn start(kind: &str, workers: u64) -> (Server, SocketAddr) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let exe = std::env::current_exe().expect("own path");
    // With two or more CPUs, the server gets the last one to itself and the generator the
    // rest, so neither steals the other's cycles.
    let cpus = cpus();
    let mut cmd = if cpus >= 2 && has_taskset() {
        let mut c = Command::new("taskset");
        c.args(["-c", &(cpus - 1).to_string()]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    // Output goes to a file, as a deployed service's stdout would.
    let log = std::env::temp_dir().join(format!("truss-load-{kind}-{}.log", std::process::id()));
    let file = std::fs::File::create(&log).expect("server log file");
    let err = file.try_clone().expect("server log file");
    let child = cmd
        .args([
            "--serve",
            kind,
            &addr.to_string(),
            "--workers",
            &workers.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .expect("spawn server");
    let server = Server { child, log };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (server, addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{kind} did not start");
}

/// The hand-built alternative: axum with tower-http's trace layer (a span per request with a
/// request id, an INFO line per response), a timeout, a concurrency limit and Prometheus
/// metrics per route, logging through the same non-blocking writer as truss.
async fn axum_stack(addr: SocketAddr) {
    use axum::extract::{MatchedPath, Request};
    use axum::middleware::{self, Next};
    use tower_http::request_id::{MakeRequestId, RequestId, SetRequestIdLayer};
    use tower_http::trace::{DefaultOnResponse, TraceLayer};

    #[derive(Clone, Default)]
    struct RandomId;
    impl MakeRequestId for RandomId {
        fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
            let id = format!("{:032x}", rand_u128());
            http::HeaderValue::from_str(&id).ok().map(RequestId::new)
        }
    }

    async fn metered(req: Request, next: Next) -> axum::response::Response {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
        let start = std::time::Instant::now();
        let resp = next.run(req).await;
        let status = resp.status().as_u16().to_string();
        metrics::counter!("http_requests_total", "route" => route.clone(), "status" => status)
            .increment(1);
        metrics::histogram!("http_request_duration_seconds", "route" => route)
            .record(start.elapsed().as_secs_f64());
        resp
    }

    let (writer, _thread) =
        truss::observe::log::NonBlocking::new(std::io::stdout(), truss::observe::log::BUFFER_BYTES);
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
    let _prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .route_layer(middleware::from_fn(metered))
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(RandomId))
                .layer(
                    TraceLayer::new_for_http()
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    http::StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(30),
                ))
                .layer(tower::limit::ConcurrencyLimitLayer::new(10_000)),
        );
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    axum::serve(listener, router).await.expect("axum");
}

/// A random-enough id without a dependency: the std hasher is seeded per process.
fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut h = state.build_hasher();
    h.write_u64(0);
    let a = h.finish();
    h.write_u64(1);
    (u128::from(a) << 64) | u128::from(h.finish())
}
