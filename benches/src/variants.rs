//! The router variants both layer benchmarks measure: each layer alone on a one-route
//! router, the stacks, and the pass-through baseline. The `full_stack_auth_*` variants are
//! sent [`request_with_token`](crate::auth::request_with_token) (see [`request_for`]), the
//! others [`request`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use tower::ServiceBuilder;
use truss::observe::metrics::MetricsLayer;
use truss::observe::trace::TraceLayer;
use truss::resilience::breaker::{
    BreakerConfig, BreakerLayer, Breakers, DefaultClassifier, StateMachineConfig, Strategy,
};
use truss::resilience::deadline::{DeadlineLayer, TimeoutConfig};
use truss::resilience::{
    AdmissionConfig, InFlightLimitLayer, KeySpec, RateLimitLayer, RateLimitRule, RateLimits,
    ShedConfig, ShedLayer, Shedder, admission_layer, shed::SystemCpu,
};

/// The one-route router every variant wraps.
pub fn base() -> Router {
    Router::new().route("/users/{id}", get(|| async { "ok" }))
}

/// A route whose handler does 20 µs of CPU work, to compare serving with rejecting.
pub fn working() -> Router {
    Router::new().route(
        "/users/{id}",
        get(|| async {
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_micros(20) {
                std::hint::spin_loop();
            }
            "ok"
        }),
    )
}

/// State-machine breakers whose `/users/{id}` breaker five failures opened for an hour:
/// every call is rejected.
pub fn open_breakers() -> Breakers {
    let config = BreakerConfig {
        strategy: Strategy::StateMachine,
        state_machine: StateMachineConfig {
            open_min: Duration::from_secs(3600),
            open_max: Duration::from_secs(3600),
            ..StateMachineConfig::default()
        },
        ..BreakerConfig::default()
    };
    let breakers = Breakers::new(config, Arc::new(DefaultClassifier)).unwrap();
    let breaker = breakers.get("/users/{id}").unwrap();
    for _ in 0..5 {
        breaker.record(false);
    }
    breakers
}

/// Every measured variant: a name and the finished router.
pub fn variants() -> Vec<(&'static str, Router)> {
    let unlimited = RateLimitRule {
        rps: 1e9,
        burst: Some(1_000_000_000),
        key: KeySpec::Global,
        evict_interval: Duration::from_secs(30),
        ..RateLimitRule::default()
    };
    let mut per_ip = BTreeMap::new();
    per_ip.insert(
        "/users/{id}".to_owned(),
        RateLimitRule {
            key: KeySpec::ClientIp,
            ..unlimited.clone()
        },
    );
    let shed = Shedder::new(&ShedConfig::default(), SystemCpu::manual(0.1));
    let shed_hot = Shedder::new(&ShedConfig::default(), SystemCpu::manual(1.0));
    let breakers = || Breakers::new(BreakerConfig::default(), Arc::new(DefaultClassifier)).unwrap();
    let open = open_breakers();
    let open_working = open_breakers();
    let cpu: Arc<dyn truss::resilience::CpuSource> = SystemCpu::manual(0.1);
    let defaults = truss::config::Config::<truss::config::NoAppConfig>::default();
    let mut quiet = defaults.clone();
    quiet.log.access = false;
    let full =
        truss::app::server_stack(base(), truss::wire::Transport::Http, &defaults, Some(&cpu))
            .unwrap();
    let full_quiet =
        truss::app::server_stack(base(), truss::wire::Transport::Http, &quiet, Some(&cpu)).unwrap();
    let mut with_auth = defaults.clone();
    with_auth.auth = crate::auth::auth_config("HS256");
    let full_auth_off =
        truss::app::server_stack(base(), truss::wire::Transport::Http, &defaults, Some(&cpu))
            .unwrap();
    let full_auth =
        truss::app::server_stack(base(), truss::wire::Transport::Http, &with_auth, Some(&cpu))
            .unwrap();
    let list = vec![
        ("passthrough", base()),
        // The whole stack the app applies with its default config (trace with access log,
        // metrics, in-flight limit, shedding, breaker, deadline, panic catcher).
        ("full_default_stack", full),
        ("full_stack_no_access_log", full_quiet),
        // The default stack sent a valid HS256 bearer token: `[auth]` off (the header is
        // ignored), and on with one HS256 key (the route is protected by default).
        ("full_stack_auth_off", full_auth_off),
        ("full_stack_auth_hs256", full_auth),
        // A layer that does nothing: what axum's per-route layering itself costs.
        (
            "noop_layer",
            base().layer(tower::util::MapRequestLayer::new(|r: Request<Body>| r)),
        ),
        ("inflight", base().layer(InFlightLimitLayer::new(1_000_000))),
        (
            "ratelimit_global",
            base().layer(RateLimitLayer::new(
                RateLimits::new(Some(&unlimited), &BTreeMap::new()).unwrap(),
            )),
        ),
        (
            "ratelimit_route_ip",
            base().layer(RateLimitLayer::new(RateLimits::new(None, &per_ip).unwrap())),
        ),
        ("shed_cpu_low", base().layer(ShedLayer::new(shed))),
        ("shed_cpu_high", base().layer(ShedLayer::new(shed_hot))),
        (
            "breaker_adaptive",
            base().layer(BreakerLayer::new(breakers())),
        ),
        (
            "breaker_open_rejects",
            base().layer(BreakerLayer::new(open)),
        ),
        (
            "breaker_closed_serves_20us",
            working().layer(BreakerLayer::new(breakers())),
        ),
        (
            "breaker_open_rejects_20us",
            working().layer(BreakerLayer::new(open_working)),
        ),
        (
            "deadline",
            base().layer(DeadlineLayer::new(TimeoutConfig::default())),
        ),
        (
            "catch_panic",
            base().layer(truss::resilience::CatchPanicLayer),
        ),
        ("trace", base().layer(TraceLayer::new(false))),
        ("trace_access_log", base().layer(TraceLayer::new(true))),
        (
            "metrics",
            base().layer(MetricsLayer::new(truss::wire::Transport::Http)),
        ),
        (
            "trace_and_metrics",
            base().layer(
                ServiceBuilder::new()
                    .layer(TraceLayer::new(false))
                    .layer(MetricsLayer::new(truss::wire::Transport::Http)),
            ),
        ),
        (
            "admission_stack",
            base().layer(
                admission_layer(
                    &AdmissionConfig {
                        rate_limit: Some(unlimited.clone()),
                        ..AdmissionConfig::default()
                    },
                    Some(SystemCpu::manual(0.1)),
                )
                .unwrap(),
            ),
        ),
    ];
    // As the app does: handlers become finished services once, not on every request.
    list.into_iter()
        .map(|(n, r)| (n, r.with_state(())))
        .collect()
}

/// The variants sent [`request_with_token`](crate::auth::request_with_token).
pub const BEARER_VARIANTS: &[&str] = &["full_stack_auth_off", "full_stack_auth_hs256"];

/// Whether variant `name` is sent a bearer token.
pub fn sends_token(name: &str) -> bool {
    BEARER_VARIANTS.contains(&name)
}

/// The request variant `name` serves, chosen once before the measured loop.
pub fn request_for(name: &str) -> fn() -> Request<Body> {
    if sends_token(name) {
        crate::auth::request_with_token
    } else {
        request
    }
}

/// The request every variant serves: `GET /users/42` from a client address.
pub fn request() -> Request<Body> {
    let mut req = Request::get("/users/42").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [10, 0, 0, 1],
            5000,
        ))));
    req
}
