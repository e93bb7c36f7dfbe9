//! The JWKS source: fetched over HTTP on a schedule and early for unknown key ids, at most
//! once per `min_refresh`; a failed fetch keeps the cached keys.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::JwksConfig;
use super::keys::{self, KeySet};
use crate::section::ValidationError;

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;

pub(crate) struct Jwks {
    uri: Uri,
    refresh: Duration,
    min_refresh: Duration,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// Held during a fetch, so concurrent callers wait for it instead of fetching again.
    fetching: Mutex<()>,
    /// When the last early fetch (for an unknown key id) started.
    last_early: std::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    pub(crate) fn new(url: &str, config: &JwksConfig) -> Result<Self, ValidationError> {
        let uri = url
            .parse::<Uri>()
            .map_err(|e| ValidationError::new("jwks.url", format!("not a URL: {e}")))?;
        Ok(Self {
            uri,
            refresh: config.refresh,
            min_refresh: config.min_refresh,
            timeout: config.timeout,
            client: Client::builder(TokioExecutor::new()).build(connector(config)?),
            fetching: Mutex::new(()),
            last_early: std::sync::Mutex::new(None),
        })
    }
}

/// HTTPS (the system's CAs, plus `ca_file`'s) or plain HTTP, as the URL says.
fn connector(config: &JwksConfig) -> Result<HttpsConnector<HttpConnector>, ValidationError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = &config.ca_file {
        let bad =
            |e: String| ValidationError::new("jwks.ca_file", format!("{}: {e}", path.display()));
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
        for cert in certs {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ValidationError::new("jwks.url", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build())
}

impl Jwks {
    pub(crate) fn period(&self) -> Duration {
        self.refresh
    }

    /// Whether `other` fetches from the same URL.
    pub(crate) fn same_source(&self, other: &Jwks) -> bool {
        self.uri == other.uri
    }

    /// A scheduled fetch; `store` takes the keys fetched before another fetch can start.
    pub(crate) async fn fetch(&self, store: impl FnOnce(KeySet)) {
        let _fetching = self.fetching.lock().await;
        if let Some(keys) = self.fetch_counted("scheduled").await {
            store(keys);
        }
    }

    /// A fetch for an unknown key id, unless such a fetch started less than `min_refresh`
    /// ago. Callers arriving during a fetch wait for it and fetch nothing themselves: `store`
    /// takes the keys while the fetch still holds its lock, so they are in force once those
    /// callers go on.
    pub(crate) async fn fetch_early(&self, store: impl FnOnce(KeySet)) {
        let _fetching = self.fetching.lock().await;
        {
            let mut last = self
                .last_early
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
                return;
            }
            *last = Some(Instant::now());
        }
        if let Some(keys) = self.fetch_counted("unknown_kid").await {
            store(keys);
        }
    }

    async fn fetch_counted(&self, trigger: &'static str) -> Option<KeySet> {
        let result = self.get().await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("truss_auth_jwks_refresh_total", "trigger" => trigger, "result" => outcome)
            .increment(1);
        match result {
            Ok((keys, skipped)) => {
                tracing::debug!(url = %self.uri, skipped, "JWKS refreshed");
                Some(keys)
            }
            Err(e) => {
                tracing::warn!(url = %self.uri, error = %e, "JWKS refresh failed; the cached keys stay in force");
                None
            }
        }
    }

    async fn get(&self) -> Result<(KeySet, usize), String> {
        let request = Request::get(self.uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            keys::from_jwks(&body.to_bytes())
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}
