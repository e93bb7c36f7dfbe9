//! Clients and discovery are usually built before the app starts (and installs the metrics
//! recorder); what they record in between must still reach `/metrics`. Its own test binary:
//! nothing else may install the recorder first.

use std::time::Duration;

use truss::registry::etcd::{EtcdConfig, discover};
use truss_tests::Etcd;

#[tokio::test]
async fn discovery_gauge_set_before_the_app_starts_is_rendered() {
    let etcd = Etcd::start().await;
    let value = r#"{"id":"a","name":"early","version":"1","http":null,"grpc":"127.0.0.1:1"}"#;
    etcd.etcdctl(&["put", "/truss/services/early/a", value])
        .unwrap();

    let config = EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        ..EtcdConfig::default()
    };
    let (mut rx, _task) = discover(config, "early");
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|v| v.len() == 1))
        .await
        .expect("discovered in time")
        .expect("discovery alive");

    // Only now does "the app" install its recorder and render.
    let handle = truss::observe::metrics::install();
    let text = truss::observe::metrics::render(&handle);
    assert!(
        text.contains("truss_registry_endpoints{target=\"early\"} 1"),
        "gauge recorded before the recorder was installed is missing:\n{text}"
    );
}
