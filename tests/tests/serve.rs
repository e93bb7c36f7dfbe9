//! One app serves HTTP (HTTP/1.1 and h2c), gRPC and the admin endpoints on real sockets.

use std::time::Duration;

use hello::pb::HelloRequest;
use hello::pb::greeter_client::GreeterClient;
use hello::{Greeter, HelloConfig};
use http::StatusCode;
use truss::App;
use truss_tests::{H1, H2, get, local_config};

fn hello_app() -> truss::AppBuilder {
    let app = HelloConfig::default();
    App::builder("hello")
        .config(&local_config(Duration::ZERO, Duration::from_secs(5)))
        .http(hello::routes(&app))
        .grpc(Greeter::new(&app).into_service())
}

#[tokio::test]
async fn serves_http_grpc_and_admin_from_one_app() {
    let running = hello_app().start().await.unwrap();
    let http = running.http_addr().unwrap();
    let grpc = running.grpc_addr().unwrap();
    let admin = running.admin_addr();
    assert_ne!(
        http.port(),
        0,
        "the bound port is reported, not the configured 0"
    );

    let (status, body) = get(http, "/hello?name=Ada").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "Hello, Ada!"));

    let mut h2 = H2::connect(http).await.unwrap();
    let (status, body) = h2.get("/hello?name=h2c").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "Hello, h2c!"));

    let mut client = GreeterClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let reply = client
        .say_hello(HelloRequest {
            name: "gRPC".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "Hello, gRPC!");

    let bad = client
        .say_hello(HelloRequest {
            name: "x".repeat(300),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    assert_eq!(get(admin, "/healthz").await.unwrap().0, StatusCode::OK);
    let (status, body) = get(admin, "/readyz").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"ready\":true"), "{body}");

    // The admin listener does not serve the team's routes, nor HTTP the admin ones.
    assert_eq!(get(admin, "/hello").await.unwrap().0, StatusCode::NOT_FOUND);
    assert_eq!(get(http, "/readyz").await.unwrap().0, StatusCode::NOT_FOUND);

    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown hangs")
        .unwrap();
}

#[tokio::test]
async fn malformed_input_gets_4xx_not_a_panic() {
    let running = hello_app().start().await.unwrap();
    let http = running.http_addr().unwrap();
    let mut conn = H1::connect(http).await.unwrap();
    for path in [
        "/sleep?ms=abc",
        "/sleep",
        "/sleep?ms=-1",
        "/sleep?ms=99999999",
    ] {
        let (status, _) = conn.get(path).await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
    }
    // The connection and the app live on.
    assert_eq!(conn.get("/hello").await.unwrap().0, StatusCode::OK);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn port_in_use_is_a_clear_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = local_config(Duration::ZERO, Duration::from_secs(1));
    config.admin.addr = taken.local_addr().unwrap();
    let err = App::builder("x").config(&config).start().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("admin listener"), "{text}");
    assert!(text.contains(&config.admin.addr.to_string()), "{text}");
}
