//! What truss costs over bare hyper and bare tonic, end to end over loopback.
//!
//! ```sh
//! cargo run --release -p truss-benches --bin load                  # defaults
//! cargo run --release -p truss-benches --bin load -- --secs 10 --conns 32 --workers 1
//! cargo run --release -p truss-benches --bin load -- --open-only 20000   # HTTP open loop only
//! cargo run --release -p truss-benches --bin load -- --instructions [truss-http ...]
//! cargo run --release -p truss-benches --bin load -- --idle-only       # P5 only
//! ```
//!
//! Servers, each in its own child process with the same number of tokio worker
//! threads (`--workers`, default 1) and the same trivial handler: bare hyper (HTTP/1.1),
//! axum with no layers, a hand-built axum + tower-http stack doing comparable work (trace span
//! with a request id and an INFO line per response, timeout, concurrency limit, Prometheus
//! metrics), truss HTTP (the app with its full default stack: trace + access log, metrics,
//! in-flight limit, load shedding, breaker, deadline), bare tonic, and truss gRPC (the same
//! stack). Each server's output goes to a file, as a deployed service's stdout would.
//!
//! Reported per server: throughput, the server's CPU time per request (from
//! `/proc/<pid>/stat`: the figure that does not depend on the load generator), the load
//! generator's own CPU use (near 1.0 means the generator, not the server, was the limit),
//! and latency percentiles; then open-loop latency at 50 % of bare's and of truss's own
//! capacity, and resident memory with `--idle` (default 10 000) idle keep-alive connections.
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
//! `--instructions` counts each server's instructions per request under callgrind instead
//! (see the `instructions` module): exact, repeatable, kernel excluded;
//! `LOAD_CALLGRIND_DIR=<dir>` keeps the profiles there for `callgrind_annotate`.
//!
//! With two or more CPUs the servers are pinned (`taskset`) to the last CPU and the
//! generator to the others. Load shedding stays in the stack but with a 100 % threshold: it
//! follows the host's CPU, which a benchmark saturates by design.

mod clients;
mod idle;
mod instructions;
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use clients::{Stats, closed, open};
use servers::{pin_generator, serve, start};

mod pb {
    tonic::include_proto!("bench.v1");
}

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
    if args.get(1).map(String::as_str) == Some("--instructions") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(instructions::run(&args[2..]));
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
    let idle_conns = arg("--idle", 10_000) as usize;
    if std::env::var("LOAD_ONLY").is_ok() {
        let _ = pin_generator();
        rt.block_on(closed_rows(secs, conns, workers));
        return;
    }
    if args.iter().any(|a| a == "--idle-only") {
        // Investigation: only P5, the idle-connection memory.
        rt.block_on(idle_rows(idle_conns));
        return;
    }
    let open_rate = arg("--open-only", 0);
    if open_rate > 0 {
        // Investigation: only the HTTP open-loop pair, at this rate.
        let _ = pin_generator();
        rt.block_on(open_pair(
            "bare-hyper",
            "truss-http",
            false,
            open_rate as f64,
            conns,
            secs,
        ));
        return;
    }
    rt.block_on(drive(secs, conns, workers, idle_conns));
}

/// One closed-loop row, measured.
struct Row {
    kind: &'static str,
    stats: Stats,
}

fn print_row(row: &Row, bare: Option<&Stats>) {
    let s = &row.stats;
    let (ratio, cpu_ratio) = bare.map_or(("—".to_owned(), "—".to_owned()), |b| {
        (
            format!("{:.2}", s.rps / b.rps),
            format!("{:.2}", s.server_us / b.server_us),
        )
    });
    println!(
        "| {} | {:.0} | {ratio} | {:.1} | {cpu_ratio} | {:.0} % | {:.0} µs | {:.0} µs | {:.0} µs | {} |",
        row.kind,
        s.rps,
        s.server_us,
        100.0 * s.generator_cpu,
        s.pct(0.50),
        s.pct(0.99),
        s.pct(0.999),
        s.errors
    );
}

async fn closed_rows(secs: Duration, conns: usize, workers: u64) -> Vec<Row> {
    println!(
        "| server | req/s | ÷ bare | server CPU µs / req | ÷ bare | generator CPU | p50 | p99 | p99.9 | errors |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut rows = Vec::new();
    for (kinds, grpc) in [
        (
            &[
                "bare-hyper",
                "axum",
                "axum-stack",
                "truss-http",
                "truss-http-quiet",
            ][..],
            false,
        ),
        (&["bare-tonic", "truss-grpc", "truss-grpc-quiet"][..], true),
    ] {
        let first = rows.len();
        // `LOAD_ONLY=truss-http-quiet`: that row plus each group's baseline (investigation).
        let only = std::env::var("LOAD_ONLY").ok();
        for &kind in kinds {
            let wanted = only
                .as_deref()
                .is_none_or(|o| o == kind || rows.len() == first);
            if !wanted {
                continue;
            }
            let (server, addr) = start(kind, workers).await;
            let stats = closed(&server, addr, grpc, conns, secs).await;
            let row = Row { kind, stats };
            print_row(&row, rows.get(first).map(|r: &Row| &r.stats));
            rows.push(row);
        }
    }
    rows
}

fn find<'a>(rows: &'a [Row], kind: &str) -> &'a Stats {
    &rows.iter().find(|r| r.kind == kind).expect("row").stats
}

