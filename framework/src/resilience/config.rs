use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ratelimit::{Backend, RateLimitRule};
use super::shed::ShedConfig;
use crate::section::{Section, ValidationError};

/// `[admission]`: what the app applies, per listener (HTTP and gRPC separately), before a
/// request reaches a handler. The admin listener is never limited.
///
/// ```toml
/// [admission]
/// max_in_flight = 10000            # per listener; 0 = no limit
///
/// [admission.rate_limit]           # optional global limit, per listener
/// rps = 5000
/// burst = 500
///
/// [admission.routes."/login"]      # route template, or /package.Service/Method for gRPC
/// rps = 5
/// burst = 10
/// key = "ip"                       # "global", "ip" or "header:<name>" (gRPC metadata too)
///
/// [admission.routes."/orders"]     # one limit for all instances together, in Redis
/// rps = 200                        # (feature `redis`, `[redis] url`; see ratelimit's docs)
/// backend = "redis"
/// instances = 4                    # while Redis is away, each instance allows 200 / 4
///
/// [admission.shed]                 # see ShedConfig
/// enabled = true
/// cpu_threshold = 90
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Most requests in flight per listener before rejecting; 0 means no limit.
    /// Default 10000.
    pub max_in_flight: usize,
    /// A global rate limit per listener. Default: none.
    pub rate_limit: Option<RateLimitRule>,
    /// Rate limits per route label (HTTP route template or gRPC method path).
    pub routes: BTreeMap<String, RateLimitRule>,
    /// Adaptive load shedding.
    pub shed: ShedConfig,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 10_000,
            rate_limit: None,
            routes: BTreeMap::new(),
            shed: ShedConfig::default(),
        }
    }
}

impl AdmissionConfig {
    /// The rate limits kept in Redis (`backend = "redis"`), each with its key path in this
    /// section (`rate_limit`, `routes."/login"`).
    pub fn redis_rules(&self) -> impl Iterator<Item = (String, &RateLimitRule)> {
        let global = self
            .rate_limit
            .iter()
            .map(|rule| ("rate_limit".to_owned(), rule));
        let routes = self
            .routes
            .iter()
            .map(|(route, rule)| (format!("routes.\"{route}\""), rule));
        global
            .chain(routes)
            .filter(|(_, rule)| rule.backend == Backend::Redis)
    }
}

impl Section for AdmissionConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(rule) = &self.rate_limit {
            rule.validate().map_err(|e| e.within("rate_limit"))?;
        }
        for (route, rule) in &self.routes {
            rule.validate()
                .map_err(|e| e.within(&format!("routes.\"{route}\"")))?;
        }
        self.shed.validate().map_err(|e| e.within("shed"))
    }
}
