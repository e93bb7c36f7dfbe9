//! `[reload]`: how a running app notices config changes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::section::duration;
use crate::section::{Section, ValidationError};

/// `[reload]`: live reload of the configuration.
///
/// ```toml
/// [reload]
/// enabled = true        # default: watch the file, reload on SIGHUP and from etcd
/// poll = "500ms"        # default: how often the config file is checked
/// debounce = "100ms"    # default: changes this close together reload once
///
/// [reload.etcd]         # optional: values above the file, below TRUSS_* variables
/// key = "/config/user"  # one document at one key (`format` below) ...
/// # prefix = "/config/user/"  # ... or one value per key: <prefix>admission.max_in_flight
/// format = "toml"       # of `key`: "toml" (default), "json" or "yaml"
/// ```
///
/// The etcd source uses the connection settings of `[registry.etcd]` (feature `etcd`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Whether the app reloads at all. Default `true`.
    pub enabled: bool,
    /// How often the config file is read to look for a change. Default `500ms`.
    #[serde(with = "duration")]
    pub poll: Duration,
    /// How long the app waits after a change for more before it reloads. Default `100ms`.
    #[serde(with = "duration")]
    pub debounce: Duration,
    /// A config source in etcd.
    pub etcd: Option<EtcdSource>,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll: Duration::from_millis(500),
            debounce: Duration::from_millis(100),
            etcd: None,
        }
    }
}

/// `[reload.etcd]`: config values kept in etcd, watched.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdSource {
    /// One key holding a whole document in `format`.
    pub key: Option<String>,
    /// A prefix: each key under it is a dotted key path (`admission.max_in_flight`) and its
    /// value is read as an environment variable's would be.
    pub prefix: Option<String>,
    /// The format of `key`'s document.
    pub format: DocumentFormat,
}

/// The format of a config document held at one etcd key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentFormat {
    /// TOML (the default).
    #[default]
    Toml,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

impl Section for ReloadConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.poll < Duration::from_millis(10) || self.poll > Duration::from_secs(3600) {
            return Err(ValidationError::new("poll", "must be between 10ms and 1h"));
        }
        if self.debounce > Duration::from_secs(60) {
            return Err(ValidationError::new("debounce", "must be at most 60s"));
        }
        let Some(etcd) = &self.etcd else {
            return Ok(());
        };
        match (&etcd.key, &etcd.prefix) {
            (Some(_), Some(_)) => Err(ValidationError::new(
                "etcd.prefix",
                "set `key` or `prefix`, not both",
            )),
            (None, None) => Err(ValidationError::new(
                "etcd.key",
                "set `key` (one document) or `prefix` (one value per key)",
            )),
            (Some(k), _) | (_, Some(k)) if k.is_empty() => {
                Err(ValidationError::new("etcd.key", "must not be empty"))
            }
            _ if cfg!(not(feature = "etcd")) => Err(ValidationError::new(
                "etcd",
                "is set, but truss was built without its `etcd` feature",
            )),
            _ => Ok(()),
        }
    }
}
