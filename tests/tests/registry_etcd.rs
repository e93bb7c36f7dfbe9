//! Registration and discovery against a real etcd started per test on free ports.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::sync::watch;
use truss::registry::etcd::{EtcdConfig, EtcdRegistrar, discover};
use truss::registry::{Instance, Registrar};
use truss::{App, Phase};
use truss_tests::{Etcd, local_config};

fn config(etcd: &Etcd) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        ttl: Duration::from_secs(2),
        timeout: Duration::from_millis(500),
        retry_max: Duration::from_millis(500),
        ..EtcdConfig::default()
    }
}

fn instance(name: &str, id: &str) -> Instance {
    Instance {
        id: id.to_owned(),
        name: name.to_owned(),
        version: "1.2.3".to_owned(),
        http: Some("127.0.0.1:8080".parse().unwrap()),
        grpc: None,
        metadata: [("zone".to_owned(), "a".to_owned())].into(),
    }
}

/// Waits (up to `within`) until the discovered set satisfies `pred`.
async fn until(
    rx: &mut watch::Receiver<Vec<Instance>>,
    within: Duration,
    pred: impl Fn(&[Instance]) -> bool,
) -> bool {
    tokio::time::timeout(within, rx.wait_for(|v| pred(v)))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test]
async fn registered_app_is_discovered_and_gone_before_its_listener_closes() {
    let etcd = Etcd::start().await;
    let (mut rx, _task) = discover(config(&etcd), "svc-a");
    // The first listing is reported even though it finds nobody: clients then know the
    // service has no instance (and fail fast) instead of waiting for a first report.
    let reported = tokio::time::timeout(Duration::from_secs(10), rx.changed()).await;
    assert!(
        matches!(reported, Ok(Ok(()))),
        "the empty listing was not reported"
    );
    assert!(rx.borrow_and_update().is_empty());
    // A drain delay long enough for the deregistration to be seen on a loaded machine.
    let mut app_config = local_config(Duration::from_secs(3), Duration::from_secs(5));
    app_config.shutdown.hook_timeout = Duration::from_secs(2);
    let builder = App::builder("svc-a").version("1.2.3");
    let health = builder.health();
    let running = builder
        .config(&app_config)
        .http(Router::new().route("/", get(|| async { "ok" })))
        .registrar(EtcdRegistrar::new(config(&etcd)).with_health(health))
        .start()
        .await
        .unwrap();
    assert!(
        until(&mut rx, Duration::from_secs(5), |v| v.len() == 1).await,
        "never discovered"
    );
    let seen = rx.borrow().clone();
    assert_eq!(seen[0].name, "svc-a");
    assert_eq!(seen[0].version, "1.2.3");
    assert_eq!(seen[0].http, running.http_addr());
    assert!(running.health().is_ready());

    running.shutdown_handle().shutdown();
    assert!(
        until(&mut rx, Duration::from_millis(2500), |v| v.is_empty()).await,
        "not deregistered"
    );
    // Deregistration came first: the listener is still accepting (drain delay).
    assert_eq!(running.phase(), Phase::Draining);
    assert!(
        tokio::net::TcpStream::connect(running.http_addr().unwrap())
            .await
            .is_ok()
    );
    running.wait().await.unwrap();
}

#[tokio::test]
async fn killed_instance_disappears_after_its_ttl_and_deleted_key_is_put_back() {
    let etcd = Etcd::start().await;
    let (mut rx, _task) = discover(config(&etcd), "svc-b");
    let kept = EtcdRegistrar::new(config(&etcd));
    kept.register(&instance("svc-b", "kept")).await.unwrap();
    let killed = EtcdRegistrar::new(config(&etcd));
    killed.register(&instance("svc-b", "killed")).await.unwrap();
    assert!(until(&mut rx, Duration::from_secs(5), |v| v.len() == 2).await);

    killed.abandon(); // no revoke: only the lease's expiry removes it
    assert!(
        until(&mut rx, Duration::from_secs(6), |v| v.len() == 1
            && v[0].id == "kept")
        .await,
        "a killed instance outlived its TTL"
    );

    // An operator deletes the live instance's key: it is put back.
    etcd.etcdctl(&["del", "/truss/services/svc-b/kept"])
        .unwrap();
    assert!(until(&mut rx, Duration::from_secs(3), |v| v.is_empty()).await);
    assert!(
        until(&mut rx, Duration::from_secs(5), |v| v.len() == 1).await,
        "the deleted key was not put back"
    );
    kept.deregister().await.unwrap();
    assert!(until(&mut rx, Duration::from_secs(3), |v| v.is_empty()).await);
}

