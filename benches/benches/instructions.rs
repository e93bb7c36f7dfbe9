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
//!
//! The `sql_read_*` rows ([`truss_benches::sql`]) read one user by primary key from a
//! 1 000-row SQLite table, by plain sqlx on the pool under [`Database`] and through
//! `Database::read` on the same pool ([`REQUESTS`] reads after [`WARM_UP`], in
//! `measured_sql_reads`). SQLite runs the statement on sqlx's worker thread, one per
//! connection, and `--toggle-collect` counts only the thread that enters the function, so
//! each row is run twice: once counting the calling thread alone (where all of truss's
//! governance runs: deadline, breaker, metrics, span), once counting every thread of the
//! process while the reads run (instrumentation switched on and off around them by
//! callgrind's client requests, `--instr-atstart=no`). The child pins itself to one CPU
//! first (see `pin_to_one_cpu`). `cargo bench -p truss-benches --bench instructions --
//! sql` runs these only (and the pass-through baseline).
//!
//! The `redis_*` rows ([`truss_benches::redis`]) run against a `redis-server` on loopback
//! that this binary starts once for all of them (they are skipped when it is not
//! installed): [`REQUESTS`] requests after [`WARM_UP`] through the one-route router with no
//! limiter, the local limiter and the same limit kept in Redis (one `EVALSHA` each), and as
//! many cache hits from the L1, from Redis with the L1 off, and plain `GET`s of the same
//! entry, in `measured_redis_ops`. The runtime is current-thread, so redis-rs's connection
//! task runs on the calling thread and is counted; redis-server is another process and is
//! not (its work shows in the times of the layer benchmark only). The child checks
//! afterwards that every decision was Redis's and every hit of the kind its row names.
//! `cargo bench -p truss-benches --bench instructions -- redis` runs these only (and the
//! pass-through baseline).

use std::hint::black_box;
use std::process::{Command, Stdio};

use axum::body::Body;
use http::Request;
use tower::{Service, ServiceExt};
use truss::auth::Verifier;
use truss::sql::Database;
use truss_benches::auth::{ALGORITHMS, request_with_token};
use truss_benches::redis::{Fixture, GROUPS, RedisServer};
use truss_benches::variants::{request, sends_token, variants};
use truss_benches::{CountingAlloc, allocations, pin_to_one_cpu};

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
    ("catch_panic", false),
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

