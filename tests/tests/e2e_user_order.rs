//! End to end: a real etcd, a real PostgreSQL, two `user` processes and one `order` process,
//! under a steady stream of create-order requests while one user instance is stopped with
//! SIGTERM (and started again) and the other is SIGKILLed (and started again). Every order
//! that got a 2xx is in the database, and no other.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use truss_tests::{Etcd, Postgres, Proc, call_as, demo_token, get};

const USER: &str = env!("CARGO_BIN_EXE_user-service");
const ORDER: &str = env!("CARGO_BIN_EXE_order-service");

fn config(dir: &Path, name: &str, etcd: &Etcd, app: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"
[http]
addr = "127.0.0.1:0"
[grpc]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[shutdown]
drain_delay = "1s"
grace = "5s"
[log]
format = "text"
[admission.shed]
enabled = false
[registry.etcd]
endpoints = ["{}"]
ttl = "3s"
timeout = "3s"
retry_max = "500ms"
{app}
"#,
        etcd.endpoint()
    );
    std::fs::write(&path, text).expect("config file");
    path
}

/// The value of the first metric line containing every one of `parts`.
async fn metric(admin: SocketAddr, parts: &[&str]) -> f64 {
    let Ok((_, body)) = get(admin, "/metrics").await else {
        return 0.0;
    };
    body.lines()
        .filter(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the order service sees `n` user endpoints; on failure shows every log.
async fn endpoints(order_admin: SocketAddr, n: f64, procs: &[&Proc]) {
    let mut seen = 0.0;
    for _ in 0..600 {
        seen = metric(
            order_admin,
            &["truss_registry_endpoints{", "target=\"user\""],
        )
        .await;
        if seen == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs: Vec<String> = procs
        .iter()
        .map(|p| format!("--- {}\n{}", p.log.display(), p.log()))
        .collect();
    panic!(
        "the order service never saw {n} user endpoints (last: {seen})\n{}",
        logs.join("\n")
    );
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // the fields are read through Debug in assertion messages
enum Outcome {
    Ok {
        trace_id: String,
        /// The stored order's id.
        id: u64,
    },
    /// An answer that is not a success: status and the error's reason.
    Failed { status: u16, reason: String },
    /// No answer within 5 s, or no connection.
    Broken(String),
}

struct Load {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(order_http: SocketAddr, token: String) -> Load {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (out, flag) = (outcomes.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::SeqCst) {
                let body = r#"{"user_id":1,"item":"tea","quantity":1}"#;
                let sent = call_as(order_http, "POST", "/v1/orders", Some(body), Some(&token));
                let outcome = match tokio::time::timeout(Duration::from_secs(5), sent).await {
                    Err(_) => Outcome::Broken("no answer within 5s".into()),
                    Ok(Err(e)) => Outcome::Broken(e.to_string()),
                    Ok(Ok((status, headers, body))) if status.is_success() => Outcome::Ok {
                        trace_id: headers
                            .get("x-trace-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        id: serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            // 64-bit ids are strings in the proto3 JSON mapping.
                            .and_then(|v| v["id"].as_str().and_then(|id| id.parse().ok()))
                            .unwrap_or_default(),
                    },
                    Ok(Ok((status, _, body))) => Outcome::Failed {
                        status: status.as_u16(),
                        reason: truss::Error::from_http(status, body.as_bytes())
                            .reason()
                            .to_owned(),
                    },
                };
                out.lock().unwrap().push(outcome);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load {
            outcomes,
            stop,
            task,
        }
    }

    fn count(&self) -> usize {
        self.outcomes.lock().unwrap().len()
    }

    fn since(&self, from: usize) -> Vec<Outcome> {
        self.outcomes.lock().unwrap()[from..].to_vec()
    }

    /// Waits until `n` more requests have been answered.
    async fn run_for(&self, n: usize) {
        let target = self.count() + n;
        while self.count() < target {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("load task");
        self.outcomes.lock().unwrap().clone()
    }
}

fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes
        .iter()
        .filter(|o| !matches!(o, Outcome::Ok { .. }))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_user_instances_stopping_and_dying() {
    let etcd = Etcd::start().await;
    let pg = Postgres::start().await;
    for db in ["users", "orders"] {
        pg.psql(&format!("CREATE DATABASE {db}"))
            .expect("create database");
    }
    let database = |db: &str| {
        let url = format!("postgres://postgres@127.0.0.1:{}/{db}", pg.port());
        format!("[database]\nurl = \"{url}\"\n")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let user_config = config(dir.path(), "user", &etcd, &database("users"));
    let order_config = config(
        dir.path(),
        "order",
        &etcd,
        &format!(
            "{}[app]\nuser_timeout = \"2s\"\n[retry]\nmax_attempts = 3",
            database("orders")
        ),
    );
    let log = |name: &str| dir.path().join(format!("{name}.log"));

    let mut user_a = Proc::spawn(USER, &user_config, log("user-a"));
    let mut user_b = Proc::spawn(USER, &user_config, log("user-b"));
    let order = Proc::spawn(ORDER, &order_config, log("order"));
    let (order_http, order_admin) = order.addrs().await;
    let (user_a_http, _) = user_a.addrs().await;
    user_b.addrs().await;
    endpoints(order_admin, 2.0, &[&order, &user_a, &user_b]).await;

    // Orders need a token (the examples' demo auth); order forwards it to user.
    let token = demo_token(user_a_http).await.expect("demo login");
    let load = Load::start(order_http, token);
    load.run_for(100).await;

    // 1. SIGTERM: user A deregisters, drains and exits 0, without a single failed order.
    user_a.signal(libc::SIGTERM);
    let status = user_a.exit(Duration::from_secs(20)).await;
    assert!(status.success(), "user A exited with {status}");
    load.run_for(100).await;
    let user_a2 = Proc::spawn(USER, &user_config, log("user-a2"));
    user_a2.addrs().await;
    endpoints(order_admin, 2.0, &[&order, &user_a2, &user_b]).await;
    load.run_for(100).await;
    let before_kill = load.count();
    let so_far = load.since(0);
    assert!(
        failures(&so_far).is_empty(),
        "failed orders around the SIGTERM: {:?}",
        failures(&so_far)
    );

    // 2. SIGKILL: user B dies without deregistering; orders keep being placed.
    user_b.signal(libc::SIGKILL);
    user_b.exit(Duration::from_secs(10)).await;
    load.run_for(200).await;
    let user_b2 = Proc::spawn(USER, &user_config, log("user-b2"));
    let (_, b2_admin) = user_b2.addrs().await;
    endpoints(order_admin, 2.0, &[&order, &user_a2, &user_b2]).await;

    // 3. Recovery: once B is back, every order succeeds and B serves its share again.
    load.run_for(50).await;
    let recovered_from = load.count();
    load.run_for(200).await;
    let outcomes = load.finish().await;

    let recovered = &outcomes[recovered_from..];
    assert!(
        failures(recovered).is_empty(),
        "failures after recovery: {:?}",
        failures(recovered)
    );
    let b2_served = metric(
        b2_admin,
        &["truss_server_requests_total{", "GetUser", "code=\"0\""],
    )
    .await;
    assert!(b2_served > 0.0, "the restarted instance gets no calls");

    let failed = failures(&outcomes);
    let total = outcomes.len();
    let rate = (total - failed.len()) as f64 / total as f64;
    eprintln!(
        "{total} orders, {} failed ({} around the SIGKILL), success {:.2} %",
        failed.len(),
        failures(&outcomes[before_kill..]).len(),
        rate * 100.0
    );
    assert!(rate >= 0.99, "success rate {rate}: {failed:?}");
    // Never a hang or a broken connection; every failure is a clear error with a reason.
    for f in &failed {
        match f {
            Outcome::Failed { status, reason } => {
                assert!(!reason.is_empty(), "a {status} without a reason");
            }
            other => panic!("not a clear answer: {other:?}"),
        }
    }

    // The trace id of an order shows up in the order log and in a user instance's log.
    let Some(Outcome::Ok { trace_id, .. }) = outcomes.last().cloned() else {
        panic!("last order failed")
    };
    assert_eq!(trace_id.len(), 32);
    assert!(
        order.log().contains(&trace_id),
        "trace id not in the order log"
    );
    let user_logs = [&user_a2, &user_b2].map(|p| p.log());
    assert!(
        user_logs.iter().any(|l| l.contains(&trace_id)),
        "trace id {trace_id} in no user log"
    );

    // Both services count what they served: the order service exactly what the client saw.
    let ok = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Ok { .. }))
        .count();
    let counted = metric(
        order_admin,
        &[
            "truss_server_requests_total{",
            "route=\"/v1/orders\"",
            "code=\"200\"",
        ],
    )
    .await;
    assert_eq!(
        counted as usize, ok,
        "order /metrics vs successes seen by the client"
    );
    let a2_admin = user_a2.addrs().await.1;
    let users_counted =
        metric(a2_admin, &["truss_server_requests_total{", "GetUser"]).await + b2_served;
    assert!(users_counted > 0.0);

    // 0 lost orders: the database holds exactly the orders that got a 2xx.
    let mut answered: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ok { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    answered.sort_unstable();
    let stored = pg
        .psql_in("orders", "SELECT id FROM orders ORDER BY id")
        .expect("read orders");
    let stored: Vec<u64> = stored
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(stored, answered, "stored orders vs orders answered 2xx");
}
