//! Each admission, resilience and observability layer against a pass-through router: ns per request (criterion) and
//! allocations per request (printed before the criterion runs). The Prometheus recorder is
//! installed, as in an app; no log subscriber is, so spans and access lines cost only their
//! disabled-callsite checks.
//!
//! Group `auth_verify`: one `Verifier::verify` of a valid token per algorithm family (all
//! iterations inside one `block_on` of a current-thread runtime, so the runtime is not
//! counted; the verification never awaits). `cargo bench -p truss-benches --bench layers --
//! auth` runs these and the `full_stack_auth_*` variants only.
//!
//! Group `sql_read`: one read by primary key of a 1 000-row SQLite table (in a temporary
//! directory), by plain sqlx on [`Database::pool`](truss::sql::Database::pool) (`plain`),
//! through [`Database::read`](truss::sql::Database::read) on the same pool (`governed`),
//! and through it under a request deadline (`governed_deadline`); all iterations inside one
//! `block_on`, so each read waits for sqlx's SQLite worker thread as it would in a handler.
//! `cargo bench -p truss-benches --bench layers -- sql_read` runs these only.
//!
//! Group `live_slot`: the full default stack served as the server does, from a clone of
//! the router (`clone`) and from a clone of the router loaded from the live-config slot
//! (`load_clone`). `cargo bench -p truss-benches --bench layers -- live_slot`.
//!
//! Groups `redis_ratelimit` and `redis_cache` ([`truss_benches::redis`]), against a
//! `redis-server` on loopback that the benchmark starts (skipped when it is not installed):
//! one request through the one-route router with no limiter (`none`), the local limiter
//! (`local`) and the same limit kept in Redis (`redis`); one cache hit from the L1
//! (`hit_l1`), from Redis with the L1 off (`hit_redis`), and a plain `GET` of the same entry
//! on the raw connection (`get_plain`). All iterations inside one `block_on`; afterwards,
//! each row checks that every decision was Redis's and every hit of its kind. Before
//! starting redis-server the benchmark pins itself, and so the server, to one CPU (see
//! [`pin_to_one_cpu`](truss_benches::pin_to_one_cpu)): the groups before are not pinned.
//! `cargo bench -p truss-benches --bench layers -- redis` runs these only.

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Service, ServiceExt};
use truss_benches::auth::{ALGORITHMS, token, verifier};
use truss_benches::redis::{self, RedisServer};
use truss_benches::sql;
use truss_benches::variants::{request_for, sends_token, variants};
use truss_benches::{CountingAlloc, allocations};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn allocations_per_request(rt: &tokio::runtime::Runtime) {
    const N: u64 = 20_000;
    let mut baseline = None;
    println!("\nallocations per request (N = {N})");
    println!(
        "{:<22} {:>10} {:>12}",
        "variant", "allocs/req", "vs baseline"
    );
    for (name, router) in variants() {
        let request = request_for(name);
        let mut svc = router.into_service::<Body>();
        rt.block_on(async {
            for _ in 0..100 {
                let resp = svc.ready().await.unwrap().call(request()).await.unwrap();
                // A refused token would measure the rejection instead.
                assert!(
                    !sends_token(name) || resp.status().is_success(),
                    "{name}: {}",
                    resp.status()
                );
            }
        });
        let before = allocations();
        rt.block_on(async {
            for _ in 0..N {
                let resp = svc.ready().await.unwrap().call(request()).await.unwrap();
                black_box(resp);
            }
        });
        let per = (allocations() - before) as f64 / N as f64;
        let base = *baseline.get_or_insert(per);
        println!("{name:<22} {per:>10.2} {:>+12.2}", per - base);
    }
    println!();
}

fn bench(c: &mut Criterion) {
    // The real Prometheus recorder, so every layer's metrics cost what they cost in an app.
    let _prometheus = truss::observe::metrics::install();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    allocations_per_request(&rt);
    let mut group = c.benchmark_group("layers");
    for (name, router) in variants() {
        let request = request_for(name);
        let mut svc = router.into_service::<Body>();
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let resp = svc.ready().await.unwrap().call(request()).await.unwrap();
                    black_box(resp)
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("auth_verify");
    for alg in ALGORITHMS {
        let verifier = verifier(alg);
        let token = token(alg);
        group.bench_function(*alg, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let who = verifier.verify(black_box(&token)).await;
                        black_box(who.expect("valid token"));
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();

    live_slot(c, &rt);

    let fixture = rt.block_on(sql::fixture());
    let mut group = c.benchmark_group("sql_read");
    for row in sql::ROWS {
        let name = row.strip_prefix("sql_read_").unwrap_or(row);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    sql::reads(&fixture.db, row, iters).await;
                    start.elapsed()
                })
            })
        });
    }
    group.finish();

    // The benchmark and redis-server (which inherits it) on one CPU: see `pin_to_one_cpu`.
    truss_benches::pin_to_one_cpu();
    let Some(server) = RedisServer::start() else {
        println!("redis_*: redis-server not found (Debian: apt-get install redis-server); skipped");
        return;
    };
    let mut fixture = rt.block_on(redis::fixture(&server.url()));
    for (group_name, rows) in redis::GROUPS {
        let mut group = c.benchmark_group(*group_name);
        for row in *rows {
            let name = row
                .strip_prefix(group_name)
                .and_then(|n| n.strip_prefix('_'))
                .unwrap_or(row);
            let before = redis::counts(row);
            let mut total = 0;
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    total += iters;
                    rt.block_on(async {
                        let start = Instant::now();
                        redis::ops(&mut fixture, row, iters).await;
                        start.elapsed()
                    })
                })
            });
            redis::check(row, before, total);
        }
        group.finish();
    }
}

/// Group `live_slot`: what live config adds per request. The server serves each request
/// with a clone of its router; with live config it first loads the router in force from an
/// `ArcSwap` (a reload replaces it). `clone` is the old path, `load_clone` the new; both
/// serve one request through the full default stack, so the delta is the load alone.
fn live_slot(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let (_, full) = variants()
        .into_iter()
        .find(|(name, _)| *name == "full_default_stack")
        .expect("full_default_stack variant");
    let slot = arc_swap::ArcSwap::from_pointee(full.clone());
    let request = request_for("full_default_stack");
    let mut group = c.benchmark_group("live_slot");
    group.bench_function("clone", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut router = axum::Router::clone(black_box(&full));
                black_box(router.call(request()).await.unwrap())
            })
        })
    });
    group.bench_function("load_clone", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut router = axum::Router::clone(&black_box(&slot).load());
                black_box(router.call(request()).await.unwrap())
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
