//! Per-layer cost as instruction counts (valgrind's callgrind), which do not move with the
//! load on a shared machine the way times do.
//!
//! ```sh
//! cargo bench -p truss-benches --bench instructions
//! cargo bench -p truss-benches --bench instructions -- auth   # rows whose name contains `auth`
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
//!
//! Arguments after `--` keep only the rows whose name contains one of them (the pass-through
//! baseline is always measured). The `auth_verify_*` rows count one `Verifier::verify` of a
//! valid token per algorithm ([`REQUESTS`] of them after [`WARM_UP`], inside
//! `measured_verifications`, all in one `block_on`); the `full_stack_auth_*` rows send a
//! valid HS256 bearer token with every request.

use std::hint::black_box;
use std::process::{Command, Stdio};

use axum::body::Body;
use http::Request;
use tower::{Service, ServiceExt};
use truss::auth::Verifier;
use truss_benches::auth::{ALGORITHMS, request_with_token};
use truss_benches::variants::{request, sends_token, variants};
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
    ("full_stack_auth_off", false),
    ("full_stack_auth_hs256", false),
    ("trace_access_log", true),
    ("full_stack_no_access_log", true),
    ("full_default_stack", true),
    ("full_stack_auth_off", true),
    ("full_stack_auth_hs256", true),
];

/// The prefix of the verification rows' names (`auth_verify_HS256`).
const VERIFY: &str = "auth_verify_";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--verify") {
        let alg = args.get(i + 1).map_or("HS256", String::as_str);
        let n = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(REQUESTS);
        child_verify(alg, n);
        return;
    }
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
    // `cargo bench` adds `--bench`; everything else not starting with `--` is a filter.
    let filters: Vec<&str> = args[1..]
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    drive(&filters);
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
    // Each request function is its own type: the loop is the same code as before there
    // were two, with no indirect call.
    if sends_token(name) {
        rt.block_on(serve(&mut svc, WARM_UP, request_with_token));
        let before = allocations();
        measured_requests(&rt, &mut svc, n, request_with_token);
        eprintln!("allocations: {}", allocations() - before);
    } else {
        rt.block_on(serve(&mut svc, WARM_UP, request));
        let before = allocations();
        measured_requests(&rt, &mut svc, n, request);
        eprintln!("allocations: {}", allocations() - before);
    }
    if let Some(guard) = guard {
        rt.block_on(guard.shutdown());
    }
}

/// The only function callgrind counts (no closure or async block inside: the toggle would
/// match it too and turn counting off).
#[inline(never)]
fn measured_requests<R: Fn() -> Request<Body>>(
    rt: &tokio::runtime::Runtime,
    svc: &mut Svc,
    n: u64,
    request: R,
) {
    rt.block_on(serve(svc, n, request));
}

type Svc = axum::routing::RouterIntoService<Body>;

async fn serve<R: Fn() -> Request<Body>>(svc: &mut Svc, n: u64, request: R) {
    for _ in 0..n {
        let resp = svc.ready().await.expect("ready").call(request()).await;
        black_box(resp.expect("response"));
    }
}

/// Verifies `n` valid `alg` tokens and prints the allocations it made.
fn child_verify(alg: &str, n: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let verifier = truss_benches::auth::verifier(alg);
    let token = truss_benches::auth::token(alg);
    rt.block_on(verify(&verifier, &token, WARM_UP));
    let before = allocations();
    measured_verifications(&rt, &verifier, &token, n);
    eprintln!("allocations: {}", allocations() - before);
}

/// The only function callgrind counts in a verification run.
#[inline(never)]
fn measured_verifications(rt: &tokio::runtime::Runtime, verifier: &Verifier, token: &str, n: u64) {
    rt.block_on(verify(verifier, token, n));
}

async fn verify(verifier: &Verifier, token: &str, n: u64) {
    for _ in 0..n {
        let who = verifier.verify(black_box(token)).await;
        black_box(who.expect("a valid token"));
    }
}

/// Instructions and allocations of one child run of variant `name`.
fn measure(name: &str, n: u64, subscriber: bool) -> Option<(u64, u64)> {
    let mut args = vec!["--child".to_owned(), name.to_owned(), n.to_string()];
    if subscriber {
        args.push("--subscriber".to_owned());
    }
    run_child(&args, "measured_requests")
}

/// Instructions and allocations of one child run (`args`), counting only inside `function`.
fn run_child(args: &[String], function: &str) -> Option<(u64, u64)> {
    let exe = std::env::current_exe().ok()?;
    let log = std::env::temp_dir().join(format!("truss-instructions-{}.log", std::process::id()));
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        "--collect-atstart=no",
        &format!("--toggle-collect=*{function}*"),
    ])
    .arg(exe)
    .args(args);
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

fn drive(filters: &[&str]) {
    let selected = |label: &str| filters.is_empty() || filters.iter().any(|f| label.contains(f));
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
        let label = if subscriber {
            format!("{name} + subscriber")
        } else {
            name.to_owned()
        };
        // The first row, the pass-through baseline, is always measured.
        if base.is_some() && !selected(&label) {
            continue;
        }
        let Some((ins, allocs)) = measure(name, REQUESTS, subscriber) else {
            println!("| {name} | (valgrind run failed) | | | |");
            continue;
        };
        let (ins, allocs) = (
            ins as f64 / REQUESTS as f64,
            allocs as f64 / REQUESTS as f64,
        );
        let (b_ins, b_allocs) = *base.get_or_insert((ins, allocs));
        println!(
            "| {label} | {ins:.0} | {:+.0} | {allocs:.2} | {:+.2} |",
            ins - b_ins,
            allocs - b_allocs
        );
    }
    let verifications: Vec<&str> = ALGORITHMS
        .iter()
        .copied()
        .filter(|alg| selected(&format!("{VERIFY}{alg}")))
        .collect();
    if verifications.is_empty() {
        return;
    }
    println!();
    println!(
        "instructions per token verification (callgrind, {REQUESTS} `Verifier::verify` of a valid token after {WARM_UP})"
    );
    println!();
    println!("| row | instructions / verification | allocations / verification |");
    println!("| --- | --- | --- |");
    for alg in verifications {
        let args = ["--verify".to_owned(), alg.to_owned(), REQUESTS.to_string()];
        let Some((ins, allocs)) = run_child(&args, "measured_verifications") else {
            println!("| {VERIFY}{alg} | (valgrind run failed) | |");
            continue;
        };
        println!(
            "| {VERIFY}{alg} | {:.0} | {:.2} |",
            ins as f64 / REQUESTS as f64,
            allocs as f64 / REQUESTS as f64
        );
    }
}
