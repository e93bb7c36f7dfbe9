//! Circuit breakers: adaptive throttling (the default) or a closed / open / half-open state
//! machine, one per route (server) or per target and method (client).
//!
//! * **adaptive** — Google SRE client-side throttling, as go-zero and Kratos do it, with
//!   every parameter configurable ([`AdaptiveConfig`]). No states: the rejection probability
//!   follows the recent ratio of requests to successes.
//! * **state_machine** — [`failsafe`]'s breaker: opens after `consecutive_failures` failures
//!   or when the success rate over `window` falls below `success_rate`, stays open for a
//!   jittered, growing backoff between `open_min` and `open_max`, then half-opens.
//!
//! What counts as a failure is a [`Classify`]; the default counts HTTP 5xx and the gRPC
//! statuses `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `DATA_LOSS`, `UNIMPLEMENTED` and
//! `RESOURCE_EXHAUSTED` (as go-zero does), plus transport errors on the client. A gRPC status
//! sent in trailers after a streamed body is not seen; unary errors are (tonic sends them as
//! trailers-only responses, with `grpc-status` in the headers).
//!
//! Server rejections are HTTP 503 / gRPC `UNAVAILABLE`; client rejections are an error
//! holding `tonic::Status::unavailable`.
//!
//! Metrics: `truss_breaker_requests_total{breaker, decision}` (`admitted`, `rejected`),
//! `truss_breaker_outcomes_total{breaker, outcome}` (`success`, `failure`),
//! `truss_breaker_state{breaker}` (state machine: 0 closed, 1 half-open, 2 open) and
//! `truss_breaker_drop_ratio{breaker}` (adaptive).

mod adaptive;
mod classify;
mod layer;
mod state;
mod state_machine;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use adaptive::AdaptiveConfig;
pub use classify::{Classify, DefaultClassifier};
pub use layer::{
    BreakerExempt, BreakerLayer, BreakerService, ClientBreaker, ClientBreakerLayer, RouteBreaker,
    Ticket,
};
pub use state::BreakerState;
pub use state_machine::{OpenPolicy, StateMachineConfig};

use crate::labels::BoundedMap;
use crate::section::{Section, ValidationError};

/// Which breaker algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Google SRE adaptive throttling (default).
    #[default]
    Adaptive,
    /// Closed / open / half-open, on `failsafe`.
    StateMachine,
}

/// `[breaker]`: circuit breaking per route (server) and per target+method (client).
///
/// ```toml
/// [breaker]
/// enabled = true
/// strategy = "adaptive"        # or "state_machine"
/// skip = ["/healthz-like"]     # route labels never broken
///
/// [breaker.adaptive]
/// k = 1.5
/// window = "10s"
/// buckets = 40
/// min_requests = 5
/// force_pass = "1s"
///
/// [breaker.state_machine]
/// policy = "consecutive_failures"   # or "success_rate"
/// consecutive_failures = 5
/// success_rate = 0.5
/// min_requests = 20
/// window = "30s"
/// open_min = "1s"
/// open_max = "60s"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Whether breakers are applied. Default `true`.
    pub enabled: bool,
    /// The algorithm. Default `adaptive`.
    pub strategy: Strategy,
    /// Route labels that never get a breaker.
    pub skip: BTreeSet<String>,
    /// Parameters of the adaptive strategy.
    pub adaptive: AdaptiveConfig,
    /// Parameters of the state-machine strategy.
    pub state_machine: StateMachineConfig,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            strategy: Strategy::Adaptive,
            skip: BTreeSet::new(),
            adaptive: AdaptiveConfig::default(),
            state_machine: StateMachineConfig::default(),
        }
    }
}

impl Section for BreakerConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        self.adaptive.validate().map_err(|e| e.within("adaptive"))?;
        self.state_machine
            .validate()
            .map_err(|e| e.within("state_machine"))
    }
}

enum Kind {
    Adaptive(adaptive::Adaptive),
    StateMachine(state_machine::Machine),
}