/// Open-loop latency of `bare` and `truss` at `rate`: [`OPEN_ROUNDS`] interleaved rounds
/// (bare, truss, bare, ...) on the same two servers, medians printed: on this shared
/// machine a single stall of a few milliseconds decides a 5-second round's p99.
async fn open_pair(bare: &str, truss: &str, grpc: bool, rate: f64, conns: usize, secs: Duration) {
    // Enough callers that the generator never caps the offered rate (HTTP/1.1 has one
    // request per connection in flight).
    let callers = conns * 8;
    let mut servers = Vec::new();
    for kind in [bare, truss] {
        let (server, addr) = start(kind, 1).await;
        let _ = open(addr, grpc, callers, rate, Duration::from_secs(1)).await; // warm-up
        servers.push((kind, server, addr, Vec::new()));
    }
    for _ in 0..OPEN_ROUNDS {
        for (_, _, addr, rounds) in &mut servers {
            let s = open(*addr, grpc, callers, rate, secs).await;
            rounds.push((s.pct(0.50), s.pct(0.99), s.errors));
        }
    }
    // Added latency: the median of each round's truss-minus-bare difference (the rounds
    // are paired: run back to back on the same machine state).
    let added = |pick: fn(&(f64, f64, u64)) -> f64| {
        let (bare_rounds, truss_rounds) = (&servers[0].3, &servers[1].3);
        let diffs = bare_rounds
            .iter()
            .zip(truss_rounds)
            .map(|(b, t)| pick(t) - pick(b))
            .collect();
        format!("{:+.0} µs", median(diffs))
    };
    for (i, (kind, _, _, rounds)) in servers.iter().enumerate() {
        let p50 = median(rounds.iter().map(|r| r.0).collect());
        let p99 = median(rounds.iter().map(|r| r.1).collect());
        let errors: u64 = rounds.iter().map(|r| r.2).sum();
        let (added50, added99) = if i == 0 {
            ("—".to_owned(), "—".to_owned())
        } else {
            (added(|r| r.0), added(|r| r.1))
        };
        let each: Vec<String> = rounds
            .iter()
            .map(|r| format!("{:.0}/{:.0}", r.0, r.1))
            .collect();
        println!(
            "| {kind} | {rate:.0} | {p50:.0} µs | {p99:.0} µs | {added50} | {added99} | {errors} | {} |",
            each.join(", ")
        );
    }
}

/// Interleaved rounds per open-loop pair.
const OPEN_ROUNDS: usize = 3;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn drive(secs: Duration, conns: usize, workers: u64, idle_conns: usize) {
    let pinning = pin_generator();
    println!(
        "closed loop: {conns} callers, {}s measured after 1s warm-up; servers: {workers} worker thread(s) each, output to a file; {pinning}",
        secs.as_secs()
    );
    println!();
    let rows = closed_rows(secs, conns, workers).await;
    println!();
    println!(
        "open loop, {}s per round, {OPEN_ROUNDS} interleaved rounds, medians:",
        secs.as_secs()
    );
    println!("(added: the median of the rounds' paired truss − bare differences)");
    println!();
    println!(
        "| server | offered req/s | p50 | p99 | added p50 | added p99 | errors | rounds (p50/p99 µs) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (bare, truss, grpc) in [
        ("bare-hyper", "truss-http", false),
        ("bare-tonic", "truss-grpc", true),
    ] {
        let half_bare = find(&rows, bare).rps * 0.5;
        let half_truss = find(&rows, truss).rps * 0.5;
        open_pair(bare, truss, grpc, half_bare, conns, secs).await;
        open_pair(bare, truss, grpc, half_truss, conns, secs).await;
    }
    println!();
    let (bare_rss, truss_rss) = idle_rows(idle_conns).await;
    goals(&rows, bare_rss, truss_rss);
}

/// P5: resident memory of bare hyper and truss HTTP holding `idle_conns` idle connections.
async fn idle_rows(idle_conns: usize) -> (u64, u64) {
    let bare_rss = idle::rss_with_idle("bare-hyper", idle_conns).await;
    let truss_rss = idle::rss_with_idle("truss-http", idle_conns).await;
    println!(
        "resident memory with {idle_conns} idle keep-alive connections: bare hyper {:.1} MiB, truss HTTP {:.1} MiB ({:.2} ×)",
        bare_rss as f64 / 1048576.0,
        truss_rss as f64 / 1048576.0,
        truss_rss as f64 / bare_rss.max(1) as f64
    );
    (bare_rss, truss_rss)
}

/// The issue's goals, met or not, from this run's figures.
fn goals(rows: &[Row], bare_rss: u64, truss_rss: u64) {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let (hyper, tonic) = (find(rows, "bare-hyper"), find(rows, "bare-tonic"));
    for (truss, bare) in [
        ("truss-http", hyper),
        ("truss-grpc", tonic),
        ("truss-http-quiet", hyper),
        ("truss-grpc-quiet", tonic),
    ] {
        let s = find(rows, truss);
        let want = if truss.ends_with("-quiet") {
            0.95
        } else {
            0.90
        };
        let (tp, cpu) = (s.rps / bare.rps, s.server_us / bare.server_us);
        println!(
            "P1 {truss}: throughput {tp:.2} × bare (goal ≥ {want}) {}; CPU/request {cpu:.2} × bare (goal ≤ 1.15) {}",
            verdict(tp >= want),
            verdict(cpu <= 1.15)
        );
    }
    let (axum_stack, truss) = (find(rows, "axum-stack"), find(rows, "truss-http"));
    println!(
        "P2 truss HTTP vs hand-built axum + tower-http: throughput {:.2} ×, CPU/request {:.2} × {}",
        truss.rps / axum_stack.rps,
        truss.server_us / axum_stack.server_us,
        verdict(truss.rps > axum_stack.rps && truss.server_us < axum_stack.server_us)
    );
    let rss = truss_rss as f64 / bare_rss.max(1) as f64;
    println!(
        "P5 idle-connection memory: {rss:.2} × bare (goal ≤ 1.2) {}",
        verdict(rss <= 1.2)
    );
}
