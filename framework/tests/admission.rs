//! Admission layers driven through an axum router with paused time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{Request, StatusCode, header};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::ServiceExt;
use truss::resilience::{
    InFlightLimitLayer, KeySpec, RateLimitLayer, RateLimitRule, RateLimits, ShedConfig, ShedLayer,
    Shedder, shed::SystemCpu,
};

fn rule(rps: f64, burst: u32, key: KeySpec) -> RateLimitRule {
    RateLimitRule {
        rps,
        burst: Some(burst),
        key,
        evict_interval: Duration::from_secs(10),
        ..RateLimitRule::default()
    }
}

fn router(limits: RateLimits) -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/open", get(|| async { "open" }))
        .layer(RateLimitLayer::new(limits))
}

fn req(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn from_ip(path: &str, ip: [u8; 4]) -> Request<Body> {
    let mut r = req(path);
    r.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 1234))));
    r
}

async fn status(app: &Router, r: Request<Body>) -> StatusCode {
    app.clone().oneshot(r).await.unwrap().status()
}

#[tokio::test(start_paused = true)]
async fn global_limit_holds_rate_and_burst() {
    let limits = RateLimits::new(Some(&rule(10.0, 5, KeySpec::Global)), &BTreeMap::new()).unwrap();
    let app = router(limits);
    for i in 0..5 {
        assert_eq!(
            status(&app, req("/open")).await,
            StatusCode::OK,
            "burst #{i}"
        );
    }
    let rejected = app.clone().oneshot(req("/open")).await.unwrap();
    assert_eq!(rejected.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rejected.headers()[header::RETRY_AFTER], "1");

    // 10 rps: one token every 100 ms.
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(status(&app, req("/open")).await, StatusCode::OK);
    assert_eq!(
        status(&app, req("/open")).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Over 10 simulated seconds, exactly burst + 10/s × 10 s pass.
    let mut passed = 0;
    for _ in 0..1000 {
        tokio::time::advance(Duration::from_millis(10)).await;
        if status(&app, req("/open")).await == StatusCode::OK {
            passed += 1;
        }
    }
    assert_eq!(passed, 100);
}

#[tokio::test(start_paused = true)]
async fn route_limit_applies_to_its_template_only() {
    let mut routes = BTreeMap::new();
    routes.insert("/users/{id}".to_owned(), rule(1.0, 2, KeySpec::Global));
    let app = router(RateLimits::new(None, &routes).unwrap());
    // Different raw paths, one template: one bucket.
    assert_eq!(status(&app, req("/users/1")).await, StatusCode::OK);
    assert_eq!(status(&app, req("/users/2")).await, StatusCode::OK);
    assert_eq!(
        status(&app, req("/users/3")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..10 {
        assert_eq!(status(&app, req("/open")).await, StatusCode::OK);
    }
}

#[tokio::test(start_paused = true)]
async fn per_key_limits_are_separate_and_idle_keys_are_evicted() {
    let mut routes = BTreeMap::new();
    routes.insert("/open".to_owned(), rule(1.0, 1, KeySpec::ClientIp));
    let limits = RateLimits::new(None, &routes).unwrap();
    let app = router(limits);
    assert_eq!(
        status(&app, from_ip("/open", [10, 0, 0, 1])).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, from_ip("/open", [10, 0, 0, 1])).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client has its own bucket.
    assert_eq!(
        status(&app, from_ip("/open", [10, 0, 0, 2])).await,
        StatusCode::OK
    );

    // A thousand one-off clients are remembered until the eviction interval passes...
    let mut routes = BTreeMap::new();
    routes.insert("/open".to_owned(), rule(1.0, 1, KeySpec::ClientIp));
    let limits = RateLimits::new(None, &routes).unwrap();
    let app = Router::new()
        .route("/open", get(|| async { "open" }))
        .layer(RateLimitLayer::new(limits));
    for i in 0..1000u32 {
        let ip = i.to_be_bytes();
        assert_eq!(status(&app, from_ip("/open", ip)).await, StatusCode::OK);
    }
    // ...and forgotten after it (each bucket refilled long ago).
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(
        status(&app, from_ip("/open", [1, 1, 1, 1])).await,
        StatusCode::OK
    );
    let mut routes = BTreeMap::new();
    routes.insert("/open".to_owned(), rule(1.0, 1, KeySpec::ClientIp));
    let standalone = RateLimits::new(None, &routes).unwrap();
    for i in 0..1000u32 {
        standalone
            .check("/open", &from_ip("/open", i.to_be_bytes()))
            .unwrap();
    }
    assert_eq!(standalone.route("/open").unwrap().tracked_keys(), 1000);
    tokio::time::advance(Duration::from_secs(11)).await;
    standalone
        .check("/open", &from_ip("/open", [9, 9, 9, 9]))
        .unwrap();
    assert_eq!(
        standalone.route("/open").unwrap().tracked_keys(),
        1,
        "idle keys were not evicted"
    );
}

#[tokio::test(start_paused = true)]
async fn header_keyed_limit() {
    let mut routes = BTreeMap::new();
    let key = KeySpec::try_from("header:x-api-key".to_owned()).unwrap();
    routes.insert("/open".to_owned(), rule(1.0, 1, key));
    let app = router(RateLimits::new(None, &routes).unwrap());
    let with_key = |k: &str| {
        Request::get("/open")
            .header("x-api-key", k)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(status(&app, with_key("a")).await, StatusCode::OK);
    assert_eq!(
        status(&app, with_key("a")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&app, with_key("b")).await, StatusCode::OK);
    // No key: one shared anonymous bucket.
    assert_eq!(status(&app, req("/open")).await, StatusCode::OK);
    assert_eq!(
        status(&app, req("/open")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_requests_get_a_grpc_status() {
    let limits = RateLimits::new(Some(&rule(1.0, 1, KeySpec::Global)), &BTreeMap::new()).unwrap();
    let app = router(limits);
    let grpc = || {
        Request::post("/open")
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(Body::empty())
            .unwrap()
    };
    let _ = app.clone().oneshot(grpc()).await.unwrap();
    let rejected = app.clone().oneshot(grpc()).await.unwrap();
    assert_eq!(
        rejected.status(),
        StatusCode::OK,
        "gRPC errors travel in grpc-status"
    );
    assert_eq!(rejected.headers()["grpc-status"], "8"); // RESOURCE_EXHAUSTED
}

#[tokio::test]
async fn in_flight_limit_rejects_instead_of_queueing() {
    let (entered_tx, mut entered_rx) = tokio::sync::mpsc::unbounded_channel();
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let entered = entered_tx.clone();
                let mut release = release_rx.clone();
                async move {
                    let _ = entered.send(());
                    let _ = release.wait_for(|r| *r).await;
                    "done"
                }
            }),
        )
        .layer(InFlightLimitLayer::new(2));
    let a = tokio::spawn(app.clone().oneshot(req("/")));
    let b = tokio::spawn(app.clone().oneshot(req("/")));
    entered_rx.recv().await.unwrap();
    entered_rx.recv().await.unwrap();
    assert_eq!(
        status(&app, req("/")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    release_tx.send(true).unwrap();
    assert_eq!(a.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(b.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(
        status(&app, req("/")).await,
        StatusCode::OK,
        "slots were released"
    );
}

#[tokio::test(start_paused = true)]
async fn shed_layer_rejects_with_503_when_overloaded() {
    let cpu = SystemCpu::manual(1.0);
    let config = ShedConfig {
        cpu_threshold: 80,
        ..ShedConfig::default()
    };
    let shedder = Shedder::new(&config, cpu.clone());
    let slow = Router::new()
        .route(
            "/",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                "ok"
            }),
        )
        .layer(ShedLayer::new(shedder.clone()));
    // History: sequential 10 ms requests -> capacity about 1 in flight.
    for _ in 0..200 {
        assert_eq!(status(&slow, req("/")).await, StatusCode::OK);
    }
    let capacity = shedder.max_flight();
    assert!(capacity < 2.0, "capacity estimate {capacity}");
    // Many at once under high CPU: some are shed, cheaply, with 503.
    let handles: Vec<_> = (0..20)
        .map(|_| tokio::spawn(slow.clone().oneshot(req("/"))))
        .collect();
    let mut codes = Vec::new();
    for h in handles {
        codes.push(h.await.unwrap().unwrap().status());
    }
    let shed = codes
        .iter()
        .filter(|c| **c == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(shed > 0 && shed < 20, "{codes:?}");
}

#[test]
fn every_decision_is_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let limits =
                RateLimits::new(Some(&rule(1.0, 2, KeySpec::Global)), &BTreeMap::new()).unwrap();
            let app = router(limits);
            for _ in 0..5 {
                let _ = app.clone().oneshot(req("/users/7")).await;
            }
        });
    });
    let mut admitted = 0;
    let mut rejected = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != "truss_admission_total" {
            continue;
        }
        let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
        assert!(labels.contains(&("route", "/users/{id}")), "{labels:?}");
        assert!(labels.contains(&("layer", "ratelimit")), "{labels:?}");
        let DebugValue::Counter(n) = value else {
            panic!("not a counter")
        };
        if labels.contains(&("decision", "admitted")) {
            admitted = n;
        } else {
            rejected = n;
        }
    }
    assert_eq!((admitted, rejected), (2, 3));
}

#[test]
fn a_local_layer_refuses_rules_kept_in_redis() {
    let mut routes = BTreeMap::new();
    routes.insert(
        "/orders".to_owned(),
        RateLimitRule {
            backend: truss::resilience::Backend::Redis,
            ..rule(10.0, 5, KeySpec::Global)
        },
    );
    let err = RateLimits::new(None, &routes).unwrap_err();
    assert_eq!(err.field, "routes.\"/orders\".backend");
    assert!(err.message.contains("redis"), "{}", err.message);
}
