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

/// A handler that panics answers 500 with the error body, on a connection that stays open;
/// the request is counted as a 500 by route and the panic in `truss_panics_total`.
#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_connection_goes_on() {
    async fn boom() -> &'static str {
        panic!("a bug in a handler")
    }
    let routes = axum::Router::new()
        .route("/boom", axum::routing::get(boom))
        .route("/fine", axum::routing::get(|| async { "fine" }));
    let running = App::builder("boom")
        .config(&local_config(Duration::ZERO, Duration::from_secs(5)))
        .http(routes)
        .start()
        .await
        .unwrap();
    let mut h1 = H1::connect(running.http_addr().unwrap()).await.unwrap();
    let (status, body) = h1.get("/boom").await.unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("\"INTERNAL\""), "{body}");
    let (status, body) = h1.get("/fine").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "fine"));
    let (_, metrics) = get(running.admin_addr(), "/metrics").await.unwrap();
    let has = |needle: &[&str]| {
        metrics
            .lines()
            .any(|l| needle.iter().all(|n| l.contains(n)) && l.ends_with(" 1"))
    };
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("truss_panics_total ")),
        "{metrics}"
    );
    assert!(
        has(&[
            "truss_server_requests_total{",
            "route=\"/boom\"",
            "code=\"500\""
        ]),
        "{metrics}"
    );
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

/// Reads until the peer closes or `limit` passes; returns what arrived and whether it closed.
async fn read_until_closed(conn: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// An HTTP/1.1 client's first request head must arrive within `header_read_timeout` of the
/// accept: one silent for most of it that then sends a byte does not get a second whole
/// timeout for the rest of its head (hyper's own timer starts at its first read).
#[tokio::test]
async fn the_first_head_must_arrive_within_the_header_timeout_of_the_accept() {
    use tokio::io::AsyncWriteExt;
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.http.header_read_timeout = Duration::from_secs(1);
    let running = App::builder("slow-head")
        .config(&config)
        .http(axum::Router::new().route("/", axum::routing::get(|| async { "ok" })))
        .start()
        .await
        .unwrap();
    let http = running.http_addr().unwrap();
    let mut slow = tokio::net::TcpStream::connect(http).await.unwrap();
    slow.set_nodelay(true).unwrap();
    // Silent for 0.9 s, a byte, the rest at 1.4 s: past the budget from the accept, within
    // one from the first byte.
    tokio::time::sleep(Duration::from_millis(900)).await;
    slow.write_all(b"G").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = slow.write_all(b"ET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(closed && answer.is_empty(), "served: {answer:?}");
    // A prompt client on the same listener is served as ever.
    let (status, body) = get(http, "/").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    running.shutdown().await.unwrap();
}

/// The HTTP listener tells HTTP/1.1 from h2c by the first bytes: a request starting with
/// `P` (like the HTTP/2 preface) that arrives a byte at a time is still HTTP/1.1, an h2c
/// preface split in two is still HTTP/2, and a connection that sends nothing, a prefix of
/// the preface or the preface alone is closed after the header timeout (slow-loris guard)
/// instead of held forever.
#[tokio::test]
async fn the_http_listener_tells_http1_from_h2c_by_the_first_bytes() {
    use tokio::io::AsyncWriteExt;
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.http.header_read_timeout = Duration::from_millis(300);
    let running = App::builder("sniff")
        .config(&config)
        .http(axum::Router::new().route("/p", axum::routing::put(|| async { "put" })))
        .start()
        .await
        .unwrap();
    let http = running.http_addr().unwrap();

    let mut slow = tokio::net::TcpStream::connect(http).await.unwrap();
    slow.set_nodelay(true).unwrap();
    for byte in b"PUT /p HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" {
        slow.write_all(&[*byte]).await.unwrap();
        if *byte == b'U' {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (answer, _) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("put"), "{answer}");

    // An h2c client whose preface arrives in two pieces.
    let mut split = tokio::net::TcpStream::connect(http).await.unwrap();
    split.set_nodelay(true).unwrap();
    split.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    split.write_all(b"\r\nSM\r\n\r\n").await.unwrap();
    // An empty SETTINGS frame; the server answers with its own SETTINGS (frame type 4).
    split.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        split.read_exact(&mut head).await
    })
    .await
    .expect("no HTTP/2 answer")
    .unwrap();
    assert_eq!(head[3], 4, "the first frame is not SETTINGS: {head:?}");

    // Silent past the header timeout: closed.
    let mut silent = tokio::net::TcpStream::connect(http).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(20)).await;
    assert!(closed, "a silent connection was held open");
    // So is one that stops after a prefix of the preface.
    let mut stuck = tokio::net::TcpStream::connect(http).await.unwrap();
    stuck.write_all(b"PRI * HT").await.unwrap();
    let (_, closed) = read_until_closed(&mut stuck, Duration::from_secs(20)).await;
    assert!(closed, "a connection stuck in the preface was held open");
    // And one that sends the whole preface and then no frame (hyper's HTTP/2 server would
    // wait for ever).
    let mut mute = tokio::net::TcpStream::connect(http).await.unwrap();
    mute.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut mute, Duration::from_secs(20)).await;
    assert!(
        closed,
        "an h2c client silent after its preface was held open"
    );
    // The h2c client that greeted is still served, well past the header timeout.
    let (_, closed) = read_until_closed(&mut split, Duration::from_millis(50)).await;
    assert!(!closed, "an idle h2c client that had greeted was cut off");

    running.shutdown().await.unwrap();
}

/// The gRPC listener closes a connection that does not send HTTP/2's preface and first
/// frame within `grpc.handshake_timeout` (hyper's HTTP/2 server would wait for ever), and
/// keeps serving a client that greeted and then sat idle for longer than that.
#[tokio::test]
async fn the_grpc_listener_closes_connections_that_never_greet() {
    use tokio::io::AsyncWriteExt;

    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.grpc.handshake_timeout = Duration::from_millis(300);
    let running = hello_app().config(&config).start().await.unwrap();
    let grpc = running.grpc_addr().unwrap();

    let mut client = GreeterClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let hello = |name: &str| HelloRequest { name: name.into() };
    client.say_hello(hello("first")).await.unwrap();
    // A raw client that greets (preface and an empty SETTINGS frame) and then sits idle
    // (tonic's channel would reconnect unseen if its connection were closed).
    let mut greeted = tokio::net::TcpStream::connect(grpc).await.unwrap();
    greeted
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();

    let mut silent = tokio::net::TcpStream::connect(grpc).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(20)).await;
    assert!(closed, "a connection that sent nothing was held open");
    let mut mute = tokio::net::TcpStream::connect(grpc).await.unwrap();
    mute.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut mute, Duration::from_secs(20)).await;
    assert!(closed, "a client silent after its preface was held open");

    // Both waits together outlast the timeout: the clients that greeted are still served.
    let (_, closed) = read_until_closed(&mut greeted, Duration::from_millis(50)).await;
    assert!(!closed, "an idle client that had greeted was cut off");
    let reply = client.say_hello(hello("again")).await.unwrap();
    assert_eq!(reply.into_inner().message, "Hello, again!");
    running.shutdown().await.unwrap();
}
