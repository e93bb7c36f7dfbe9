//! The trace id follows a request into handlers, outgoing calls and log lines.
//!
//! Alone in its test binary: `tracing` caches per-callsite interest process-wide, so a test
//! on another thread with no subscriber could switch the request span off under this one.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use truss::App;
use truss::observe::trace::{InjectTraceLayer, TraceContext};
use truss_tests::{H1, local_config};

/// Log lines written through `tracing`, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Sets `tracing-subscriber`'s own formatter, writing here at INFO, as this thread's
    /// default subscriber.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn downstream_echo(headers: HeaderMap) -> String {
    let received = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let own = TraceContext::current()
        .map(|t| t.trace_id_hex())
        .unwrap_or_default();
    tracing::info!("downstream handling");
    format!("{received} {own}")
}

async fn upstream_chain(State(downstream): State<String>) -> String {
    let seen = TraceContext::current()
        .map(|t| t.trace_id_hex())
        .unwrap_or_default();
    tracing::info!("upstream calling downstream");
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ServiceBuilder::new()
        .layer(InjectTraceLayer)
        .service(client);
    let req = Request::get(format!("http://{downstream}/echo"))
        .body(Empty::new())
        .unwrap();
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    format!("{seen}|{}", String::from_utf8_lossy(&body))
}

// A current-thread runtime: the thread-local log subscriber sees every task of both apps.
#[tokio::test(flavor = "current_thread")]
async fn trace_id_follows_the_request_into_handlers_calls_and_logs() {
    let logs = Captured::default();
    let _guard = logs.install();

    let config = local_config(Duration::ZERO, Duration::from_secs(5));
    let down = App::builder("down")
        .config(&config)
        .http(Router::new().route("/echo", get(downstream_echo)))
        .start()
        .await
        .unwrap();
    let down_addr = down.http_addr().unwrap().to_string();
    let up = App::builder("up")
        .config(&config)
        .http(
            Router::new()
                .route("/chain", get(upstream_chain))
                .with_state(down_addr),
        )
        .start()
        .await
        .unwrap();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let mut conn = H1::connect(up.http_addr().unwrap()).await.unwrap();
    let (status, headers, body) = conn
        .get_with("/chain", &[("traceparent", &traceparent)])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-trace-id"], trace_id);
    let (seen, downstream) = body.split_once('|').unwrap();
    assert_eq!(seen, trace_id, "the upstream handler saw another trace id");
    let (received, down_own) = downstream.split_once(' ').unwrap();
    assert!(
        received.starts_with(&format!("00-{trace_id}-")),
        "{received}"
    );
    assert!(
        !received.contains("00f067aa0ba902b7"),
        "the caller's span id was forwarded as is"
    );
    assert_eq!(down_own, trace_id);

    up.shutdown().await.unwrap();
    down.shutdown().await.unwrap();
    let text = logs.text();
    for needle in ["upstream calling downstream", "downstream handling"] {
        let line = text
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line {needle:?} in:\n{text}"));
        // This test's subscriber is `tracing-subscriber`'s own formatter, which quotes
        // string fields (truss's formatter does not).
        assert!(line.contains(&format!("trace_id=\"{trace_id}\"")), "{line}");
        assert!(line.contains("span_id="), "{line}");
    }
    let access = text
        .lines()
        .find(|l| l.contains("truss::access") && l.contains("route=\"/chain\" "))
        .unwrap_or_else(|| panic!("no access line for /chain in:\n{text}"));
    assert!(access.contains("status=200"), "{access}");
    assert!(access.contains(trace_id), "{access}");
    assert!(access.contains("method=\"GET\""), "{access}");
    assert!(access.contains(" duration_us="), "{access}");
    // The caller's address: the test's connection, from loopback.
    assert!(access.contains(" peer=\"127.0.0.1:"), "{access}");
    assert!(!access.contains("grpc_status"), "an HTTP line: {access}");
}

// A gRPC call's access line carries its `grpc-status`: from the trailers for a successful
// call (written when the body ends), from the head for an error sent trailers-only.
#[tokio::test(flavor = "current_thread")]
async fn grpc_access_lines_carry_the_calls_status() {
    use hello::pb::HelloRequest;
    use hello::pb::greeter_client::GreeterClient;

    let logs = Captured::default();
    let _guard = logs.install();

    let app_config = hello::HelloConfig::default();
    let server = App::builder("greeter")
        .config(&local_config(Duration::ZERO, Duration::from_secs(5)))
        .grpc(hello::Greeter::new(&app_config).into_service())
        .start()
        .await
        .unwrap();
    let endpoint = format!("http://{}", server.grpc_addr().unwrap());
    let mut client = GreeterClient::connect(endpoint).await.unwrap();
    let reply = client
        .say_hello(HelloRequest { name: "ok".into() })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "Hello, ok!");
    let status = client
        .say_hello(HelloRequest {
            name: "x".repeat(300),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    drop(client);
    server.shutdown().await.unwrap();

    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("truss::access") && l.contains("/hello.v1.Greeter/SayHello"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per call:\n{text}");
    assert!(
        lines[0].contains("status=200 grpc_status=\"0\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("status=200 grpc_status=\"3\""),
        "{}",
        lines[1]
    );
    for line in lines {
        assert!(line.contains("trace_id="), "{line}");
        assert!(line.contains(" duration_us="), "{line}");
        assert!(line.contains(" peer=\"127.0.0.1:"), "{line}");
    }
}
