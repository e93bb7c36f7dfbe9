//! Live configuration from the config file: an editor's save reloads once, route timeouts
//! and breaker thresholds change behaviour without a restart, an invalid file is rejected
//! whole, keys that need a restart are reported and not applied. (The etcd source has its
//! own file, `live_config_etcd.rs`.)

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use truss::config::{ConfigLoader, NoAppConfig};
use truss_tests::{BoxError, H1, metric_sample};

/// The file every test starts from, plus `extra` TOML.
fn config_text(extra: &str) -> String {
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
[reload]
poll = "20ms"
debounce = "20ms"
{extra}
"#
    )
}

/// Writes `text` the way editors save: to a temp file beside it, then renamed over it.
fn editor_save(path: &Path, text: &str) {
    let temp = path.with_file_name(".svc.toml.swp");
    std::fs::write(&temp, text).expect("write temp file");
    std::fs::rename(&temp, path).expect("rename over the config");
}

async fn start(path: &Path, router: Router) -> Result<truss::RunningApp, BoxError> {
    let config = ConfigLoader::new()
        .args(["svc"])
        .env_vars(Vec::<(String, String)>::new())
        .file(path)
        .load::<NoAppConfig>()?;
    Ok(truss::App::builder("live")
        .config(&config)
        .http(router)
        .start()
        .await?)
}

