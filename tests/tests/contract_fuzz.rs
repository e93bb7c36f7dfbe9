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

use truss_tests::BoxError;

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
    let (user_app, order_app) = truss_tests::user_and_order(dir.path()).await?;
    let user_http = user_app.http_addr().ok_or("user http")?;
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
