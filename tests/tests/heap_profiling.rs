//! Heap profiling on the admin listener, read by `go tool pprof`: this test binary makes
//! jemalloc its global allocator with profiling on (the two statics the module docs of
//! `truss::observe::profile` give), keeps 64 MiB alive from a function with a distinctive
//! name, and finds that function in `/debug/pprof/heap`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tokio::net::TcpStream;
use truss::App;
use truss::observe::profile::proto::Profile;
use truss_tests::local_config;

#[global_allocator]
static ALLOC: truss::observe::profile::Jemalloc = truss::observe::profile::Jemalloc;

/// Read by jemalloc before `main`: profiling on from the start, one sample per 512 KiB.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 45] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

/// 64 blocks of 1 MiB, kept alive by the caller: every block is sampled.
#[inline(never)]
fn retain_for_heap_profile() -> Vec<Vec<u8>> {
    (0..64u8).map(|i| vec![i | 1; 1 << 20]).collect()
}

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

#[tokio::test]
async fn a_heap_profile_names_the_function_holding_memory() {
    if !Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        panic!("`go` is needed for `go tool pprof`: run scripts/setup.sh (Debian's golang-go)");
    }
    let held = retain_for_heap_profile();
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.admin.profiling = true;
    let running = App::builder("heap").config(&config).start().await.unwrap();

    let (status, headers, body) = fetch(running.admin_addr(), "/debug/pprof/heap").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    let profile = Profile::decode(body.clone()).expect("a perftools.profiles.Profile");
    let types: Vec<_> = profile
        .sample_type
        .iter()
        .map(|t| (profile.string(t.r#type), profile.string(t.unit)))
        .collect();
    assert_eq!(types, [("inuse_space", "bytes")]);
    assert!(!profile.sample.is_empty(), "no sampled allocation");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("heap.pb");
    std::fs::write(&file, &body).unwrap();
    let out = Command::new("go")
        .args(["tool", "pprof", "-traces"])
        .arg(std::env::current_exe().unwrap())
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
    assert!(stdout.contains("Type: inuse_space"), "{stdout}");
    assert!(
        stdout.contains("retain_for_heap_profile"),
        "the function holding 64 MiB is not in the heap profile:\n{stdout}\n{stderr}"
    );

    drop(held);
    running.shutdown().await.unwrap();
}
