//! The etcd config source: read at start, then watched. A lost watch is re-established and
//! the source read again, so a change made while etcd was away is picked up when it is back.

use std::time::Duration;

use etcd_client::{Client, GetOptions, GetResponse, WatchOptions};
use figment::Provider;
use figment::providers::{Format, Json, Toml, Yaml};
use figment::value::{Dict, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{DocumentFormat, EtcdSource};
use super::engine::Trigger;
use crate::BoxError;
use crate::config::ConfigError;
use crate::config::origin::Overlay;
use crate::registry::EtcdConfig;

/// What one read of the source gave: its values (`None`: nothing there) or why they are
/// unusable, and the etcd revision it was read at.
pub(crate) struct Read {
    pub(crate) overlay: Result<Option<Overlay>, ConfigError>,
    pub(crate) revision: i64,
}

/// Reads the source once, within the connection's timeout.
pub(crate) async fn read_once(conn: &EtcdConfig, source: &EtcdSource) -> Result<Read, BoxError> {
    let mut client = conn.connect().await?;
    read(&mut client, conn.timeout, source).await
}

async fn read(
    client: &mut Client,
    timeout: Duration,
    source: &EtcdSource,
) -> Result<Read, BoxError> {
    let (key, options) = query(source);
    let got = tokio::time::timeout(timeout, client.get(key, options))
        .await
        .map_err(|_| "timed out reading the config source from etcd")??;
    Ok(Read {
        revision: got.header().map_or(0, |h| h.revision()),
        overlay: overlay(source, &got),
    })
}

fn query(source: &EtcdSource) -> (&str, Option<GetOptions>) {
    match (&source.key, &source.prefix) {
        (Some(key), _) => (key, None),
        (None, Some(prefix)) => (prefix, Some(GetOptions::new().with_prefix())),
        (None, None) => ("", None),
    }
}

/// The name errors and `/config` give the source.
pub(crate) fn name(source: &EtcdSource) -> String {
    match (&source.key, &source.prefix) {
        (Some(key), _) => format!("etcd key {key}"),
        (_, prefix) => format!("etcd prefix {}", prefix.as_deref().unwrap_or_default()),
    }
}

fn overlay(source: &EtcdSource, got: &GetResponse) -> Result<Option<Overlay>, ConfigError> {
    let name = name(source);
    let values = match (&source.key, &source.prefix) {
        (Some(_), _) => match got.kvs().first() {
            None => return Ok(None),
            Some(kv) => document(&name, source.format, kv.value())?,
        },
        (None, prefix) => {
            let prefix = prefix.as_deref().unwrap_or_default();
            let mut values = Dict::new();
            for kv in got.kvs() {
                let (Ok(key), Ok(raw)) = (kv.key_str(), kv.value_str()) else {
                    return Err(ConfigError::one("", &name, "keys and values must be UTF-8"));
                };
                let path: Vec<String> = key
                    .strip_prefix(prefix)
                    .unwrap_or(key)
                    .split('.')
                    .map(str::to_owned)
                    .collect();
                if path.iter().any(String::is_empty) {
                    let message = format!("key {key} does not name a config key path");
                    return Err(ConfigError::one("", &name, message));
                }
                let value = match raw.parse::<Value>() {
                    Ok(v) => v,
                    Err(never) => match never {},
                };
                crate::config::insert_path(&mut values, &path, value);
            }
            if values.is_empty() {
                return Ok(None);
            }
            values
        }
    };
    Ok(Some(Overlay { name, values }))
}

/// One document in `format`, as a figment dictionary.
fn document(name: &str, format: DocumentFormat, bytes: &[u8]) -> Result<Dict, ConfigError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ConfigError::one("", name, "the document is not UTF-8"))?;
    let data = match format {
        DocumentFormat::Toml => Toml::string(text).data(),
        DocumentFormat::Json => Json::string(text).data(),
        DocumentFormat::Yaml => Yaml::string(text).data(),
    };
    let mut data = data.map_err(|e| ConfigError::one("", name, e.to_string()))?;
    Ok(data.remove(&figment::Profile::Default).unwrap_or_default())
}

/// Watches the source from `revision` (0: read it first) and sends every new read, for as
/// long as the reloader listens. Never gives up: while etcd is away the config in force
/// stays, and the source is read again once it is back.
pub(crate) fn watch(
    conn: EtcdConfig,
    source: EtcdSource,
    mut revision: i64,
    tx: mpsc::Sender<Trigger>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match follow(&conn, &source, &mut revision, &tx).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(source = %name(&source), %error,
                        "config source unavailable; the config in force stays");
                    revision = 0;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(conn.retry_max);
                }
            }
        }
    })
}

/// Reads (unless already read at `revision`) and watches until the watch breaks; `Ok` once
/// the reloader is gone.
async fn follow(
    conn: &EtcdConfig,
    source: &EtcdSource,
    revision: &mut i64,
    tx: &mpsc::Sender<Trigger>,
) -> Result<(), BoxError> {
    let mut client = conn.connect().await?;
    if *revision == 0 {
        let read = read(&mut client, conn.timeout, source).await?;
        *revision = read.revision;
        if tx.send(Trigger::Etcd(read.overlay)).await.is_err() {
            return Ok(());
        }
    }
    let (key, _) = query(source);
    let mut options = WatchOptions::new().with_start_revision(*revision + 1);
    if source.key.is_none() {
        options = options.with_prefix();
    }
    let mut stream = client.watch(key, Some(options)).await?;
    loop {
        let Some(resp) = stream.message().await? else {
            return Err("watch ended".into());
        };
        if resp.canceled() || resp.compact_revision() > 0 {
            return Err("watch cancelled or compacted".into());
        }
        if resp.events().is_empty() {
            continue;
        }
        let read = read(&mut client, conn.timeout, source).await?;
        *revision = read.revision;
        tracing::debug!(source = %name(source), revision, "config source changed");
        if tx.send(Trigger::Etcd(read.overlay)).await.is_err() {
            return Ok(());
        }
    }
}
