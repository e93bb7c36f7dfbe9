//! CPU profiling on the admin listener, read by a real pprof reader: an app under load, with
//! `admin.profiling = true`, hands out a 2 s profile that `go tool pprof` (Debian's
//! `golang-go`, installed by `scripts/setup.sh`) parses and whose top functions name the
//! handler's busy function; the flamegraph SVG names it too. With `admin.profiling = false`
//! the endpoints do not exist.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::net::TcpStream;
use truss::App;
use truss::observe::profile::proto::Profile;
use truss_tests::{H1, local_config};

/// The function the profile must name: xorshift rounds, plain arithmetic that stays in this
/// frame even unoptimized, so samples land here rather than in callees.
#[inline(never)]
fn busy_handler_for_profile(rounds: u32) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut i = 0;
    while i < rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i += 1;
    }
    x
}

async fn busy() -> String {
    busy_handler_for_profile(500_000).to_string()
}

/// `GET path` on a fresh HTTP/1.1 connection: status, headers and the body as bytes (a
/// profile is binary).
async fn fetch(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, Bytes) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get(path)
        .header(header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (parts, body) = send.send_request(request).await.unwrap().into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// Keeps `clients` connections busy with `GET /busy` until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

impl Load {
    fn start(http: SocketAddr, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut conn = H1::connect(http).await.unwrap();
                    let mut served = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let (status, _) = conn.get("/busy").await.unwrap();
                        assert_eq!(status, StatusCode::OK);
                        served += 1;
                    }
                    served
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut served = 0;
        for task in self.tasks {
            served += task.await.unwrap();
        }
        served
    }
}

/// `go`, or a failure saying how to get it: this test never skips.
fn go() -> Command {
    match Command::new("go").arg("version").output() {
        Ok(out) if out.status.success() => Command::new("go"),
        other => panic!(
            "`go` is needed to read the profile with `go tool pprof` ({other:?}): run \
             scripts/setup.sh (it installs Debian's golang-go)"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_profile_under_load_names_the_handler_in_go_tool_pprof() {
    let mut go = go();
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.admin.profiling = true;
    let running = App::builder("profiled")
        .config(&config)
        .http(Router::new().route("/busy", get(busy)))
        .start()
        .await
        .unwrap();
    let admin = running.admin_addr();
    let load = Load::start(running.http_addr().unwrap(), 3);

    let (status, headers, body) = fetch(admin, "/debug/pprof/profile?seconds=2").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");

    // Our own reading first: the message decodes and has what pprof readers rely on.
    let profile = Profile::decode(body.clone()).expect("a perftools.profiles.Profile");
    assert_eq!(profile.string_table[0], "");
    let types: Vec<_> = profile
        .sample_type
        .iter()
        .map(|t| (profile.string(t.r#type), profile.string(t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    assert!(!profile.sample.is_empty(), "no samples under load");
    assert!(profile.duration_nanos >= 2_000_000_000);

    // Then a real reader, with the binary named as one would by hand.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cpu.pb");
    std::fs::write(&file, &body).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = go
        .args(["tool", "pprof", "-top", "-nodecount=30"])
        .arg(&exe)
        .arg(&file)
        .env("PPROF_TMPDIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "go tool pprof failed:\n{stderr}\n{stdout}"
    );
    assert!(stdout.contains("Type: cpu"), "{stdout}");
    // `-top` lists functions by flat (own) CPU time after a header ending in the column
    // names; the handler's function does the work, so it is among the first rows.
    let rows: Vec<&str> = stdout
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("flat"))
        .skip(1)
        .collect();
    assert!(
        rows.iter()
            .take(5)
            .any(|row| row.contains("busy_handler_for_profile")),
        "the handler's function is not among the top 5 of go tool pprof -top:\n{stdout}\n{stderr}"
    );

    // The flamegraph, taken while the load still runs.
    let (status, headers, body) = fetch(admin, "/debug/pprof/flamegraph?seconds=1").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
    let svg = String::from_utf8(body.to_vec()).unwrap();
    assert!(svg.contains("<svg"), "not an SVG");
    assert!(
        svg.contains("busy_handler_for_profile"),
        "the flamegraph misses the handler"
    );

    assert!(load.stop().await > 0);

    // Heap profiles need jemalloc as this binary's allocator, which it is not: a clear 501.
    let (status, _, body) = fetch(admin, "/debug/pprof/heap").await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert!(body.contains("global_allocator"), "{body}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_endpoints_do_not_exist_unless_admin_profiling_is_on() {
    let config = local_config(Duration::ZERO, Duration::from_secs(5));
    assert!(!config.admin.profiling, "off by default");
    let running = App::builder("unprofiled")
        .config(&config)
        .start()
        .await
        .unwrap();
    for path in [
        "/debug/pprof/profile?seconds=1",
        "/debug/pprof/flamegraph?seconds=1",
        "/debug/pprof/heap",
    ] {
        let (status, _, _) = fetch(running.admin_addr(), path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    running.shutdown().await.unwrap();
}
