//! Admission control wired by the app from config, on real sockets with a real gRPC client.

use std::time::Duration;

use hello::pb::HelloRequest;
use hello::pb::greeter_client::GreeterClient;
use hello::{Greeter, HelloConfig};
use http::StatusCode;
use truss::App;
use truss::resilience::{KeySpec, RateLimitRule};
use truss_tests::{H1, local_config};

fn rule(rps: f64, burst: u32) -> RateLimitRule {
    RateLimitRule {
        rps,
        burst: Some(burst),
        key: KeySpec::ClientIp,
        ..RateLimitRule::default()
    }
}

#[tokio::test]
async fn configured_route_limits_apply_to_http_and_grpc_but_not_admin() {
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    // A tiny rate: the bucket cannot refill during the test.
    config
        .admission
        .routes
        .insert("/hello".to_owned(), rule(0.001, 2));
    config
        .admission
        .routes
        .insert("/hello.v1.Greeter/SayHello".to_owned(), rule(0.001, 1));
    config.admission.rate_limit = Some(RateLimitRule {
        rps: 0.001,
        burst: Some(50),
        ..RateLimitRule::default()
    });
    let app = HelloConfig::default();
    let running = App::builder("limited")
        .config(&config)
        .http(hello::routes(&app))
        .grpc(Greeter::new(&app).into_service())
        .start()
        .await
        .unwrap();
    let http = running.http_addr().unwrap();

    let mut conn = H1::connect(http).await.unwrap();
    assert_eq!(conn.get("/hello").await.unwrap().0, StatusCode::OK);
    assert_eq!(conn.get("/hello?name=x").await.unwrap().0, StatusCode::OK);
    let (status, body) = conn.get("/hello").await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // In the error model: a JSON body with a reason, like handler errors.
    assert!(
        truss::Error::from_http(status, body.as_bytes()).is("RATE_LIMITED"),
        "{body}"
    );
    // Another route is not limited by /hello's rule.
    assert_eq!(conn.get("/sleep?ms=0").await.unwrap().0, StatusCode::OK);

    let mut grpc = GreeterClient::connect(format!("http://{}", running.grpc_addr().unwrap()))
        .await
        .unwrap();
    grpc.say_hello(HelloRequest::default()).await.unwrap();
    let err = grpc.say_hello(HelloRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        truss::Error::from(err).is("RATE_LIMITED"),
        "no ErrorInfo reason"
    );

    // The admin listener is never limited: far more than any burst.
    let mut admin = H1::connect(running.admin_addr()).await.unwrap();
    for _ in 0..100 {
        assert_eq!(admin.get("/readyz").await.unwrap().0, StatusCode::OK);
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_admission_config_given_in_code_is_refused_at_start() {
    let mut config = local_config(Duration::ZERO, Duration::from_secs(1));
    config.admission.shed.cpu_threshold = 101;
    let err = App::builder("bad")
        .config(&config)
        .start()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("admission.shed.cpu_threshold"), "{text}");
}

#[tokio::test]
async fn app_sheds_with_an_injected_cpu_source() {
    use axum::Router;
    use axum::routing::get;
    use truss::resilience::shed::SystemCpu;

    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.admission.shed.enabled = true;
    let cpu = SystemCpu::manual(1.0);
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, release) = tokio::sync::watch::channel(false);
    let router = Router::new().route(
        "/hold",
        get(move || {
            let entered = entered_tx.clone();
            let mut release = release.clone();
            async move {
                let _ = entered.send(());
                let _ = release.wait_for(|r| *r).await;
                "done"
            }
        }),
    );
    let running = App::builder("shedding")
        .config(&config)
        .cpu_source(cpu)
        .http(router)
        .start()
        .await
        .unwrap();
    let http = running.http_addr().unwrap();
    // With no history the estimate is 10 in flight: hold 11, then the next is shed.
    let mut held = Vec::new();
    for _ in 0..11 {
        held.push(tokio::spawn(async move {
            truss_tests::get(http, "/hold").await
        }));
        entered.recv().await.unwrap();
    }
    let (status, _) = truss_tests::get(http, "/hold").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    release_tx.send(true).unwrap();
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().0, StatusCode::OK);
    }
    running.shutdown().await.unwrap();
}
