//! The order service degrades cleanly when the user service is slow, down, or says no: a
//! clear error, and no order written. Both services run in-process on free ports.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use truss::Config;
use truss::config::duration::HumanDuration;
use truss::registry::StaticEndpoint;
use truss_tests::{call, local_config};

/// Local listeners, and each service's SQLite file in `dir`.
fn config<T: Default>(dir: &Path) -> Config<T> {
    let base = local_config(Duration::ZERO, Duration::from_secs(5));
    let mut config = Config {
        http: base.http,
        grpc: base.grpc,
        admin: base.admin,
        shutdown: base.shutdown,
        admission: base.admission,
        ..Config::default()
    };
    config.database.data_dir = dir.to_path_buf();
    config
}

async fn user_service(dir: &Path, read_delay: Duration) -> truss::RunningApp {
    let mut config = config::<user::UserConfig>(dir);
    config.app.read_delay = HumanDuration(read_delay);
    user::app(&config).await.unwrap().start().await.unwrap()
}

/// order, calling user at `user_grpc` with `user_timeout` per call (generous unless the test
/// is about the timeout: a loaded machine's first call also connects and reads SQLite).
async fn order_service(
    dir: &Path,
    user_grpc: SocketAddr,
    user_timeout: Duration,
) -> truss::RunningApp {
    let mut config = config::<order::OrderConfig>(dir);
    config.app.user_timeout = HumanDuration(user_timeout);
    config.registry.static_endpoints.insert(
        "user".to_owned(),
        vec![StaticEndpoint {
            grpc: Some(user_grpc),
            http: None,
        }],
    );
    order::app(&config).await.unwrap().start().await.unwrap()
}

async fn place(order: SocketAddr, user_id: u64) -> (StatusCode, truss::Error, String) {
    let body = format!(r#"{{"user_id":{user_id},"item":"tea","quantity":1}}"#);
    let (status, _, text) = call(order, "POST", "/v1/orders", Some(&body))
        .await
        .unwrap();
    (
        status,
        truss::Error::from_http(status, text.as_bytes()),
        text,
    )
}

async fn stored(order: SocketAddr) -> StatusCode {
    call(order, "GET", "/v1/orders/1", None).await.unwrap().0
}

#[tokio::test]
async fn places_orders_and_refuses_unknown_users() {
    let dir = tempfile::tempdir().unwrap();
    let users = user_service(dir.path(), Duration::ZERO).await;
    let orders = order_service(
        dir.path(),
        users.grpc_addr().unwrap(),
        Duration::from_secs(3),
    )
    .await;
    let http = orders.http_addr().unwrap();

    let (status, _, text) = place(http, 99).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(truss::Error::from_http(status, text.as_bytes()).is("UNKNOWN_USER"));
    assert_eq!(stored(http).await, StatusCode::NOT_FOUND, "nothing written");

    let (status, _, text) = place(http, 2).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("Grace Hopper"), "{text}");
    assert_eq!(stored(http).await, StatusCode::OK);

    // The order's event is in its outbox, written with it, carrying the request's trace;
    // the refused order left none.
    let db_config = truss::sql::DatabaseConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let db = truss::sql::Database::connect(&db_config, "order")
        .await
        .unwrap();
    let events: Vec<(String, String, String)> = db
        .read("outbox", async |conn| {
            sqlx::query_as("SELECT subject, payload, headers FROM truss_queue")
                .fetch_all(&mut *conn)
                .await
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let (subject, payload, headers) = &events[0];
    assert_eq!(subject, order::repository::ORDER_CREATED);
    let payload: serde_json::Value = serde_json::from_str(payload).unwrap();
    assert_eq!(payload["user_id"], 2);
    assert_eq!(payload["item"], "tea");
    assert!(headers.contains("traceparent"), "{headers}");

    orders.shutdown().await.unwrap();
    users.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_slow_user_service_gets_a_timeout_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let users = user_service(dir.path(), Duration::from_secs(5)).await;
    let orders = order_service(
        dir.path(),
        users.grpc_addr().unwrap(),
        Duration::from_millis(500),
    )
    .await;
    let http = orders.http_addr().unwrap();

    let (status, err, text) = place(http, 1).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    assert!(err.is("USER_SERVICE_TIMEOUT"), "{text}");
    assert_eq!(stored(http).await, StatusCode::NOT_FOUND, "nothing written");

    orders.shutdown().await.unwrap();
    users.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_down_user_service_gets_a_clear_error_and_nothing_is_written() {
    // A port nothing listens on (privileged: no parallel test can take it).
    let closed: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let orders = order_service(dir.path(), closed, Duration::from_secs(3)).await;
    let http = orders.http_addr().unwrap();

    for _ in 0..3 {
        let (status, err, text) = place(http, 1).await;
        // Refused connections fail fast (the only instance is ejected, so calls go through
        // and are refused again) instead of waiting out the 3 s deadline.
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(err.is("USER_SERVICE_UNAVAILABLE"), "{text}");
        assert!(err.message().contains("no order was placed"), "{text}");
    }
    assert_eq!(stored(http).await, StatusCode::NOT_FOUND, "nothing written");
    orders.shutdown().await.unwrap();
}
