//! Clients by service name over static discovery (no etcd): HTTP and gRPC calls spread over
//! every configured instance.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http_body_util::BodyExt;
use tower::{Service, ServiceExt};
use truss::App;
use truss::client::{ClientConfig, grpc_client, http_client};
use truss::registry::{Discovery, StaticDiscovery, StaticEndpoint};
use truss_tests::local_config;

#[tokio::test]
async fn static_discovery_feeds_balanced_http_and_grpc_clients() {
    let mut apps = Vec::new();
    let mut endpoints = Vec::new();
    for n in 1..=2 {
        let hello_config = hello::HelloConfig {
            greeting: format!("Hi{n}"),
        };
        let app = App::builder("hello")
            .config(&local_config(Duration::ZERO, Duration::from_secs(5)))
            .http(hello::routes(&hello_config))
            .grpc(hello::Greeter::new(&hello_config).into_service())
            .start()
            .await
            .unwrap();
        endpoints.push(StaticEndpoint {
            http: app.http_addr(),
            grpc: app.grpc_addr(),
        });
        apps.push(app);
    }
    let discovery = StaticDiscovery::new(BTreeMap::from([("hello".to_owned(), endpoints)]));
    assert!(discovery.watch("nobody").borrow().is_empty());

    let mut http =
        http_client("hello", discovery.watch("hello"), &ClientConfig::default()).unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let req = http::Request::get("/hello?name=http")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = http.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        seen.insert(String::from_utf8(body.to_vec()).unwrap());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["Hi1, http!".to_owned(), "Hi2, http!".to_owned()])
    );

    let channel = grpc_client("hello", discovery.watch("hello"), &ClientConfig::default()).unwrap();
    let mut grpc = hello::pb::greeter_client::GreeterClient::new(channel);
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let reply = grpc
            .say_hello(hello::pb::HelloRequest {
                name: "grpc".into(),
            })
            .await
            .unwrap();
        seen.insert(reply.into_inner().message);
    }
    assert_eq!(
        seen,
        BTreeSet::from(["Hi1, grpc!".to_owned(), "Hi2, grpc!".to_owned()])
    );
    for app in apps {
        app.shutdown().await.unwrap();
    }
}

/// A service discovery reports without an instance fails at once with `UNAVAILABLE` (with
/// no deadline, the balancer used to wait for ever), before discovery's first report calls
/// wait, and calls are served again once an instance appears.
#[tokio::test]
async fn a_service_with_no_instance_fails_fast_and_recovers() {
    let hello_config = hello::HelloConfig::default();
    let app = App::builder("hello")
        .config(&local_config(Duration::ZERO, Duration::from_secs(5)))
        .grpc(hello::Greeter::new(&hello_config).into_service())
        .start()
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    let channel = grpc_client("hello", rx, &ClientConfig::default()).unwrap();
    let mut grpc = hello::pb::greeter_client::GreeterClient::new(channel);
    let request = || hello::pb::HelloRequest {
        name: "grpc".into(),
    };
    // No report yet: the call waits for an instance.
    let waiting = tokio::time::timeout(Duration::from_millis(300), grpc.say_hello(request()));
    assert!(
        waiting.await.is_err(),
        "a call before discovery's first report waits"
    );
    // Discovery answered: nobody. (A call made before the client saw the answer waits in
    // the balancer's queue, as the first did: each try is bounded.)
    tx.send(Vec::new()).unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let call = tokio::time::timeout(Duration::from_millis(200), grpc.say_hello(request()));
            if let Ok(Err(status)) = call.await
                && status.code() == tonic::Code::Unavailable
            {
                return status;
            }
        }
    });
    let status = refused
        .await
        .expect("a call to a service without instances fails fast");
    assert!(status.message().contains("`hello`"), "{}", status.message());
    // Refused without being sent: neither retried nor held against the service by the
    // client breaker, however many.
    for _ in 0..30 {
        let status = grpc.say_hello(request()).await.unwrap_err();
        assert!(status.message().contains("no instance"), "{status:?}");
    }
    // An instance appears: served.
    tx.send(vec![truss::registry::Instance {
        id: "hello-1".into(),
        name: "hello".into(),
        version: "0".into(),
        http: None,
        grpc: app.grpc_addr(),
        metadata: BTreeMap::new(),
    }])
    .unwrap();
    let served = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match grpc.say_hello(request()).await {
                Ok(reply) => return reply.into_inner().message,
                Err(status) => assert!(
                    !status.message().contains("breaker"),
                    "the breaker counted the refusals: {status:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(
        served
            .await
            .expect("served once an instance appears")
            .contains("grpc")
    );
    app.shutdown().await.unwrap();
}

/// Each retry sends the time left then, not the first attempt's budget: the second
/// attempt's `grpc-timeout` is below the first's by at least the time the first took.
#[tokio::test]
async fn each_attempt_sends_the_time_left() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let record = seen.clone();
    let unavailable = move |headers: http::HeaderMap| {
        let record = record.clone();
        async move {
            let budget = headers
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(grpc_timeout)
                .unwrap_or(Duration::MAX);
            let first = {
                let mut seen = record.lock().unwrap();
                seen.push(budget);
                seen.len() == 1
            };
            if first {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            [
                ("content-type", "application/grpc"),
                ("grpc-status", "14"),
                ("grpc-message", "down"),
            ]
        }
    };
    let router = axum::Router::new().route(
        "/hello.v1.Greeter/SayHello",
        axum::routing::post(unavailable),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let instance = truss::registry::Instance {
        id: "down-1".into(),
        name: "hello".into(),
        version: "0".into(),
        http: None,
        grpc: Some(addr),
        metadata: BTreeMap::new(),
    };
    let (_tx, rx) = tokio::sync::watch::channel(vec![instance]);
    let channel = grpc_client("hello", rx, &ClientConfig::default()).unwrap();
    let mut grpc = hello::pb::greeter_client::GreeterClient::new(channel);
    let call = grpc.say_hello(hello::pb::HelloRequest {
        name: "grpc".into(),
    });
    let deadline = truss::resilience::deadline::Deadline::after(Duration::from_secs(5));
    let status = deadline.scope(call).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "retried: {seen:?}");
    assert!(
        seen[1] + Duration::from_millis(300) <= seen[0],
        "the second attempt was sent the first's budget: {seen:?}"
    );
    server.abort();
}

/// A `grpc-timeout` value (`999m`, `5S`, ...).
fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}