// Two workers: the test's blocking `etcdctl` calls must not stall the registrar's task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_keeps_last_endpoints_and_registration_returns() {
    let mut etcd = Etcd::start().await;
    let (mut rx, _task) = discover(config(&etcd), "svc-c");
    let health = truss::Health::new();
    health.set_ready(true);
    let registrar = EtcdRegistrar::new(config(&etcd)).with_health(health.clone());
    registrar.register(&instance("svc-c", "one")).await.unwrap();
    assert!(until(&mut rx, Duration::from_secs(5), |v| v.len() == 1).await);
    assert!(health.is_ready());

    etcd.stop();
    // Three TTLs without etcd: discovery keeps what it knew; readiness reports the loss.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        rx.borrow().len(),
        1,
        "discovery dropped its last known endpoints"
    );
    assert!(!health.is_ready(), "/readyz still claims registration");

    // etcd returns on the same data directory: the lease expired meanwhile, so the
    // instance must register again (within one TTL; the bound leaves room for a loaded
    // machine and etcd's own start).
    etcd.restart().await;
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let listed = etcd
                .etcdctl(&["get", "--prefix", "/truss/services/svc-c/"])
                .unwrap_or_default();
            if listed.contains("\"id\":\"one\"") && health.is_ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        back.is_ok(),
        "not registered again within 10 s of etcd's return"
    );
    assert!(until(&mut rx, Duration::from_secs(5), |v| v.len() == 1).await);
    registrar.deregister().await.unwrap();
}

