//! Whole-server instructions per request: each server runs under valgrind's callgrind (all
//! its threads counted: hyper, the stack, the log writer, timers), one connection sends
//! [`WARM_UP`] requests, callgrind's counters are dumped and reset (`callgrind_control
//! --dump`), [`REQUESTS`] more are sent one after the other and dumped, and then the server
//! sits idle for as long as those took and is dumped once more: what its background tasks
//! (CPU sampling, metrics upkeep) did in that idle window is taken off, and the rest is
//! divided by the number of requests. Unlike times on this shared machine, the counts
//! repeat to within about 2 %, so the rows compare servers closely; what they leave out is
//! the kernel (system calls, wake-ups), which the load run's CPU figures include.
//!
//! ```sh
//! cargo run --release -p truss-benches --bin load -- --instructions
//! ```
//!
//! With `LOAD_CALLGRIND_DIR=<dir>` the profiles stay in that directory (`<server>.callgrind.2`
//! is the counted window, `.3` the idle one) for `callgrind_annotate --inclusive=yes`, which
//! is how the README's table of where the remaining cost goes was made.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::clients::Client;

/// Requests served before counting (connection set-up, first-request work).
const WARM_UP: u64 = 200;
/// Requests counted.
const REQUESTS: u64 = 1_000;

/// The servers measured, in print order, with whether they speak gRPC.
const KINDS: &[(&str, bool)] = &[
    ("bare-hyper", false),
    ("axum", false),
    ("axum-stack", false),
    ("truss-http", false),
    ("truss-http-quiet", false),
    ("bare-tonic", true),
    ("truss-grpc", true),
    ("truss-grpc-quiet", true),
];

/// Prints the table; servers whose name does not contain one of `filters` are skipped.
pub async fn run(filters: &[String]) {
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("instructions: valgrind not found (Debian: apt-get install valgrind); skipped");
        return;
    }
    let dir = Profiles::new();
    println!(
        "whole-server instructions per request (callgrind, all threads, {REQUESTS} sequential \
         requests on one connection after {WARM_UP}; the kernel is not counted)"
    );
    println!();
    println!("| server | instructions / request | ÷ bare |");
    println!("| --- | --- | --- |");
    let mut bare = [None, None];
    for &(kind, grpc) in KINDS {
        if !filters.is_empty() && !filters.iter().any(|f| kind.contains(f.as_str())) {
            continue;
        }
        let Some(count) = measure(kind, grpc, dir.path()).await else {
            println!("| {kind} | failed | |");
            continue;
        };
        let base = &mut bare[usize::from(grpc)];
        // Only a bare server is a baseline (it may be filtered out or have failed).
        let ratio = if kind.starts_with("bare-") {
            *base = Some(count);
            "—".to_owned()
        } else {
            base.map_or("n/a".to_owned(), |b| {
                format!("{:.2}", count as f64 / b as f64)
            })
        };
        println!("| {kind} | {count} | {ratio} |");
    }
}

/// Where the profiles are written: a temporary directory, or `LOAD_CALLGRIND_DIR`, kept.
enum Profiles {
    Temporary(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl Profiles {
    fn new() -> Self {
        match std::env::var_os("LOAD_CALLGRIND_DIR") {
            Some(dir) => {
                let dir = std::path::PathBuf::from(dir);
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    panic!("LOAD_CALLGRIND_DIR={}: {e}", dir.display());
                }
                Profiles::Kept(dir)
            }
            None => Profiles::Temporary(tempfile::tempdir().expect("temporary directory")),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Profiles::Temporary(dir) => dir.path(),
            Profiles::Kept(dir) => dir,
        }
    }
}

/// Instructions per request of `kind`, or `None` when a step failed (said on stderr).
async fn measure(kind: &str, grpc: bool, dir: &Path) -> Option<u64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let out = dir.join(format!("{kind}.callgrind"));
    let log = std::fs::File::create(dir.join(format!("{kind}.log"))).ok()?;
    let mut child = Command::new("valgrind")
        .args(["--tool=callgrind", "--dump-instr=no"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::env::current_exe().ok()?)
        .args(["--serve", kind, &addr.to_string(), "--workers", "1"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().ok()?)
        .stderr(log)
        .spawn()
        .ok()?;
    let result = drive(kind, grpc, addr, child.id(), &out).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Warms up, dumps, counts, dumps, and reads the second dump's total.
async fn drive(kind: &str, grpc: bool, addr: SocketAddr, pid: u32, out: &Path) -> Option<u64> {
    let mut started = false;
    for _ in 0..1200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !started {
        eprintln!("{kind}: did not start under valgrind");
        return None;
    }
    let mut client = Client::connect(addr, grpc).await;
    send(&mut client, WARM_UP).await?;
    // Let start-up stragglers (the first metrics scrape, timers) settle before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    dump(pid)?;
    let began = std::time::Instant::now();
    send(&mut client, REQUESTS).await?;
    let took = began.elapsed();
    dump(pid)?;
    tokio::time::sleep(took).await;
    dump(pid)?;
    // callgrind appends the dump's number to the file name.
    let busy = total(out, 2)?;
    let idle = total(out, 3)?;
    Some(busy.saturating_sub(idle) / REQUESTS)
}

/// The instruction total of dump `n`.
fn total(out: &Path, n: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{}.{n}", out.display())).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or(l.strip_prefix("totals:")))?
        .trim()
        .parse()
        .ok()
}

async fn send(client: &mut Client, n: u64) -> Option<()> {
    for _ in 0..n {
        if let Err(e) = client.call().await {
            eprintln!("request failed: {e}");
            return None;
        }
    }
    Some(())
}

/// Asks callgrind in process `pid` to write its counters and reset them; gives up after
/// 60 s (`callgrind_control` goes through `vgdb`, which can hang where ptrace is limited).
fn dump(pid: u32) -> Option<()> {
    let mut child = Command::new("callgrind_control")
        .args(["--dump", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().ok()? {
            return status.success().then_some(());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("callgrind_control --dump {pid} did not return within 60 s");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
