//! The caller's subject is in the request span and the access log; the token never is.
//!
//! Alone in its test binary, as `trace_logs.rs` is: `tracing` caches per-callsite interest
//! process-wide.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use truss::App;
use truss::auth::{AuthConfig, KeyConfig};
use truss_tests::{H1, local_config};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_subject_is_logged_and_the_token_is_not() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let secret = "log-test-secret-0123456789abcdef";
    let mut config = local_config(Duration::ZERO, Duration::from_secs(5));
    config.log.access = true;
    config.auth = AuthConfig {
        keys: vec![KeyConfig {
            kid: None,
            alg: "HS256".into(),
            secret: Some(secret.into()),
            secret_file: None,
            pem_file: None,
        }],
        ..AuthConfig::default()
    };
    let app = App::builder("logs")
        .config(&config)
        .http(Router::new().route(
            "/who",
            get(|| async {
                tracing::info!("handler ran");
                "ok"
            }),
        ))
        .start()
        .await
        .unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "subject-ada-42", "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut h1 = H1::connect(app.http_addr().unwrap()).await.unwrap();
    let bearer = format!("Bearer {token}");
    let (status, _, _) = h1
        .get_with("/who", &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(status, 200);
    let refused = format!("Bearer {}x", &token[..token.len() - 1]);
    let (status, _, _) = h1
        .get_with("/who", &[("authorization", &refused)])
        .await
        .unwrap();
    assert_eq!(status, 401);
    app.shutdown().await.unwrap();

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let handler = text
        .lines()
        .find(|l| l.contains("handler ran"))
        .unwrap_or_default();
    assert!(
        handler.contains("subject=subject-ada-42"),
        "the handler's log line: {text}"
    );
    let access: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("truss::access"))
        .collect();
    assert_eq!(access.len(), 2, "{text}");
    assert!(
        access[0].contains("subject=subject-ada-42") && access[0].contains("status=200"),
        "{text}"
    );
    assert!(
        access[1].contains("status=401") && !access[1].contains("subject="),
        "{text}"
    );
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !text.contains(signature),
        "a token reached the logs: {text}"
    );
}
