//! Per-layer cost as instruction counts (valgrind's callgrind), which do not move with the
//! load on a shared machine the way times do.
//!
//! ```sh
//! cargo bench -p truss-benches --bench instructions
//! ```
//!
//! For each variant of the layer benchmark (each layer alone on a one-route router, the
//! stacks, and the pass-through baseline) this binary runs itself under callgrind, serves
//! [`WARM_UP`] requests, then [`REQUESTS`] more inside `measured_requests`, the only function
//! callgrind counts (`--collect-atstart=no --toggle-collect`): start-up, and the clock
//! calibration some crates run once, whose length varies, stay out. Allocations per request
//! come from the counting allocator over the same requests. Rows marked `+ subscriber`
//! install the app's own log subscriber writing to a file, as a deployment does; the lines
//! are formatted on the request's thread (counted) and written by the log thread (not
//! counted).

use std::hint::black_box;
use std::process::{Command, Stdio};

use axum::body::Body;
use tower::{Service, ServiceExt};
use truss_benches::variants::{request, variants};
use truss_benches::{CountingAlloc, allocations};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Requests served before measuring (first-request set-up).
const WARM_UP: u64 = 100;
/// Requests measured.
const REQUESTS: u64 = 1_000;

/// The variants measured, with and without the app's subscriber.
const ROWS: &[(&str, bool)] = &[
    ("passthrough", false),
    ("noop_layer", false),
    ("inflight", false),
    ("ratelimit_global", false),
    ("ratelimit_route_ip", false),
    ("shed_cpu_low", false),
    ("breaker_adaptive", false),
    ("breaker_open_rejects", false),
    ("deadline", false),
    ("metrics", false),
    ("trace", false),
    ("trace_access_log", false),
    ("admission_stack", false),
    ("full_stack_no_access_log", false),
    ("full_default_stack", false),
    ("trace_access_log", true),
    ("full_stack_no_access_log", true),
    ("full_default_stack", true),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let name = args.get(i + 1).map_or("passthrough", String::as_str);
        let n = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(REQUESTS);
        let subscriber = args.iter().any(|a| a == "--subscriber");
        child(name, n, subscriber);
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("instructions: valgrind not found (Debian: apt-get install valgrind); skipped");
        return;
    }
    drive();
}

/// Serves `n` requests through variant `name` and prints the allocations it made.
fn child(name: &str, n: u64, subscriber: bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _prometheus = truss::observe::metrics::install();
    let guard = subscriber.then(|| {
        let _enter = rt.enter();
        truss::observe::log::init(
            &truss::config::LogConfig::default(),
            &truss::observe::otel::TraceConfig::default(),
            "bench",
            "0",
        )
        .expect("subscriber")
    });
    let (_, router) = variants()
        .into_iter()
        .find(|(v, _)| *v == name)
        .expect("variant");
    let mut svc = router.into_service::<Body>();
    rt.block_on(serve(&mut svc, WARM_UP));
    let before = allocations();
    measured_requests(&rt, &mut svc, n);
    eprintln!("allocations: {}", allocations() - before);
    if let Some(guard) = guard {
        rt.block_on(guard.shutdown());
    }
}

/// The only function callgrind counts.
#[inline(never)]
fn measured_requests(rt: &tokio::runtime::Runtime, svc: &mut Svc, n: u64) {
    rt.block_on(serve(svc, n));
}

type Svc = axum::routing::RouterIntoService<Body>;

async fn serve(svc: &mut Svc, n: u64) {
    for _ in 0..n {
        let resp = svc.ready().await.expect("ready").call(request()).await;
        black_box(resp.expect("response"));
    }
}

/// Instructions and allocations of one child run.
fn measure(name: &str, n: u64, subscriber: bool) -> Option<(u64, u64)> {
    let exe = std::env::current_exe().ok()?;
    let log = std::env::temp_dir().join(format!("truss-instructions-{}.log", std::process::id()));
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        "--collect-atstart=no",
        "--toggle-collect=*measured_requests*",
    ])
    .arg(exe)
    .args(["--child", name, &n.to_string()]);
    if subscriber {
        cmd.arg("--subscriber");
    }
    let out = cmd
        .stdout(std::fs::File::create(&log).ok()?)
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&log);
    let text = String::from_utf8_lossy(&out.stderr);
    let number = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.contains(key))?;
        line.rsplit(':')
            .next()?
            .trim()
            .replace(',', "")
            .parse()
            .ok()
    };
    Some((number("Collected")?, number("allocations")?))
}

fn drive() {
    println!(
        "instructions per request (callgrind, {REQUESTS} requests after {WARM_UP}; Δ = over pass-through)"
    );
    println!();
    println!(
        "| variant | instructions / request | Δ instructions | allocations / request | Δ allocations |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let mut base = None;
    for &(name, subscriber) in ROWS {
        let Some((ins, allocs)) = measure(name, REQUESTS, subscriber) else {
            println!("| {name} | (valgrind run failed) | | | |");
            continue;
        };
        let (ins, allocs) = (
            ins as f64 / REQUESTS as f64,
            allocs as f64 / REQUESTS as f64,
        );
        let (b_ins, b_allocs) = *base.get_or_insert((ins, allocs));
        let label = if subscriber {
            format!("{name} + subscriber")
        } else {
            name.to_owned()
        };
        println!(
            "| {label} | {ins:.0} | {:+.0} | {allocs:.2} | {:+.2} |",
            ins - b_ins,
            allocs - b_allocs
        );
    }
}