/// The SQL rows (`truss_benches::sql::ROWS`), with and without the app's subscriber; each
/// group's first row, plain sqlx, is its baseline.
const SQL_ROWS: &[(&str, bool)] = &[
    ("sql_read_plain", false),
    ("sql_read_governed", false),
    ("sql_read_governed_deadline", false),
    ("sql_read_plain", true),
    ("sql_read_governed", true),
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
    if let Some(i) = args.iter().position(|a| a == "--sql") {
        let row = args.get(i + 1).map_or("sql_read_plain", String::as_str);
        let n = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(REQUESTS);
        let subscriber = args.iter().any(|a| a == "--subscriber");
        child_sql(row, n, subscriber);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--redis") {
        let (Some(row), Some(n), Some(url)) = (args.get(i + 1), args.get(i + 2), args.get(i + 3))
        else {
            panic!("usage: --redis <row> <n> <url>");
        };
        child_redis(row, n.parse().expect("n"), url);
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
    let guard = subscriber.then(|| log_subscriber(&rt));
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

/// Installs the app's own log subscriber (its output goes where stdout goes).
fn log_subscriber(rt: &tokio::runtime::Runtime) -> truss::observe::log::LogGuard {
    let _enter = rt.enter();
    truss::observe::log::init(
        &truss::config::LogConfig::default(),
        &truss::observe::otel::TraceConfig::default(),
        "bench",
        "0",
    )
    .expect("subscriber")
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

/// Makes `n` reads of SQL row `row` and prints the allocations it made.
fn child_sql(row: &str, n: u64, subscriber: bool) {
    pin_to_one_cpu();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let guard = subscriber.then(|| log_subscriber(&rt));
    let fixture = rt.block_on(truss_benches::sql::fixture());
    rt.block_on(truss_benches::sql::reads(&fixture.db, row, WARM_UP));
    let before = allocations();
    // Instrumentation on for the whole process only around the reads: the run that counts
    // every thread starts with it off (`--instr-atstart=no`); in the run that counts
    // `measured_sql_reads` alone it is already on, and turning it off after changes nothing.
    callgrind_request(START_INSTRUMENTATION);
    measured_sql_reads(&rt, &fixture.db, row, n);
    callgrind_request(STOP_INSTRUMENTATION);
    eprintln!("allocations: {}", allocations() - before);
    if let Some(guard) = guard {
        rt.block_on(guard.shutdown());
    }
}

/// The only function callgrind counts in a SQL run.
#[inline(never)]
fn measured_sql_reads(rt: &tokio::runtime::Runtime, db: &Database, row: &str, n: u64) {
    rt.block_on(truss_benches::sql::reads(db, row, n));
}

/// Makes `n` operations of Redis row `row` against the Redis at `url`, checks them and
/// prints the allocations they made.
fn child_redis(row: &str, n: u64, url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _prometheus = truss::observe::metrics::install();
    let mut fixture = rt.block_on(truss_benches::redis::fixture(url));
    rt.block_on(truss_benches::redis::ops(&mut fixture, row, WARM_UP));
    let counts = truss_benches::redis::counts(row);
    let before = allocations();
    // As in `child_sql`: instrumentation on for the whole process around the operations
    // only, for a run with `--instr-atstart=no` (by hand: every thread counted).
    callgrind_request(START_INSTRUMENTATION);
    measured_redis_ops(&rt, &mut fixture, row, n);
    callgrind_request(STOP_INSTRUMENTATION);
    let allocated = allocations() - before;
    truss_benches::redis::check(row, counts, n);
    eprintln!("allocations: {allocated}");
}

/// The only function callgrind counts in a Redis run.
#[inline(never)]
fn measured_redis_ops(rt: &tokio::runtime::Runtime, fixture: &mut Fixture, row: &str, n: u64) {
    rt.block_on(truss_benches::redis::ops(fixture, row, n));
}

/// Callgrind's client requests (`valgrind/callgrind.h`): instrumentation on and off for the
/// whole process, every thread; `toggle-collect`, by contrast, counts only the thread that
/// enters the function.
const CALLGRIND_BASE: usize = ((b'C' as usize) << 24) | ((b'T' as usize) << 16);
const START_INSTRUMENTATION: usize = CALLGRIND_BASE + 4;
const STOP_INSTRUMENTATION: usize = CALLGRIND_BASE + 5;

/// Makes a valgrind client request (`VALGRIND_DO_CLIENT_REQUEST_STMT` of `valgrind.h`, amd64);
/// outside valgrind, and on other architectures, nothing happens.
fn callgrind_request(request: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let args: [usize; 6] = [request, 0, 0, 0, 0, 0];
        // SAFETY: valgrind's magic sequence: rotating rdi by 3 + 13 + 61 + 51 = 128 bits and
        // `xchg rbx, rbx` leave every register as it was (flags aside), so natively it does
        // nothing; under valgrind it performs the request at `args` (read only) and sets rdx.
        unsafe {
            std::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                in("rax") args.as_ptr(),
                inout("rdx") 0_usize => _,
                options(nostack),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = request;
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
    callgrind(
        args,
        &[
            "--collect-atstart=no".to_owned(),
            format!("--toggle-collect=*{function}*"),
        ],
    )
}

/// Instructions and allocations of one child run (`args`) under callgrind with `options`.
fn callgrind(args: &[String], options: &[String]) -> Option<(u64, u64)> {
    let exe = std::env::current_exe().ok()?;
    let log = std::env::temp_dir().join(format!("truss-instructions-{}.log", std::process::id()));
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .args(options)
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
    sql_table(&selected);
    redis_table(&selected);
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

/// The SQL rows selected by the filters, each group (without, with the subscriber) measured
/// against its plain-sqlx row, which is measured whenever another row of its group is.
fn sql_table(selected: &dyn Fn(&str) -> bool) {
    let label = |&(row, subscriber): &(&str, bool)| {
        if subscriber {
            format!("{row} + subscriber")
        } else {
            row.to_owned()
        }
    };
    if !SQL_ROWS.iter().any(|r| selected(&label(r))) {
        return;
    }
    println!();
    println!(
        "instructions per SQL read (callgrind, {REQUESTS} reads by primary key after {WARM_UP}, SQLite; Δ = over plain sqlx on the same pool)"
    );
    println!(
        "calling thread: `measured_sql_reads` alone (all of the governance runs there); all threads: also sqlx's SQLite worker threads, where the statement runs"
    );
    println!();
    println!(
        "| row | instructions / read, calling thread | Δ | instructions / read, all threads | Δ | allocations / read | Δ |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for group in [false, true] {
        let rows: Vec<_> = SQL_ROWS.iter().filter(|r| r.1 == group).collect();
        if !rows.iter().any(|r| selected(&label(r))) {
            continue;
        }
        let mut base = None;
        for (i, row) in rows.into_iter().enumerate() {
            let label = label(row);
            if i > 0 && !selected(&label) {
                continue;
            }
            let mut args = vec!["--sql".to_owned(), row.0.to_owned(), REQUESTS.to_string()];
            if row.1 {
                args.push("--subscriber".to_owned());
            }
            let Some((caller, allocs)) = run_child(&args, "measured_sql_reads") else {
                println!("| {label} | (valgrind run failed) | | | | | |");
                continue;
            };
            // 0 where the client request is not implemented: instrumentation never started.
            let all = callgrind(&args, &["--instr-atstart=no".to_owned()])
                .map(|(ins, _)| ins)
                .filter(|&ins| ins > 0);
            let per = |x: u64| x as f64 / REQUESTS as f64;
            let (caller, all, allocs) = (per(caller), all.map(per), per(allocs));
            let (b_caller, b_all, b_allocs) = *base.get_or_insert((caller, all, allocs));
            let all = match (all, b_all) {
                (Some(all), Some(b_all)) => format!("{all:.0} | {:+.0}", all - b_all),
                _ => "n/a | ".to_owned(),
            };
            println!(
                "| {label} | {caller:.0} | {:+.0} | {all} | {allocs:.2} | {:+.2} |",
                caller - b_caller,
                allocs - b_allocs
            );
        }
    }
}

/// The Redis rows selected by the filters, each group measured against its first row
/// (no limiter; the L1 hit), which is measured whenever another row of its group is.
fn redis_table(selected: &dyn Fn(&str) -> bool) {
    let groups: Vec<_> = GROUPS
        .iter()
        .filter(|(_, rows)| rows.iter().any(|row| selected(row)))
        .collect();
    if groups.is_empty() {
        return;
    }
    println!();
    let Some(server) = RedisServer::start() else {
        println!("redis_*: redis-server not found (Debian: apt-get install redis-server); skipped");
        return;
    };
    println!(
        "instructions per rate-limit decision (a request through the one-route router) and per cache hit (callgrind, {REQUESTS} after {WARM_UP}, redis-server on loopback; this process only, redis-server's work is not counted; Δ = over the group's first row)"
    );
    println!();
    println!("| row | instructions / op | Δ | allocations / op | Δ |");
    println!("| --- | --- | --- | --- | --- |");
    for (_, rows) in groups {
        let mut base = None;
        for (i, row) in rows.iter().enumerate() {
            if i > 0 && !selected(row) {
                continue;
            }
            let args = [
                "--redis".to_owned(),
                (*row).to_owned(),
                REQUESTS.to_string(),
                server.url(),
            ];
            let Some((ins, allocs)) = run_child(&args, "measured_redis_ops") else {
                println!("| {row} | (valgrind run or its checks failed) | | | |");
                continue;
            };
            let per = |x: u64| x as f64 / REQUESTS as f64;
            let (ins, allocs) = (per(ins), per(allocs));
            let (b_ins, b_allocs) = *base.get_or_insert((ins, allocs));
            println!(
                "| {row} | {ins:.0} | {:+.0} | {allocs:.2} | {:+.2} |",
                ins - b_ins,
                allocs - b_allocs
            );
        }
    }
}
