//! Messages per second through the consumer stack (trace context, span, deadline, panic
//! guard, metrics, settle) against the backend's own client doing the bare minimum (fetch,
//! ack), in the same run: `cargo bench -p truss-benches --bench queue`.
//!
//! Backends: the in-process queue always; order's SQL outbox on a SQLite file in a temporary
//! directory; a Redis stream when `redis-server` is installed (started on a free port).
//! Each row: 20 000 messages (5 000 for SQLite), median of 3 runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use truss::queue::{Backend, ConsumerConfig, MemoryBackend, Message};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const RUNS: usize = 3;

fn config() -> truss::Config {
    let mut config = truss::Config::default();
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.http.addr = any;
    config.grpc.addr = any;
    config.admin.addr = any;
    config.shutdown.drain_delay = Duration::ZERO;
    config.admission.shed.enabled = false;
    config
}

fn consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        max_in_flight: 64,
        poll: Duration::from_millis(20),
        ..ConsumerConfig::default()
    }
}

/// Fetch and ack with the backend alone, one batch of up to 64 at a time.
async fn raw(backend: &dyn Backend, n: u64) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        for delivery in backend.fetch(64, Duration::from_millis(20)).await? {
            backend.ack(&delivery).await?;
            done += 1;
        }
    }
    Ok(start.elapsed())
}

/// The same messages through an app's consumer with a handler that does nothing.
async fn stack(backend: Arc<dyn Backend>, n: u64) -> Result<Duration, BoxError> {
    let handled = Arc::new(AtomicU64::new(0));
    let handler = {
        let handled = handled.clone();
        move |_: Message<serde_json::Value>| {
            handled.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, truss::Error>(()) }
        }
    };
    let start = Instant::now();
    let app = truss::App::builder("bench")
        .config(&config())
        .consume("bench", backend, consumer_config(), handler)
        .start()
        .await?;
    while handled.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = start.elapsed();
    app.shutdown().await?;
    Ok(took)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn row(name: &str, n: u64, raw: Duration, stack: Duration) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "| {name} | {:.0} | {:.0} | {:.2} |",
        rate(raw),
        rate(stack),
        rate(stack) / rate(raw)
    );
}

async fn memory() -> Result<(), BoxError> {
    let n = 20_000;
    let fill = |q: &MemoryBackend| {
        for i in 0..n {
            q.publish(format!(r#"{{"order_id":{i}}}"#), Default::default());
        }
    };
    let (mut raws, mut stacks) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let q = MemoryBackend::new();
        fill(&q);
        raws.push(raw(&q, n).await?);
        let q = Arc::new(MemoryBackend::new());
        fill(&q);
        stacks.push(stack(q, n).await?);
    }
    row("memory", n, median(raws), median(stacks));
    Ok(())
}

async fn sqlite() -> Result<(), BoxError> {
    use truss::sql::{Database, DatabaseConfig};
    let n = 5_000;
    let (mut raws, mut stacks) = (Vec::new(), Vec::new());
    for _ in 0..RUNS * 2 {
        let dir = tempfile::tempdir()?;
        let db_config = DatabaseConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let db = Database::connect(&db_config, "order").await?;
        truss::queue::SqlQueue::create_tables(&db).await?;
        db.transaction("fill", async |c| {
            for i in 0..n {
                let body = format!(r#"{{"order_id":{i}}}"#);
                truss::queue::enqueue(c, "bench", body.as_bytes(), &Default::default()).await?;
            }
            Ok(())
        })
        .await?;
        let queue = truss::queue::SqlQueue::new(db, "bench", "c1", Duration::from_secs(30));
        if raws.len() < RUNS {
            raws.push(raw(&queue, n).await?);
        } else {
            stacks.push(stack(Arc::new(queue), n).await?);
        }
    }
    row("sql (SQLite)", n, median(raws), median(stacks));
    Ok(())
}

async fn redis() -> Result<(), BoxError> {
    use truss::queue::RedisStreams;
    let Some(server) = RedisServer::start() else {
        println!("| redis | skipped: no redis-server | | |");
        return Ok(());
    };
    let n = 20_000;
    let (mut raws, mut stacks) = (Vec::new(), Vec::new());
    for run in 0..RUNS * 2 {
        let stream = format!("bench-{run}");
        let url = server.url();
        let streams =
            RedisStreams::connect(&url, &stream, "g", "c1", Duration::from_secs(30)).await?;
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        for chunk in 0..n / 1000 {
            let mut pipe = redis::pipe();
            for i in 0..1000 {
                let body = format!(r#"{{"order_id":{}}}"#, chunk * 1000 + i);
                pipe.cmd("XADD")
                    .arg(&stream)
                    .arg("*")
                    .arg("payload")
                    .arg(body);
            }
            let _: Vec<String> = pipe.query_async(&mut conn).await?;
        }
        if run < RUNS {
            raws.push(raw(&streams, n).await?);
        } else {
            stacks.push(stack(Arc::new(streams), n).await?);
        }
    }
    row("redis stream", n, median(raws), median(stacks));
    Ok(())
}

/// Debian's redis-server on a free port, killed on drop.
struct RedisServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let dir = tempfile::tempdir().ok()?;
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // `cargo test --benches` runs this with --bench absent: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    println!("| backend | raw client msg/s | consumer stack msg/s | stack ÷ raw |");
    println!("| --- | --- | --- | --- |");
    memory().await?;
    sqlite().await?;
    redis().await?;
    Ok(())
}
