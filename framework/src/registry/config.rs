//! `[registry]`: where the instance registers and how clients find others.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::section::duration;
use crate::section::{Section, ValidationError};

/// `[registry]`.
///
/// ```toml
/// [registry]
/// advertise_host = "10.0.0.7"   # the address others reach this instance on; default: the
///                               # bound one, or 127.0.0.1 when bound to 0.0.0.0 / ::
/// [registry.static]             # fixed instances of other services, for clients
/// user = [{ grpc = "127.0.0.1:9090", http = "127.0.0.1:8080" }]
/// [registry.etcd]               # absent: no registration (static endpoints)
/// endpoints = ["http://127.0.0.1:2379"]
/// prefix = "/truss/services"
/// ttl = "10s"
/// ```
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Address announced to the registry in place of an unspecified bind address.
    pub advertise_host: Option<IpAddr>,
    /// Register in etcd (needs the `etcd` feature).
    pub etcd: Option<EtcdConfig>,
    /// Fixed instances per service, used by clients when no etcd is configured.
    #[serde(rename = "static")]
    pub static_endpoints: BTreeMap<String, Vec<StaticEndpoint>>,
}

/// TLS settings for etcd.
///
/// ```toml
/// [registry.etcd.tls]
/// ca_file = "/etc/etcd/ca.pem"       # trusted CA of etcd's server certificate
/// cert_file = "/etc/etcd/client.pem" # client certificate, when etcd asks for one
/// key_file = "/etc/etcd/client-key.pem"
/// domain = "etcd.internal"           # name to verify; default: the endpoint's host
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// PEM file of the CA that signed etcd's certificate.
    pub ca_file: std::path::PathBuf,
    /// PEM client certificate, with `key_file`.
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
    /// Server name to verify.
    #[serde(default)]
    pub domain: Option<String>,
}

/// One fixed instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEndpoint {
    /// Its HTTP address.
    #[serde(default)]
    pub http: Option<SocketAddr>,
    /// Its gRPC address.
    #[serde(default)]
    pub grpc: Option<SocketAddr>,
}

impl Section for RegistryConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        for (service, endpoints) in &self.static_endpoints {
            if endpoints
                .iter()
                .any(|e| e.http.is_none() && e.grpc.is_none())
            {
                return Err(ValidationError::new(
                    format!("static.{service}"),
                    "every endpoint needs an http or grpc address",
                ));
            }
        }
        if let Some(etcd) = &self.etcd {
            if etcd.endpoints.is_empty() {
                return Err(ValidationError::new("etcd.endpoints", "must not be empty"));
            }
            if let Some(tls) = &etcd.tls {
                if tls.cert_file.is_some() != tls.key_file.is_some() {
                    return Err(ValidationError::new(
                        "etcd.tls.cert_file",
                        "cert_file and key_file go together",
                    ));
                }
                if etcd.endpoints.iter().any(|e| !e.starts_with("https://")) {
                    return Err(ValidationError::new(
                        "etcd.endpoints",
                        "must all be https:// when tls is set",
                    ));
                }
            }
            if etcd.ttl < Duration::from_secs(2) {
                return Err(ValidationError::new(
                    "etcd.ttl",
                    "must be at least 2s (etcd's minimum lease)",
                ));
            }
            // Zero would time every call out at once (never registered), or reconnect to
            // an unreachable etcd in a tight loop.
            if etcd.timeout.is_zero() {
                return Err(ValidationError::new("etcd.timeout", "must be above zero"));
            }
            if etcd.retry_max.is_zero() {
                return Err(ValidationError::new("etcd.retry_max", "must be above zero"));
            }
            if cfg!(not(feature = "etcd")) {
                return Err(ValidationError::new(
                    "etcd",
                    "is set, but truss was built without its `etcd` feature",
                ));
            }
        }
        Ok(())
    }
}

/// How to reach etcd and how to register.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// etcd endpoints, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix. Default `/truss/services`.
    pub prefix: String,
    /// Lease time to live. Default `10s` (etcd rounds up to whole seconds, at least 2).
    #[serde(with = "duration")]
    pub ttl: Duration,
    /// User name, with `password`, for etcd auth.
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// TLS to etcd (endpoints must then be `https://`).
    pub tls: Option<EtcdTls>,
    /// Timeout of connecting and of each call. Default `2s`.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Longest wait between attempts while etcd is unreachable. Default `5s`.
    #[serde(with = "duration")]
    pub retry_max: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "/truss/services".to_owned(),
            ttl: Duration::from_secs(10),
            user: None,
            password: None,
            tls: None,
            timeout: Duration::from_secs(2),
            retry_max: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_etcd_timings_are_refused_by_name() {
        for (key, zero) in [
            (
                "etcd.timeout",
                EtcdConfig {
                    timeout: Duration::ZERO,
                    ..EtcdConfig::default()
                },
            ),
            (
                "etcd.retry_max",
                EtcdConfig {
                    retry_max: Duration::ZERO,
                    ..EtcdConfig::default()
                },
            ),
        ] {
            let config = RegistryConfig {
                etcd: Some(zero),
                ..RegistryConfig::default()
            };
            let error = config.validate().unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }
}
