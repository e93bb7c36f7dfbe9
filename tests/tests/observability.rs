//! Trace ids on the wire, and `/metrics` checked by a real `promtool`.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use truss::App;
use truss_tests::{H1, local_config, promtool_check};

#[tokio::test]
async fn malformed_traceparent_starts_a_new_trace() {
    let config = local_config(Duration::ZERO, Duration::from_secs(5));
    let app = App::builder("t")
        .config(&config)
        .http(Router::new().route("/", get(|| async { "ok" })))
        .start()
        .await
        .unwrap();
    let mut conn = H1::connect(app.http_addr().unwrap()).await.unwrap();
    let (status, headers, _) = conn
        .get_with("/", &[("traceparent", "garbage")])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let id = headers["x-trace-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_endpoint_counts_requests_and_passes_promtool() {
    let config = local_config(Duration::ZERO, Duration::from_secs(5));
    let app = App::builder("metrics")
        .config(&config)
        .http(
            Router::new()
                .route("/metrics-test/{id}", get(|| async { "ok" }))
                .route(
                    "/metrics-fail",
                    get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
                ),
        )
        .start()
        .await
        .unwrap();
    let mut conn = H1::connect(app.http_addr().unwrap()).await.unwrap();
    for i in 0..7 {
        assert_eq!(
            conn.get(&format!("/metrics-test/{i}")).await.unwrap().0,
            StatusCode::OK
        );
    }
    for _ in 0..3 {
        conn.get("/metrics-fail").await.unwrap();
    }
    conn.get("/no-such-route/123").await.unwrap();

    let mut admin = H1::connect(app.admin_addr()).await.unwrap();
    let (status, text) = admin.get("/metrics").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let line = |needle: &str| {
        text.lines()
            .find(|l| !l.starts_with('#') && l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in:\n{text}"))
            .to_owned()
    };
    let counted = line(
        "truss_server_requests_total{transport=\"http\",route=\"/metrics-test/{id}\",code=\"200\"}",
    );
    assert!(counted.ends_with(" 7"), "{counted}");
    let failed = line("route=\"/metrics-fail\",code=\"500\"");
    assert!(failed.ends_with(" 3"), "{failed}");
    line("route=\"unmatched\",code=\"404\"");
    assert!(!text.contains("/no-such-route"), "raw path used as a label");
    line("truss_server_request_duration_seconds_bucket");
    line("truss_server_requests_in_flight");
    line("process_resident_memory_bytes");
    line("process_open_fds");
    line("truss_admission_total");

    if let Err(e) = promtool_check(&text) {
        panic!("{e}");
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpc_health_and_readyz_flip_when_shutdown_begins() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let app_config = hello::HelloConfig::default();
    let running = App::builder("health")
        .config(&local_config(
            Duration::from_millis(300),
            Duration::from_secs(5),
        ))
        .grpc(hello::Greeter::new(&app_config).into_service())
        .start()
        .await
        .unwrap();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc_addr().unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = HealthClient::new(channel);
    let check = |service: &str| HealthCheckRequest {
        service: service.to_owned(),
    };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    for name in ["", "hello.v1.Greeter"] {
        let status = client.check(check(name)).await.unwrap().into_inner().status;
        assert_eq!(status, serving, "{name:?}");
    }
    let admin = running.admin_addr();
    assert_eq!(
        truss_tests::get(admin, "/readyz").await.unwrap().0,
        StatusCode::OK
    );

    running.shutdown_handle().shutdown();
    running.reached(truss::Phase::Draining).await;
    // Listeners still accept during the drain delay: the health answer is what changed.
    for name in ["", "hello.v1.Greeter"] {
        let status = client.check(check(name)).await.unwrap().into_inner().status;
        assert_eq!(status, not_serving, "{name:?}");
    }
    assert_eq!(
        truss_tests::get(admin, "/readyz").await.unwrap().0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    running.wait().await.unwrap();
}

#[tokio::test]
async fn client_layer_stack_around_a_tonic_channel() {
    use std::sync::Arc;

    use hello::pb::HelloRequest;
    use hello::pb::greeter_client::GreeterClient;
    use tower::ServiceBuilder;
    use truss::observe::metrics::ClientMetricsLayer;
    use truss::observe::trace::InjectTraceLayer;
    use truss::resilience::breaker::{
        BreakerConfig, Breakers, ClientBreakerLayer, DefaultClassifier,
    };
    use truss::resilience::deadline::PropagateDeadlineLayer;
    use truss::resilience::retry::{RetryConfig, RetryLayer};

    let app_config = hello::HelloConfig::default();
    let server = App::builder("greeter")
        .config(&local_config(Duration::ZERO, Duration::from_secs(5)))
        .grpc(hello::Greeter::new(&app_config).into_service())
        .start()
        .await
        .unwrap();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr().unwrap()))
            .unwrap()
            .connect_lazy();
    // The client stack, outermost first, as the architecture orders it.
    let breakers = Breakers::new(BreakerConfig::default(), Arc::new(DefaultClassifier)).unwrap();
    let stack = ServiceBuilder::new()
        .layer(InjectTraceLayer)
        .layer(ClientMetricsLayer::new("greeter-client-test"))
        .layer(PropagateDeadlineLayer::new(Duration::from_millis(5)))
        .layer(RetryLayer::new("greeter-client-test", &RetryConfig::default()).unwrap())
        .layer(ClientBreakerLayer::new("greeter-client-test", breakers))
        .service(channel);
    let mut client = GreeterClient::new(stack);
    for _ in 0..4 {
        let reply = client
            .say_hello(HelloRequest {
                name: "stack".into(),
            })
            .await
            .unwrap();
        assert_eq!(reply.into_inner().message, "Hello, stack!");
    }
    let status = client
        .say_hello(HelloRequest {
            name: "x".repeat(300),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let text = truss::observe::metrics::render(&truss::observe::metrics::install());
    let line = |needle: &str| {
        text.lines()
            .find(|l| !l.starts_with('#') && l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in:\n{text}"))
            .to_owned()
    };
    let ok = line(
        "truss_client_requests_total{transport=\"grpc\",target=\"greeter-client-test\",operation=\"/hello.v1.Greeter/SayHello\",code=\"0\"}",
    );
    assert!(ok.ends_with(" 4"), "{ok}");
    let invalid =
        line("target=\"greeter-client-test\",operation=\"/hello.v1.Greeter/SayHello\",code=\"3\"");
    assert!(invalid.ends_with(" 1"), "{invalid}");
    server.shutdown().await.unwrap();
}
