//! Graceful shutdown on real sockets: in-flight requests finish, new connections are refused,
//! and the app returns within its bounds even with stuck handlers and idle connections.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing;
use hello::pb::HelloRequest;
use hello::pb::greeter_client::GreeterClient;
use hello::{Greeter, HelloConfig};
use http::StatusCode;
use tokio::sync::mpsc;
use truss::registry::{BoxFuture, Instance, Registrar};
use truss::{App, BoxError, Phase, RunningApp};
use truss_tests::{H1, H2, get, local_config};

/// A route that reports when it is entered, then sleeps `ms` (or forever when `ms` is 0).
fn probe_routes(entered: mpsc::UnboundedSender<()>, ms: u64) -> Router {
    Router::new().route(
        "/probe",
        routing::get(move || {
            let entered = entered.clone();
            async move {
                let _ = entered.send(());
                if ms == 0 {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "done"
            }
        }),
    )
}

async fn start(drain: Duration, grace: Duration, router: Router) -> RunningApp {
    App::builder("shutdown-test")
        .config(&local_config(drain, grace))
        .http(router)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn in_flight_request_completes_and_new_connections_are_refused() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let running = start(
        Duration::from_millis(200),
        Duration::from_secs(30),
        // Far past the 200 ms drain, so it is surely still running at the stop.
        probe_routes(entered_tx, 3000),
    )
    .await;
    let http = running.http_addr().unwrap();
    let admin = running.admin_addr();

    let slow = tokio::spawn(async move { get(http, "/probe").await });
    entered.recv().await.unwrap();

    running.shutdown_handle().shutdown();
    running.reached(Phase::Draining).await;
    // While draining: not ready, but still serving.
    assert_eq!(
        get(admin, "/readyz").await.unwrap().0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    running.reached(Phase::Stopping).await;
    let refused = tokio::net::TcpStream::connect(http).await;
    assert!(refused.is_err(), "a new connection was accepted after stop");
    assert!(
        !slow.is_finished(),
        "the slow request should still be in flight"
    );

    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("app did not return")
        .unwrap();
}

/// A before-stop hook that panics is logged and shutdown goes on: the request in flight
/// finishes, the after-stop hook runs, and `shutdown` returns `Ok`.
#[tokio::test]
async fn a_panicking_hook_does_not_cut_shutdown_short() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let after = Arc::new(Mutex::new(false));
    let ran = after.clone();
    let running = App::builder("shutdown-test")
        .config(&local_config(Duration::ZERO, Duration::from_secs(30)))
        .http(probe_routes(entered_tx, 500))
        .before_stop(|| async { panic!("a bug in a hook") })
        .after_stop(move || async move {
            *ran.lock().unwrap() = true;
        })
        .start()
        .await
        .unwrap();
    let http = running.http_addr().unwrap();
    let slow = tokio::spawn(async move { get(http, "/probe").await });
    entered.recv().await.unwrap();
    running.shutdown().await.unwrap();
    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
    assert!(*after.lock().unwrap(), "the after-stop hook ran");
}

#[tokio::test]
async fn handler_that_never_returns_is_cut_off_after_grace() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let grace = Duration::from_millis(300);
    let running = start(Duration::ZERO, grace, probe_routes(entered_tx, 0)).await;
    let http = running.http_addr().unwrap();

    let stuck = tokio::spawn(async move { get(http, "/probe").await });
    entered.recv().await.unwrap();

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("app did not return")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= grace, "returned before the grace period: {took:?}");
    assert!(took < grace + Duration::from_secs(3), "took {took:?}");
    // The stuck request's connection was closed by force: an error, not a hang.
    let outcome = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("client still waiting");
    assert!(outcome.unwrap().is_err());
}

#[tokio::test]
async fn second_trigger_forces_shutdown_at_once() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let running = start(
        Duration::ZERO,
        Duration::from_secs(600),
        probe_routes(entered_tx, 0),
    )
    .await;
    let http = running.http_addr().unwrap();
    let _stuck = tokio::spawn(async move { get(http, "/probe").await });
    entered.recv().await.unwrap();

    let handle = running.shutdown_handle();
    handle.shutdown();
    running.reached(Phase::Stopping).await;
    handle.force();
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("force did not end the 600 s grace period")
        .unwrap();
}

#[tokio::test]
async fn idle_keep_alive_and_http2_connections_do_not_hold_shutdown() {
    let app = HelloConfig::default();
    // A grace period far longer than the test's timeout: only closing idle connections at
    // once lets shutdown finish in time.
    let running = App::builder("idle")
        .config(&local_config(Duration::ZERO, Duration::from_secs(600)))
        .http(hello::routes(&app))
        .grpc(Greeter::new(&app).into_service())
        .start()
        .await
        .unwrap();
    let http = running.http_addr().unwrap();

    let mut h1 = H1::connect(http).await.unwrap();
    assert_eq!(h1.get("/hello").await.unwrap().0, StatusCode::OK);
    let mut h2 = H2::connect(http).await.unwrap();
    assert_eq!(h2.get("/hello").await.unwrap().0, StatusCode::OK);
    let mut grpc = GreeterClient::connect(format!("http://{}", running.grpc_addr().unwrap()))
        .await
        .unwrap();
    grpc.say_hello(HelloRequest::default()).await.unwrap();

    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("idle connections held shutdown open")
        .unwrap();
    drop((h1, h2, grpc));
}

/// Records the order of lifecycle events.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    fn push(&self, e: impl Into<String>) {
        self.0.lock().unwrap().push(e.into());
    }
    fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct RecordingRegistrar(Events);

impl Registrar for RecordingRegistrar {
    fn register<'a>(&'a self, instance: &'a Instance) -> BoxFuture<'a, Result<(), BoxError>> {
        let http = instance.http.map(|a| a.port() != 0).unwrap_or(false);
        self.0.push(format!("register bound={http}"));
        Box::pin(async { Ok(()) })
    }
    fn deregister(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        self.0.push("deregister");
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn hooks_and_registrar_run_in_order() {
    let events = Events::default();
    let (e1, e2, e3) = (events.clone(), events.clone(), events.clone());
    let builder = App::builder("hooks")
        .config(&local_config(
            Duration::from_millis(50),
            Duration::from_secs(5),
        ))
        .http(Router::new().route("/", routing::get(|| async { "x" })))
        .registrar(RecordingRegistrar(events.clone()));
    let health = builder.health();
    let running = builder
        .before_stop(move || async move {
            e1.push(format!("before-stop ready={}", health.is_ready()));
        })
        .after_stop(move || async move { e2.push("after-stop") })
        .after_stop(std::future::pending) // a hook that hangs is cut off
        .start()
        .await
        .unwrap();
    let http = running.http_addr().unwrap();
    let admin = running.admin_addr();
    e3.push("serving");
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(http).await.is_err());
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());
    assert_eq!(
        events.list(),
        [
            "register bound=true",
            "serving",
            "deregister",
            "before-stop ready=false",
            "after-stop"
        ]
    );
}
