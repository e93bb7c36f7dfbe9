//! The examples on a real database: on their embedded default, a SQLite file, what one
//! `user` process wrote is there for the next one after the first is killed with SIGKILL; on
//! PostgreSQL, two `user` instances see each other's writes.

use std::path::Path;
use std::time::Duration;

use truss_tests::{Postgres, Proc, call, call_as, demo_token, example_config};

const USER: &str = env!("CARGO_BIN_EXE_user-service");

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("user.toml");
    let text = format!(
        r#"
[http]
addr = "127.0.0.1:0"
[grpc]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[log]
format = "text"
[database]
data_dir = "{}"
"#,
        dir.join("data").display()
    );
    std::fs::write(&path, text).expect("config file");
    path
}

#[tokio::test]
async fn sqlite_data_survives_a_killed_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());

    let mut first = Proc::spawn(USER, &config, dir.path().join("first.log"));
    let (http, _) = first.addrs().await;
    let token = demo_token(http).await.unwrap();
    let body = r#"{"name":"Edsger","email":"ed@example.com"}"#;
    let (status, _, text) = call_as(http, "POST", "/v1/users", Some(body), Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""id":"4""#), "{text}");
    first.signal(libc::SIGKILL);
    first.exit(Duration::from_secs(10)).await;
    assert!(
        dir.path().join("data/user.db").is_file(),
        "the SQLite file is in data_dir"
    );

    let second = Proc::spawn(USER, &config, dir.path().join("second.log"));
    let (http, _) = second.addrs().await;
    let (status, _, text) = call(http, "GET", "/v1/users/4", None).await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Edsger"), "{text}");
    // The demo users were seeded once, into the empty table only.
    let (_, _, text) = call(http, "GET", "/v1/users?page_size=10", None)
        .await
        .unwrap();
    assert_eq!(text.matches(r#""id":"#).count(), 4, "{text}");
    // The unique email holds across processes: a clean 409.
    let (status, _, text) = call_as(http, "POST", "/v1/users", Some(body), Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("EMAIL_TAKEN"), "{text}");
}

async fn user_on(url: &str) -> truss::RunningApp {
    // The embedded defaults (demo auth included), no process arguments or environment.
    let mut config = example_config::<user::UserConfig>(user::DEFAULTS, "user");
    config.database.url = Some(url.to_owned());
    user::app(&config).await.unwrap().start().await.unwrap()
}

#[tokio::test]
async fn two_user_instances_on_postgresql_see_each_others_writes() {
    let pg = Postgres::start().await;
    let a = user_on(&pg.url()).await;
    let b = user_on(&pg.url()).await;
    let (a_http, b_http) = (a.http_addr().unwrap(), b.http_addr().unwrap());
    let token = demo_token(a_http).await.unwrap();

    let body = r#"{"name":"Barbara","email":"barbara@example.com"}"#;
    let (status, _, text) = call_as(a_http, "POST", "/v1/users", Some(body), Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, text) = call(b_http, "GET", &format!("/v1/users/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "written through A, read through B: {text}");
    assert!(text.contains("Barbara"), "{text}");
    // The unique index holds across instances, whatever the case: a clean 409.
    let shouting = r#"{"name":"B","email":"BARBARA@example.com"}"#;
    let (status, _, text) = call_as(b_http, "POST", "/v1/users", Some(shouting), Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("EMAIL_TAKEN"), "{text}");
    // Both seeded the demo users into one table, once.
    let (_, _, text) = call(b_http, "GET", "/v1/users?page_size=10", None)
        .await
        .unwrap();
    assert_eq!(text.matches("ada@example.com").count(), 1, "{text}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