#[tokio::test]
async fn discovery_converges_across_churn_and_compaction() {
    let etcd = Etcd::start().await;
    let cfg = config(&etcd);
    let (mut rx, _task) = discover(cfg.clone(), "svc-d");
    let first = EtcdRegistrar::new(cfg.clone());
    first.register(&instance("svc-d", "first")).await.unwrap();
    assert!(until(&mut rx, Duration::from_secs(5), |v| v.len() == 1).await);

    // Churn, then compact everything: a watcher resuming from an old revision gets
    // "compacted" and must list again.
    for i in 0..20 {
        etcd.etcdctl(&["put", "/truss/other/k", &i.to_string()])
            .unwrap();
    }
    let status = etcd.etcdctl(&["endpoint", "status", "-w", "json"]).unwrap();
    let revision: i64 = status
        .split("\"revision\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|r| r.parse().ok())
        .expect("revision in endpoint status");
    etcd.etcdctl(&["compact", &revision.to_string()]).unwrap();
    let second = EtcdRegistrar::new(cfg);
    second.register(&instance("svc-d", "second")).await.unwrap();
    assert!(
        until(&mut rx, Duration::from_secs(5), |v| v.len() == 2).await,
        "discovery did not converge after compaction"
    );
    first.deregister().await.unwrap();
    second.deregister().await.unwrap();
}

#[tokio::test]
async fn registry_section_alone_makes_the_app_register_with_its_advertised_address() {
    let etcd = Etcd::start().await;
    let (mut rx, _task) = discover(config(&etcd), "svc-e");
    let mut app_config = local_config(Duration::ZERO, Duration::from_secs(5));
    app_config.http.addr = "0.0.0.0:0".parse().unwrap();
    app_config.registry.advertise_host = Some("127.0.0.9".parse().unwrap());
    app_config.registry.etcd = Some(config(&etcd));
    let running = App::builder("svc-e")
        .config(&app_config)
        .http(Router::new().route("/", get(|| async { "ok" })))
        .start()
        .await
        .unwrap();
    assert!(until(&mut rx, Duration::from_secs(5), |v| v.len() == 1).await);
    let announced = rx.borrow()[0].http.unwrap();
    assert_eq!(announced.ip().to_string(), "127.0.0.9");
    assert_eq!(announced.port(), running.http_addr().unwrap().port());
    running.shutdown().await.unwrap();
    assert!(until(&mut rx, Duration::from_secs(3), |v| v.is_empty()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balanced_client_stops_calling_a_deregistered_instance_without_failures() {
    use hello::pb::HelloRequest;
    use hello::pb::greeter_client::GreeterClient;
    use truss::client::{ClientConfig, grpc_client};
    use truss::registry::Discovery;
    use truss::registry::etcd::EtcdDiscovery;

    let etcd = Etcd::start().await;
    let mut apps = Vec::new();
    for n in 1..=3 {
        let mut app_config = local_config(Duration::from_secs(3), Duration::from_secs(5));
        app_config.registry.etcd = Some(config(&etcd));
        let hello_config = hello::HelloConfig {
            greeting: format!("Hi{n}"),
        };
        apps.push(
            App::builder("greeter")
                .config(&app_config)
                .grpc(hello::Greeter::new(&hello_config).into_service())
                .start()
                .await
                .unwrap(),
        );
    }
    let (mut rx, _task) = discover(config(&etcd), "greeter");
    assert!(until(&mut rx, Duration::from_secs(5), |v| v.len() == 3).await);
    // The client follows its own discovery, as an app's would.
    let instances = EtcdDiscovery::new(config(&etcd)).watch("greeter");
    let channel = grpc_client("greeter", instances, &ClientConfig::default()).unwrap();
    let mut client = GreeterClient::new(channel);

    // Warm up: every instance gets traffic.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let reply = client.say_hello(HelloRequest::default()).await.unwrap();
        seen.insert(reply.into_inner().message);
    }
    assert_eq!(seen.len(), 3, "not spread over three instances: {seen:?}");

    // Instance 3 shuts down: deregisters first, then drains for 3 s before closing. The
    // watch has 2 s to reach the client's balancer (milliseconds when the machine is idle).
    let third = apps.pop().unwrap();
    third.shutdown_handle().shutdown();
    let stopped_at = tokio::time::Instant::now();
    let mut failures = 0;
    let mut late_hits = 0;
    while stopped_at.elapsed() < Duration::from_secs(4) {
        match client.say_hello(HelloRequest::default()).await {
            Ok(reply) => {
                if reply.into_inner().message.starts_with("Hi3")
                    && stopped_at.elapsed() > Duration::from_secs(2)
                {
                    late_hits += 1;
                }
            }
            Err(_) => failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(failures, 0, "calls failed while an instance left");
    assert_eq!(
        late_hits, 0,
        "the deregistered instance still got calls after two seconds"
    );
    third.wait().await.unwrap();
    for app in apps {
        app.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn registers_and_discovers_over_tls() {
    let etcd = Etcd::start_tls().await;
    let cfg = EtcdConfig {
        tls: Some(truss::registry::EtcdTls {
            ca_file: etcd.ca_file(),
            domain: Some("localhost".to_owned()),
            ..Default::default()
        }),
        ..config(&etcd)
    };
    assert!(cfg.endpoints[0].starts_with("https://"));
    let (mut rx, _task) = discover(cfg.clone(), "svc-tls");
    let registrar = EtcdRegistrar::new(cfg.clone());
    registrar
        .register(&instance("svc-tls", "secure"))
        .await
        .unwrap();
    assert!(until(&mut rx, Duration::from_secs(5), |v| v.len() == 1).await);
    let listed = etcd
        .etcdctl(&["get", "--prefix", "/truss/services/svc-tls/"])
        .unwrap();
    assert!(listed.contains("\"id\":\"secure\""), "{listed}");

    // Without the CA, the server certificate is not trusted: nothing registers.
    let untrusted = EtcdConfig { tls: None, ..cfg };
    assert!(
        EtcdRegistrar::new(untrusted)
            .register(&instance("svc-tls", "x"))
            .await
            .is_err()
    );
    registrar.deregister().await.unwrap();
    assert!(until(&mut rx, Duration::from_secs(3), |v| v.is_empty()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_keep_working_on_last_known_endpoints_while_etcd_is_down() {
    use hello::pb::HelloRequest;
    use hello::pb::greeter_client::GreeterClient;
    use truss::client::{ClientConfig, grpc_client};
    use truss::registry::Discovery;
    use truss::registry::etcd::EtcdDiscovery;

    let mut etcd = Etcd::start().await;
    let mut app_config = local_config(Duration::ZERO, Duration::from_secs(5));
    app_config.registry.etcd = Some(config(&etcd));
    let server = App::builder("outage-greeter")
        .config(&app_config)
        .grpc(hello::Greeter::new(&hello::HelloConfig::default()).into_service())
        .start()
        .await
        .unwrap();
    let mut instances = EtcdDiscovery::new(config(&etcd)).watch("outage-greeter");
    assert!(until(&mut instances, Duration::from_secs(5), |v| v.len() == 1).await);
    let channel = grpc_client("outage-greeter", instances, &ClientConfig::default()).unwrap();
    let mut client = GreeterClient::new(channel);
    client.say_hello(HelloRequest::default()).await.unwrap();

    etcd.stop();
    // Calls through three TTLs of etcd outage: every one succeeds.
    let start = tokio::time::Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_secs(6) {
        client
            .say_hello(HelloRequest::default())
            .await
            .expect("a call failed while etcd was down");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(calls > 50);
    etcd.restart().await;
    client.say_hello(HelloRequest::default()).await.unwrap();
    server.shutdown().await.unwrap();
}