/// Metric handles, registered once per breaker.
struct Meters {
    admitted: metrics::Counter,
    rejected: metrics::Counter,
    success: metrics::Counter,
    failure: metrics::Counter,
    drop_ratio: metrics::Gauge,
}

impl Meters {
    fn new(name: &str) -> Self {
        let requests = |decision: &'static str| metrics::counter!("truss_breaker_requests_total", "breaker" => name.to_owned(), "decision" => decision);
        let outcomes = |outcome: &'static str| metrics::counter!("truss_breaker_outcomes_total", "breaker" => name.to_owned(), "outcome" => outcome);
        Self {
            admitted: requests("admitted"),
            rejected: requests("rejected"),
            success: outcomes("success"),
            failure: outcomes("failure"),
            drop_ratio: metrics::gauge!("truss_breaker_drop_ratio", "breaker" => name.to_owned()),
        }
    }
}

/// One breaker.
pub struct Breaker {
    name: String,
    kind: Kind,
    meters: Meters,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish()
    }
}

impl Breaker {
    /// A breaker called `name` (a route label, or `target/method`). `config` must be valid.
    pub fn new(name: impl Into<String>, config: &BreakerConfig) -> Self {
        let name = name.into();
        let kind = match config.strategy {
            Strategy::Adaptive => {
                let seed = name.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
                });
                Kind::Adaptive(adaptive::Adaptive::new(&config.adaptive, seed))
            }
            Strategy::StateMachine => {
                Kind::StateMachine(state_machine::Machine::new(&name, &config.state_machine))
            }
        };
        let meters = Meters::new(&name);
        Self { name, kind, meters }
    }

    /// Whether to let a call through now.
    pub fn allow(&self) -> bool {
        let allowed = match &self.kind {
            Kind::Adaptive(a) => a.allow(),
            Kind::StateMachine(m) => m.allow(),
        };
        if allowed {
            self.meters.admitted.increment(1);
        } else {
            self.meters.rejected.increment(1);
        }
        allowed
    }

    /// Records the outcome of a call that was let through.
    pub fn record(&self, success: bool) {
        if success {
            self.meters.success.increment(1);
        } else {
            self.meters.failure.increment(1);
        }
        match &self.kind {
            Kind::Adaptive(a) => self.meters.drop_ratio.set(a.record(success)),
            Kind::StateMachine(m) => m.record(success),
        }
    }

    /// Closed, open or half-open (adaptive: throttling while it rejects some).
    pub fn state(&self) -> BreakerState {
        match &self.kind {
            Kind::Adaptive(a) if a.drop_ratio() > 0.0 => BreakerState::Throttling,
            Kind::Adaptive(_) => BreakerState::Closed,
            Kind::StateMachine(m) => m.state(),
        }
    }

    /// The adaptive strategy's current rejection probability (0 for the state machine).
    pub fn drop_ratio(&self) -> f64 {
        match &self.kind {
            Kind::Adaptive(a) => a.drop_ratio(),
            Kind::StateMachine(_) => 0.0,
        }
    }
}

/// Breakers by name, created on first use.
pub struct Breakers {
    config: BreakerConfig,
    classify: Arc<dyn Classify>,
    map: BoundedMap<Arc<Breaker>>,
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers").finish_non_exhaustive()
    }
}

impl Breakers {
    /// Breakers built from `config` (checked first), classifying with `classify`.
    pub fn new(
        config: BreakerConfig,
        classify: Arc<dyn Classify>,
    ) -> Result<Self, ValidationError> {
        config.validate()?;
        Ok(Self {
            config,
            classify,
            map: BoundedMap::default(),
        })
    }

    /// The breaker for `name`, or `None` if it is skipped or breakers are disabled.
    pub fn get(&self, name: &str) -> Option<Arc<Breaker>> {
        if !self.config.enabled || self.config.skip.contains(name) {
            return None;
        }
        let make = |key: &str| Arc::new(Breaker::new(key, &self.config));
        Some(self.map.with(name, make, Arc::clone))
    }

    /// The classifier.
    pub fn classifier(&self) -> &dyn Classify {
        &*self.classify
    }
}
