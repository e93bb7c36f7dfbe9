//! Property-based API fuzzing of the live `user` and `order` examples from their own OpenAPI
//! documents, with schemathesis (installed by scripts/setup.sh into `.tools/`): no server
//! error, and no response that violates the document (status, content type, body schema,
//! headers), over generated valid and invalid requests, with a token.
//!
//! `positive_data_acceptance` is left out: the examples validate more than their documents
//! say (a user's name must not be empty, `page_size` at most 100, ids from 1), so some
//! schema-valid requests rightly get 400 `VALIDATION_FAILED`.

use std::net::SocketAddr;
use std::path::Path;

use serde::de::DeserializeOwned;
use truss::config::{Config, Section};
use truss_tests::BoxError;

fn example_config<T: Section + DeserializeOwned + Send + Sync + 'static>(
    defaults: &'static str,
    name: &str,
    dir: &Path,
) -> Config<T> {
    let mut config = truss_tests::example_config::<T>(defaults, name);
    config.admission.shed.enabled = false;
    config.log.access = false;
    config.database.data_dir = dir.to_path_buf();
    config
}

/// Runs schemathesis against `http`'s document; its report on failure.
async fn fuzz(http: SocketAddr, token: &str, dir: &Path) -> Result<(), BoxError> {
    let out = tokio::process::Command::new(truss_tests::python_tool("schemathesis"))
        .current_dir(dir) // its example database and reports stay in the temp dir
        .args(["run", &format!("http://{http}/openapi.json")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", "40", "--seed", "1", "--workers", "1"])
        .args(["--generation-database", "none", "--no-color"])
        .kill_on_drop(true)
        .output()
        .await?;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Tested:"), "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_order_hold_to_their_documents_under_fuzzing() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let user_config = example_config::<user::UserConfig>(user::DEFAULTS, "user", dir.path());
    let user_app = user::app(&user_config).await?.start().await?;
    let user_http = user_app.http_addr().ok_or("user http")?;
    let mut config = example_config::<order::OrderConfig>(order::DEFAULTS, "order", dir.path());
    config.registry.static_endpoints.insert(
        "user".to_owned(),
        vec![truss::registry::StaticEndpoint {
            http: user_app.http_addr(),
            grpc: user_app.grpc_addr(),
        }],
    );
    let order_app = order::app(&config).await?.start().await?;
    let token = truss_tests::demo_token(user_http).await?;

    fuzz(user_http, &token, dir.path()).await?;
    fuzz(
        order_app.http_addr().ok_or("order http")?,
        &token,
        dir.path(),
    )
    .await?;

    order_app.shutdown().await?;
    user_app.shutdown().await?;
    Ok(())
}
