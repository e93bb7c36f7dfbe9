//! Call resilience: breakers, deadlines and retries, with paused time where time matters.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use truss::resilience::breaker::{
    AdaptiveConfig, BreakerConfig, BreakerLayer, Breakers, DefaultClassifier, OpenPolicy,
    StateMachineConfig, Strategy,
};
use truss::resilience::deadline::{
    Deadline, DeadlineLayer, PropagateDeadlineLayer, TimeoutConfig, grpc_timeout,
};
use truss::resilience::retry::{RetryConfig, RetryLayer};

fn breaker_app(healthy: Arc<AtomicBool>, config: BreakerConfig) -> (Router, BreakerLayer) {
    let layer = BreakerLayer::new(Breakers::new(config, Arc::new(DefaultClassifier)).unwrap());
    let app = Router::new()
        .route(
            "/dep",
            get(move || {
                let healthy = healthy.clone();
                async move {
                    if healthy.load(Ordering::Relaxed) {
                        StatusCode::OK
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                }
            }),
        )
        .layer(layer.clone());
    (app, layer)
}

async fn call(app: &Router, path: &str) -> StatusCode {
    let req = Request::get(path).body(Body::empty()).unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test(start_paused = true)]
async fn adaptive_breaker_throttles_within_a_window_and_recovers() {
    let healthy = Arc::new(AtomicBool::new(false));
    let config = BreakerConfig {
        adaptive: AdaptiveConfig {
            window: Duration::from_secs(1),
            buckets: 10,
            force_pass: Duration::ZERO,
            ..AdaptiveConfig::default()
        },
        ..BreakerConfig::default()
    };
    let (app, _) = breaker_app(healthy.clone(), config);

    // Failing dependency, 100 requests in one window (10 ms apart).
    let mut rejected = 0;
    for _ in 0..100 {
        if call(&app, "/dep").await == StatusCode::SERVICE_UNAVAILABLE {
            rejected += 1;
        }
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    assert!(
        rejected > 50,
        "only {rejected} of 100 rejected within one window"
    );

    // The dependency heals: traffic comes back as successes refill the window.
    healthy.store(true, Ordering::Relaxed);
    let mut last = Vec::new();
    for _ in 0..500 {
        last.push(call(&app, "/dep").await);
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    let early = last[..100].iter().filter(|s| **s == StatusCode::OK).count();
    assert!(
        early > 0,
        "nothing got through in the first window after healing"
    );
    assert!(
        last[400..].iter().all(|s| *s == StatusCode::OK),
        "not recovered after four windows: {:?}",
        &last[400..]
    );
}

#[tokio::test]
async fn state_machine_breaker_opens_half_opens_and_closes() {
    let healthy = Arc::new(AtomicBool::new(false));
    let config = opens_after(3, Duration::from_millis(40));
    let (app, layer) = breaker_app(healthy.clone(), config);
    for _ in 0..3 {
        assert_eq!(call(&app, "/dep").await, StatusCode::INTERNAL_SERVER_ERROR);
    }
    let breaker = layer.breakers().get("/dep").unwrap();
    assert_eq!(breaker.state().as_str(), "open");
    assert_eq!(call(&app, "/dep").await, StatusCode::SERVICE_UNAVAILABLE);

    // failsafe keeps time with std::time::Instant, so this waits for real (50 ms).
    healthy.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(call(&app, "/dep").await, StatusCode::OK, "half-open probe");
    assert_eq!(breaker.state().as_str(), "closed");
    assert_eq!(call(&app, "/dep").await, StatusCode::OK);
}

/// A gRPC `UNAVAILABLE` fails a gRPC method's breaker, and an HTTP route's when the response
/// is gRPC (content type); the same header on a plain HTTP `200` does not (the server
/// breaker classifies plain HTTP responses of HTTP routes by status alone).
#[tokio::test]
async fn grpc_status_counts_on_grpc_responses_only() {
    let unavailable = || async {
        let response = Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .body(Body::empty())
            .unwrap();
        Ok::<_, Infallible>(response)
    };
    let config = opens_after(3, Duration::from_secs(600));
    let layer = BreakerLayer::new(Breakers::new(config, Arc::new(DefaultClassifier)).unwrap());
    let app = Router::new()
        .route_service(
            "/pkg.Svc/{*rest}",
            tower::service_fn(move |_| unavailable()),
        )
        .route_service("/proxy/{name}", tower::service_fn(move |_| unavailable()))
        .route("/http", get(|| async { ([("grpc-status", "14")], "fine") }))
        .layer(layer.clone())
        .layer(truss::wire::GrpcRoutesLayer::new());
    for _ in 0..3 {
        call(&app, "/pkg.Svc/Get").await;
        call(&app, "/proxy/x").await;
        assert_eq!(call(&app, "/http").await, StatusCode::OK);
    }
    let state = |name: &str| layer.breakers().get(name).unwrap().state().as_str();
    assert_eq!(state("/pkg.Svc/Get"), "open");
    assert_eq!(
        state("/proxy/{name}"),
        "open",
        "a gRPC response on an HTTP route"
    );
    assert_eq!(state("/http"), "closed");
}

/// A downstream service that records the `grpc-timeout` it receives.
fn recording_downstream(
    seen: Arc<Mutex<Option<Duration>>>,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone
{
    tower::service_fn(move |req: Request<Body>| {
        let seen = seen.clone();
        async move {
            *seen.lock().unwrap() = req
                .headers()
                .get("grpc-timeout")
                .map(|v| grpc_timeout::parse(v.as_bytes()).unwrap());
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn deadline_on_the_way_in_becomes_a_smaller_grpc_timeout_on_the_way_out() {
    let seen = Arc::new(Mutex::new(None));
    let downstream = recording_downstream(seen.clone());
    let app = Router::new()
        .route(
            "/hop",
            get(move || {
                let downstream = downstream.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let mut client = ServiceBuilder::new()
                        .layer(PropagateDeadlineLayer::new(Duration::from_millis(5)))
                        .service(downstream);
                    let req = Request::get("/next").body(Body::empty()).unwrap();
                    client.ready().await.unwrap().call(req).await.unwrap();
                    "ok"
                }
            }),
        )
        .layer(DeadlineLayer::new(TimeoutConfig::default()));
    let req = Request::get("/hop")
        .header("grpc-timeout", "300m")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK);
    let sent = seen
        .lock()
        .unwrap()
        .expect("no grpc-timeout sent downstream");
    // 300 ms in, 20 ms spent, 5 ms margin: 275 ms out.
    assert_eq!(sent, Duration::from_millis(275));
}

#[tokio::test(start_paused = true)]
async fn route_timeout_wins_when_shorter_than_the_callers() {
    let seen = Arc::new(Mutex::new(None));
    let downstream = recording_downstream(seen.clone());
    let mut config = TimeoutConfig::default();
    config.routes.insert(
        "/hop".to_owned(),
        truss::config::duration::HumanDuration(Duration::from_millis(100)),
    );
    let app = Router::new()
        .route(
            "/hop",
            get(move || {
                let downstream = downstream.clone();
                async move {
                    assert!(Deadline::current().is_some());
                    let mut client = PropagateDeadlineLayer::new(Duration::ZERO).layer(downstream);
                    let req = Request::get("/next").body(Body::empty()).unwrap();
                    client.ready().await.unwrap().call(req).await.unwrap();
                    "ok"
                }
            }),
        )
        .layer(DeadlineLayer::new(config));
    let req = Request::get("/hop")
        .header("grpc-timeout", "5S")
        .body(Body::empty())
        .unwrap();
    app.oneshot(req).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(Duration::from_millis(100)));
}

#[tokio::test(start_paused = true)]
async fn expired_deadline_answers_before_the_handler_finishes() {
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let app = Router::new()
        .route(
            "/slow",
            get(move || {
                let flag = flag.clone();
                async move {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    flag.store(true, Ordering::Relaxed);
                    "late"
                }
            }),
        )
        .layer(DeadlineLayer::new(TimeoutConfig::default()));
    let start = tokio::time::Instant::now();
    let req = Request::get("/slow")
        .header("grpc-timeout", "100m")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert!(!finished.load(Ordering::Relaxed));

    let grpc = Request::post("/slow")
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "50m")
        .body(Body::empty())
        .unwrap();
    let router = Router::new()
        .route("/slow", axum::routing::post(std::future::pending::<&str>))
        .layer(DeadlineLayer::new(TimeoutConfig::default()));
    let resp = router.oneshot(grpc).await.unwrap();
    assert_eq!(resp.headers()["grpc-status"], "4");
}

#[tokio::test]
async fn malformed_grpc_timeout_is_refused() {
    let app = Router::new()
        .route("/", get(|| async { "ok" }).post(|| async { "ok" }))
        .layer(DeadlineLayer::new(TimeoutConfig::default()));
    for bad in ["soon", "123456789S", "10", "-5m"] {
        let req = Request::get("/")
            .header("grpc-timeout", bad)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(req).await.unwrap().status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    let req = Request::post("/")
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "soon")
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["grpc-status"], "3"); // INVALID_ARGUMENT
}

/// A state-machine breaker that opens after `failures` failures in a row, for `open`.
fn opens_after(failures: u32, open: Duration) -> BreakerConfig {
    BreakerConfig {
        strategy: Strategy::StateMachine,
        state_machine: StateMachineConfig {
            policy: OpenPolicy::ConsecutiveFailures,
            consecutive_failures: failures,
            open_min: open,
            open_max: open,
            ..StateMachineConfig::default()
        },
        ..BreakerConfig::default()
    }
}

/// A dependency that always answers gRPC UNAVAILABLE, counting attempts.
fn always_unavailable(
    attempts: Arc<AtomicU64>,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone
{
    tower::service_fn(move |_req: Request<Body>| {
        attempts.fetch_add(1, Ordering::Relaxed);
        let (parts, ()) = tonic::Status::unavailable("down")
            .into_http::<()>()
            .into_parts();
        std::future::ready(Ok::<_, Infallible>(Response::from_parts(
            parts,
            Body::empty(),
        )))
    })
}

#[tokio::test(start_paused = true)]
async fn retry_budget_bounds_amplification() {
    let attempts = Arc::new(AtomicU64::new(0));
    let layer = RetryLayer::new("dep", &RetryConfig::default()).unwrap();
    let client = layer.layer(always_unavailable(attempts.clone()));
    const REQUESTS: u64 = 10_000;
    let start = tokio::time::Instant::now();
    // 1000 requests a second for 10 s, concurrently, as a busy client would send them.
    let mut calls = Vec::new();
    for _ in 0..REQUESTS {
        let mut client = client.clone();
        calls.push(tokio::spawn(async move {
            let req = Request::post("/dep.v1.Dep/Get")
                .header("content-type", "application/grpc")
                .body(Body::from("x"))
                .unwrap();
            let resp = client.ready().await.unwrap().call(req).await.unwrap();
            assert_eq!(resp.headers()["grpc-status"], "14");
        }));
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    for call in calls {
        call.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let total = attempts.load(Ordering::Relaxed);
    // 20 % of requests, plus the floor of 10 retries a second (and its 10 s reserve).
    let allowed = REQUESTS as f64 * 1.2 + 10.0 * secs + 100.0;
    assert!(
        total as f64 <= allowed,
        "{total} attempts for {REQUESTS} requests over {secs:.1} s"
    );
    assert!(total > REQUESTS, "no retry happened at all");
    // A naive client with 3 attempts would have made 30 000.
    assert!(total < REQUESTS * 13 / 10);
    println!(
        "attempts / requests = {:.3}",
        total as f64 / REQUESTS as f64
    );
}

#[tokio::test(start_paused = true)]
async fn retry_replays_small_bodies_and_sends_large_ones_once() {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let flaky = tower::service_fn(move |req: Request<Body>| {
        let seen = seen.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut seen = seen.lock().unwrap();
            seen.push(body);
            let status = if seen.len() == 1 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = status;
            Ok::<_, Infallible>(resp)
        }
    });
    let config = RetryConfig {
        max_body: 1024,
        ..RetryConfig::default()
    };
    let mut client = RetryLayer::new("dep", &config).unwrap().layer(flaky);

    let req = Request::put("/item").body(Body::from("payload")).unwrap();
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        *bodies.lock().unwrap(),
        vec![Bytes::from("payload"), Bytes::from("payload")]
    );

    // Not idempotent: a 503 to POST is not retried.
    bodies.lock().unwrap().clear();
    let req = Request::post("/item").body(Body::from("once")).unwrap();
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(bodies.lock().unwrap().len(), 1);

    // Too large to buffer: sent once, whole.
    bodies.lock().unwrap().clear();
    let big = Bytes::from(vec![b'x'; 4096]);
    let req = Request::put("/item").body(Body::from(big.clone())).unwrap();
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(*bodies.lock().unwrap(), vec![big]);
}

#[tokio::test(start_paused = true)]
async fn retry_never_goes_past_the_deadline() {
    let attempts = Arc::new(AtomicU64::new(0));
    let config = RetryConfig {
        backoff_min: Duration::from_millis(50),
        ..RetryConfig::default()
    };
    let mut client = RetryLayer::new("dep", &config)
        .unwrap()
        .layer(always_unavailable(attempts.clone()));
    let req = Request::post("/dep.v1.Dep/Get")
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    Deadline::after(Duration::from_millis(30))
        .scope(async { client.ready().await.unwrap().call(req).await.unwrap() })
        .await;
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        1,
        "retried past a 30 ms deadline"
    );
}

#[tokio::test(start_paused = true)]
async fn client_breaker_stops_sending_to_a_failing_target() {
    use truss::resilience::breaker::ClientBreakerLayer;

    let attempts = Arc::new(AtomicU64::new(0));
    let config = opens_after(3, Duration::from_secs(60));
    let breakers = Breakers::new(config, Arc::new(DefaultClassifier)).unwrap();
    let mut client =
        ClientBreakerLayer::new("dep", breakers).layer(always_unavailable(attempts.clone()));
    for _ in 0..10 {
        let req = Request::post("/dep.v1.Dep/Get")
            .header("content-type", "application/grpc")
            .body(Body::empty())
            .unwrap();
        let _ = client.ready().await.unwrap().call(req).await;
    }
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        3,
        "calls reached an open breaker's target"
    );
    let req = Request::post("/dep.v1.Dep/Get")
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    let err = client.ready().await.unwrap().call(req).await.unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().expect("a tonic status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
}

/// A call an open client breaker refused was never sent: the retry layer does not retry
/// it (the breaker would refuse it again). The downstream's own `UNAVAILABLE` is retried.
#[tokio::test(start_paused = true)]
async fn retry_does_not_retry_an_open_breakers_refusal() {
    use truss::resilience::breaker::ClientBreakerLayer;

    let downstream = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU64::new(0));
    let config = opens_after(1, Duration::from_secs(60));
    let breakers = Breakers::new(config, Arc::new(DefaultClassifier)).unwrap();
    let counted = attempts.clone();
    let mut client = ServiceBuilder::new()
        .layer(RetryLayer::new("dep", &RetryConfig::default()).unwrap())
        .map_request(move |req: Request<Body>| {
            counted.fetch_add(1, Ordering::Relaxed);
            req
        })
        .layer(ClientBreakerLayer::new("dep", breakers))
        .service(always_unavailable(downstream.clone()));
    let req = Request::post("/dep.v1.Dep/Get")
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    let err = client.ready().await.unwrap().call(req).await.unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().expect("a tonic status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(downstream.load(Ordering::Relaxed), 1, "sent once");
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        2,
        "retried the downstream's UNAVAILABLE once, not the breaker's refusal"
    );
}

/// Plain HTTP calls share one breaker per HTTP method, whatever ids their paths carry: a
/// dependency failing on `/users/1`, `/users/2`, ... opens it (a breaker per raw path
/// would never reach its threshold).
#[tokio::test(start_paused = true)]
async fn client_breaker_keys_http_calls_by_method_not_raw_path() {
    use truss::resilience::breaker::ClientBreakerLayer;

    let attempts = Arc::new(AtomicU64::new(0));
    let config = opens_after(3, Duration::from_secs(60));
    let breakers = Breakers::new(config, Arc::new(DefaultClassifier)).unwrap();
    let layer = ClientBreakerLayer::new("user", breakers);
    let mut client = layer.layer(always_unavailable(attempts.clone()));
    for id in 0..10 {
        let req = Request::get(format!("/users/{id}"))
            .body(Body::empty())
            .unwrap();
        let _ = client.ready().await.unwrap().call(req).await;
    }
    assert_eq!(attempts.load(Ordering::Relaxed), 3, "one breaker for GET");
}
