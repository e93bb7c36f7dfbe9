//! What a reload changes: which keys apply live and which wait for a restart.

use serde_json::Value;

use crate::config::{Config, NoAppConfig};

/// A new config split into what applies now and what needs a restart.
#[derive(Debug)]
pub(crate) struct Change {
    /// The config in force after the reload: the new values of live keys, the old values of
    /// the others.
    pub(crate) effective: Config<NoAppConfig>,
    /// Keys whose new value applies now.
    pub(crate) applied: Vec<String>,
    /// Keys whose new value waits for a restart.
    pub(crate) needs_restart: Vec<String>,
}

impl Change {
    /// Splits `new` against the config in force, `old`.
    pub(crate) fn between(old: &Config<NoAppConfig>, new: Config<NoAppConfig>) -> Self {
        let wanted = new.sections_json();
        let effective = keep_restart_only(old, new);
        let now = effective.sections_json();
        Self {
            applied: changed_keys(&old.sections_json(), &now),
            needs_restart: changed_keys(&now, &wanted),
            effective,
        }
    }

    /// Whether any key under `section` (`admission`, `log.level`) changed live.
    pub(crate) fn touches(&self, section: &str) -> bool {
        self.applied.iter().any(|key| {
            key.strip_prefix(section)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    }
}

/// `new` with the old value of every key a running app cannot change: listener addresses
/// and settings, shutdown timings, registry identity, connection pools, trace export,
/// consumers and producers (built once, at start), `[auth.token]` (read by the
/// `TokenIssuer` the team built from it) and `[reload]` itself.
fn keep_restart_only(old: &Config<NoAppConfig>, new: Config<NoAppConfig>) -> Config<NoAppConfig> {
    let mut kept = new;
    kept.http = old.http.clone();
    kept.grpc = old.grpc.clone();
    kept.admin = old.admin.clone();
    kept.shutdown = old.shutdown.clone();
    kept.registry = old.registry.clone();
    kept.database = old.database.clone();
    kept.redis = old.redis.clone();
    kept.reload = old.reload.clone();
    kept.consumers = old.consumers.clone();
    kept.producers = old.producers.clone();
    kept.auth.token = old.auth.token.clone();
    let sample_ratio = kept.trace.sample_ratio;
    kept.trace = old.trace.clone();
    kept.trace.sample_ratio = sample_ratio;
    kept.origin = old.origin.clone();
    kept
}

/// The dotted paths of the leaves that differ between `a` and `b`.
pub(crate) fn changed_keys(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(a, b, &mut String::new(), &mut out);
    out
}

fn diff(a: &Value, b: &Value, path: &mut String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let len = crate::config::push_key(path, key);
                diff(
                    a.get(key.as_str()).unwrap_or(&Value::Null),
                    b.get(key.as_str()).unwrap_or(&Value::Null),
                    path,
                    out,
                );
                path.truncate(len);
            }
        }
        (a, b) if a != b => out.push(path.clone()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn live_keys_apply_and_listener_keys_wait() {
        let old = Config::<NoAppConfig>::default();
        let mut new = old.clone();
        new.admission.max_in_flight = 7;
        new.log.level = "debug".into();
        new.http.addr = "127.0.0.1:1".parse().unwrap();
        new.shutdown.grace = Duration::from_secs(1);
        let change = Change::between(&old, new);
        assert_eq!(change.applied, ["admission.max_in_flight", "log.level"]);
        assert_eq!(change.needs_restart, ["http.addr", "shutdown.grace"]);
        assert_eq!(change.effective.admission.max_in_flight, 7);
        assert_eq!(change.effective.http.addr, old.http.addr);
        assert!(change.touches("admission"));
        assert!(change.touches("log.level"));
        assert!(!change.touches("log.access"));
        assert!(!change.touches("adm"));
    }

    #[test]
    fn producers_and_service_tokens_wait_for_a_restart() {
        let old = Config::<NoAppConfig>::default();
        let mut new = old.clone();
        new.producers.0.insert(
            "order.created".into(),
            crate::queue::ProducerConfig {
                backend: crate::queue::QueueBackend::Redis,
                ..Default::default()
            },
        );
        new.auth.token = Some(crate::auth::TokenConfig {
            key: crate::auth::KeyConfig {
                kid: None,
                alg: "HS256".into(),
                secret: Some("a-secret-of-thirty-two-bytes-min".into()),
                secret_file: None,
                pem_file: None,
            },
            ttl: Duration::from_secs(60),
            issuer: None,
            audience: Vec::new(),
            scope: None,
        });
        let change = Change::between(&old, new);
        assert!(change.applied.is_empty(), "{:?}", change.applied);
        assert!(
            change
                .needs_restart
                .iter()
                .any(|k| k.starts_with("producers"))
                && change
                    .needs_restart
                    .iter()
                    .any(|k| k.starts_with("auth.token")),
            "{:?}",
            change.needs_restart
        );
        assert_eq!(change.effective.producers, old.producers);
    }

    #[test]
    fn keys_with_dots_and_slashes_are_quoted() {
        let a = serde_json::json!({"timeout": {"routes": {"/v1/users": "1s"}}});
        let b = serde_json::json!({"timeout": {"routes": {"/v1/users": "2s"}}});
        assert_eq!(changed_keys(&a, &b), ["timeout.routes.\"/v1/users\""]);
        assert!(changed_keys(&a, &a).is_empty());
    }
}
