//! `user`, `order` and `notify` as processes on their embedded defaults (SQLite files in one
//! data directory, no server): an order placed over HTTP is notified once, through order's
//! transactional outbox, and one trace id runs through order's log line for the create and
//! notify's log line for the consume.

use std::path::{Path, PathBuf};
use std::time::Duration;

use truss_tests::{BoxError, Proc, call_as, demo_token, get};

const USER: &str = env!("CARGO_BIN_EXE_user-service");
const ORDER: &str = env!("CARGO_BIN_EXE_order-service");
const NOTIFY: &str = env!("CARGO_BIN_EXE_notify-service");

fn config(dir: &Path, name: &str, extra: &str) -> PathBuf {
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
drain_delay = "0s"
grace = "5s"
[database]
data_dir = "{}"
{extra}
"#,
        dir.display()
    );
    std::fs::write(&path, text).expect("config file");
    path
}

/// The first line of `proc`'s log holding every one of `parts`, waiting up to 30 s for it.
async fn line(proc: &Proc, parts: &[&str]) -> Result<String, BoxError> {
    for _ in 0..300 {
        let log = proc.log();
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return Ok(line.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "no line with {parts:?} in {}:\n{}",
        proc.log.display(),
        proc.log()
    )
    .into())
}

#[tokio::test]
async fn an_order_is_notified_once_in_the_trace_of_its_create() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let user = Proc::spawn(
        USER,
        &config(dir.path(), "user", ""),
        dir.path().join("user.log"),
    );
    let (user_http, _) = user.addrs().await;
    let user_grpc = user.grpc_addr().await;
    let registry =
        format!("[registry.static]\nuser = [{{ grpc = \"{user_grpc}\", http = \"{user_http}\" }}]");
    let order_config = config(dir.path(), "order", &registry);
    let mut order = Proc::spawn(ORDER, &order_config, dir.path().join("order.log"));
    let (order_http, _) = order.addrs().await;
    let fast = "[consumers.\"order.created\"]\npoll = \"100ms\"";
    let notify_config = config(dir.path(), "notify", fast);
    let mut notify = Proc::spawn(NOTIFY, &notify_config, dir.path().join("notify.log"));
    let (notify_http, _) = notify.addrs().await;

    let token = demo_token(user_http).await?;
    let body = r#"{"user_id":1,"item":"tea","quantity":2}"#;
    let (status, headers, text) =
        call_as(order_http, "POST", "/v1/orders", Some(body), Some(&token)).await?;
    assert!(status.is_success(), "{status} {text}");
    let trace_id = headers
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
        .ok_or("no x-trace-id")?
        .to_owned();

    let created = line(&order, &[&trace_id, "route=/v1/orders", "order placed"]).await?;
    let consumed = line(&notify, &["notification recorded", "order_id=1"]).await?;
    assert!(
        consumed.contains(&format!("trace_id={trace_id}")),
        "order logged {created}\nnotify logged {consumed}"
    );
    let (status, list) = get(notify_http, "/v1/notifications").await?;
    assert!(status.is_success(), "{status} {list}");
    let list: serde_json::Value = serde_json::from_str(&list)?;
    let notes = list["notifications"].as_array().ok_or("no notifications")?;
    assert_eq!(notes.len(), 1, "{list}");
    assert_eq!(notes[0]["trace_id"], trace_id.as_str());
    assert_eq!(notes[0]["text"], "order 1 placed: 2 x tea");

    for proc in [&mut notify, &mut order] {
        proc.signal(libc::SIGTERM);
        assert!(proc.exit(Duration::from_secs(15)).await.success());
    }
    Ok(())
}