#[tokio::test]
async fn an_editor_save_reloads_once_and_changes_a_route_timeout() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("svc.toml");
    let timeout = |t: &str| config_text(&format!("[timeout.routes]\n\"/slow\" = \"{t}\"\n"));
    std::fs::write(&path, timeout("10s"))?;
    let slow = get(|| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "done"
    });
    let app = start(&path, Router::new().route("/slow", slow)).await?;
    let (http, admin) = (app.http_addr().ok_or("http")?, app.admin_addr());
    // One keep-alive connection throughout: a reload reaches open connections too.
    let mut conn = H1::connect(http).await?;
    assert_eq!(conn.get("/slow").await?.0, StatusCode::OK);

    editor_save(&path, &timeout("30ms"));
    let s = truss_tests::wait_config(admin, |s| s["revision"] == 1).await?;
    assert_eq!(s["config"]["timeout"]["routes"]["/slow"], "30ms");
    let source = s["sources"]["timeout.routes.\"/slow\""]
        .as_str()
        .unwrap_or_default();
    assert!(source.contains("svc.toml"), "source of the key: {s}");
    let (code, body) = conn.get("/slow").await?;
    assert_eq!(code, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body.contains("DEADLINE_EXCEEDED"), "{body}");

    // Many polls later, still one reload: the rename was one change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(truss_tests::config_status(admin).await?["revision"], 1);
    // A save that leaves the bytes as they were is no change either.
    editor_save(&path, &timeout("30ms"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(truss_tests::config_status(admin).await?["revision"], 1);

    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn an_invalid_file_is_rejected_whole_and_the_old_config_stays() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("svc.toml");
    let limited = config_text("[admission.routes.\"/x\"]\nrps = 1\nburst = 1\n");
    std::fs::write(&path, &limited)?;
    let app = start(&path, Router::new().route("/x", get(|| async { "x" }))).await?;
    let (http, admin) = (app.http_addr().ok_or("http")?, app.admin_addr());
    let rejected = r#"truss_config_reloads_total{result="rejected"}"#;
    let before = metric_sample(rejected);

    // A valid key changed next to an invalid one: nothing of it applies.
    let broken = limited.replace("rps = 1", "rps = 1000") + "[breaker]\nenabled = \"sometimes\"\n";
    editor_save(&path, &broken);
    let s = truss_tests::wait_config(admin, |s| !s["last_error"].is_null()).await?;
    let error = s["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("breaker.enabled"), "names the key: {error}");
    assert!(error.contains("svc.toml"), "names the source: {error}");
    assert_eq!(s["revision"], 0);
    assert!(metric_sample(rejected) > before);
    // Still 1 request per second on /x: the old limit is in force.
    let mut conn = H1::connect(http).await?;
    let mut limited_count = 0;
    for _ in 0..5 {
        if conn.get("/x").await?.0 == StatusCode::TOO_MANY_REQUESTS {
            limited_count += 1;
        }
    }
    assert!(
        limited_count >= 3,
        "old limit in force: {limited_count} of 5 limited"
    );

    // Fixed: applies, and the error clears.
    editor_save(
        &path,
        &limited.replace("rps = 1\nburst = 1", "rps = 1000\nburst = 1000"),
    );
    let s = truss_tests::wait_config(admin, |s| s["revision"] == 1).await?;
    assert!(s["last_error"].is_null(), "{s}");
    for _ in 0..5 {
        assert_eq!(conn.get("/x").await?.0, StatusCode::OK);
    }
    // The reload metrics, as Prometheus reads them.
    let (_, metrics) = truss_tests::get(admin, "/metrics").await?;
    truss_tests::promtool_check(&metrics)?;
    assert!(
        metrics.contains("truss_config_reloads_total{result=\"rejected\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("truss_config_reloads_total{result=\"applied\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE truss_config_revision gauge"),
        "{metrics}"
    );
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_breaker_threshold_change_takes_effect() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("svc.toml");
    let breaker = |min: u32| config_text(&format!("[breaker.adaptive]\nmin_requests = {min}\n"));
    std::fs::write(&path, breaker(1_000_000))?;
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = {
        let calls = calls.clone();
        get(move || async move {
            calls.fetch_add(1, Ordering::Relaxed);
            StatusCode::INTERNAL_SERVER_ERROR
        })
    };
    let app = start(&path, Router::new().route("/fail", failing)).await?;
    let mut conn = H1::connect(app.http_addr().ok_or("http")?).await?;
    // The breaker never acts below a million requests: every call reaches the handler.
    for _ in 0..30 {
        assert_eq!(
            conn.get("/fail").await?.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 30);

    std::fs::write(&path, breaker(5))?;
    let report = app.reload().await?;
    assert!(
        report
            .applied
            .contains(&"breaker.adaptive.min_requests".to_owned()),
        "{report:?}"
    );
    let mut open = 0;
    for _ in 0..30 {
        let (code, body) = conn.get("/fail").await?;
        if code == StatusCode::SERVICE_UNAVAILABLE {
            assert!(body.contains("CIRCUIT_OPEN"), "{body}");
            open += 1;
        }
    }
    assert!(
        open >= 15,
        "after 5 failures the breaker sheds: {open} of 30 shed"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 30 + 30 - open);
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn keys_that_need_a_restart_are_reported_and_the_rest_applies() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("svc.toml");
    std::fs::write(&path, config_text(""))?;
    let app = start(&path, Router::new().route("/", get(|| async { "ok" }))).await?;
    let http = app.http_addr().ok_or("http")?;

    let moved = config_text("[admission]\nmax_in_flight = 77\n").replace(
        "[http]\naddr = \"127.0.0.1:0\"",
        "[http]\naddr = \"127.0.0.1:1\"",
    );
    std::fs::write(&path, moved)?;
    let report = app.reload().await?;
    assert_eq!(report.applied, ["admission.max_in_flight"]);
    assert_eq!(report.needs_restart, ["http.addr"]);
    assert_eq!(report.revision, 1);
    // Still serving where it was.
    assert_eq!(truss_tests::get(http, "/").await?.0, StatusCode::OK);
    let s = truss_tests::config_status(app.admin_addr()).await?;
    assert_eq!(s["needs_restart"], serde_json::json!(["http.addr"]));
    assert_eq!(s["config"]["admission"]["max_in_flight"], 77);
    assert_eq!(s["config"]["http"]["addr"], "127.0.0.1:0");

    // Reloading again with nothing new changes nothing.
    let again = app.reload().await?;
    assert_eq!(again.revision, 1);
    assert!(again.applied.is_empty());
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_config_built_in_code_does_not_reload() -> Result<(), BoxError> {
    let config = truss_tests::local_config(Duration::ZERO, Duration::from_secs(1));
    let app = truss::App::builder("fixed")
        .config(&config)
        .http(Router::new().route("/", get(|| async { "ok" })))
        .start()
        .await?;
    let error = app.reload().await.expect_err("nothing to reload from");
    assert!(error.to_string().contains("does not reload"), "{error}");
    assert_eq!(
        truss_tests::config_status(app.admin_addr()).await?["revision"],
        0
    );
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_retry_change_reaches_clients_made_from_the_config() -> Result<(), BoxError> {
    use tower::{Service, ServiceExt};

    // A dependency that always answers 503, counting the calls it gets.
    let calls = Arc::new(AtomicUsize::new(0));
    let unavailable = {
        let calls = calls.clone();
        get(move || async move {
            calls.fetch_add(1, Ordering::Relaxed);
            StatusCode::SERVICE_UNAVAILABLE
        })
    };
    let dependency = truss_tests::local_config(Duration::ZERO, Duration::from_secs(1));
    let dependency = truss::App::builder("dependency")
        .config(&dependency)
        .http(Router::new().route("/", unavailable))
        .start()
        .await?;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("svc.toml");
    // The breaker stays out of the way: this is about retries.
    let retry = |attempts: u32| {
        config_text(&format!(
            "[breaker]\nenabled = false\n[retry]\nmax_attempts = {attempts}\nbackoff_min = \"1ms\"\nbackoff_max = \"2ms\"\n"
        ))
    };
    std::fs::write(&path, retry(3))?;
    let config = ConfigLoader::new()
        .args(["svc"])
        .env_vars(Vec::<(String, String)>::new())
        .file(&path)
        .load::<NoAppConfig>()?;
    let app = truss::App::builder("caller")
        .config(&config)
        .http(Router::new())
        .start()
        .await?;
    let instance = truss::registry::Instance {
        id: "dep-1".into(),
        name: "dependency".into(),
        version: "0".into(),
        http: dependency.http_addr(),
        grpc: None,
        metadata: Default::default(),
    };
    let (_tx, instances) = tokio::sync::watch::channel(vec![instance]);
    let client_config = truss::client::ClientConfig::from_config(&config);
    let mut client = truss::client::http_client("dependency", instances, &client_config)?;
    let mut call = async || -> Result<usize, BoxError> {
        let before = calls.load(Ordering::Relaxed);
        let req = http::Request::get("/").body(axum::body::Body::empty())?;
        let resp = client.ready().await?.call(req).await?;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        Ok(calls.load(Ordering::Relaxed) - before)
    };
    assert_eq!(call().await?, 3, "three attempts");

    std::fs::write(&path, retry(1))?;
    let report = app.reload().await?;
    assert_eq!(report.applied, ["retry.max_attempts"]);
    assert_eq!(call().await?, 1, "one attempt after the reload");

    app.shutdown().await?;
    dependency.shutdown().await?;
    Ok(())
}
