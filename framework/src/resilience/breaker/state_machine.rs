use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use failsafe::failure_policy::{ConsecutiveFailures, FailurePolicy, SuccessRateOverTimeWindow};
use failsafe::{Instrument, StateMachine};
use serde::{Deserialize, Serialize};

use super::BreakerState;
use crate::section::duration;
use crate::section::{Section, ValidationError};

/// When the state machine opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenPolicy {
    /// After `consecutive_failures` failures in a row (default).
    #[default]
    ConsecutiveFailures,
    /// When the success rate over `window` falls below `success_rate`, once `min_requests`
    /// were seen.
    SuccessRate,
}

/// Parameters of the state-machine breaker.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateMachineConfig {
    /// Which policy opens the breaker.
    pub policy: OpenPolicy,
    /// Failures in a row that open it. Default 5.
    pub consecutive_failures: u32,
    /// Lowest acceptable success rate, 0–1. Default 0.5.
    pub success_rate: f64,
    /// Requests in the window before the success rate counts. Default 20.
    pub min_requests: u32,
    /// Window of the success rate (whole seconds). Default `30s`.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Shortest open period (the backoff grows, with jitter, from here). Default `1s`.
    #[serde(with = "duration")]
    pub open_min: Duration,
    /// Longest open period. Default `60s`.
    #[serde(with = "duration")]
    pub open_max: Duration,
}

impl Default for StateMachineConfig {
    fn default() -> Self {
        Self {
            policy: OpenPolicy::ConsecutiveFailures,
            consecutive_failures: 5,
            success_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
            open_min: Duration::from_secs(1),
            open_max: Duration::from_secs(60),
        }
    }
}

impl Section for StateMachineConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.consecutive_failures == 0 {
            return Err(ValidationError::new(
                "consecutive_failures",
                "must be at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.success_rate) {
            return Err(ValidationError::new("success_rate", "must be from 0 to 1"));
        }
        if self.window < Duration::from_secs(1) {
            return Err(ValidationError::new("window", "must be at least 1s"));
        }
        if self.open_min.is_zero() || self.open_min > self.open_max {
            return Err(ValidationError::new(
                "open_min",
                "must be greater than 0 and at most open_max",
            ));
        }
        Ok(())
    }
}

/// Open periods: doubling from `open_min` to `open_max`, each with equal jitter (half fixed,
/// half random). failsafe's own jittered backoffs refuse periods under a second.
#[derive(Debug, Clone)]
pub(crate) struct OpenBackoff {
    next: Duration,
    max: Duration,
    rng: u64,
}

impl Iterator for OpenBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        Some(base / 2 + (base / 2).mul_f64(unit))
    }
}

/// One of failsafe's policies, chosen by config.
#[derive(Debug)]
pub(crate) enum Policy {
    Consecutive(ConsecutiveFailures<OpenBackoff>),
    Rate(SuccessRateOverTimeWindow<OpenBackoff>),
}

impl FailurePolicy for Policy {
    fn record_success(&mut self) {
        match self {
            Policy::Consecutive(p) => p.record_success(),
            Policy::Rate(p) => p.record_success(),
        }
    }

    fn mark_dead_on_failure(&mut self) -> Option<Duration> {
        match self {
            Policy::Consecutive(p) => p.mark_dead_on_failure(),
            Policy::Rate(p) => p.mark_dead_on_failure(),
        }
    }

    fn revived(&mut self) {
        match self {
            Policy::Consecutive(p) => p.revived(),
            Policy::Rate(p) => p.revived(),
        }
    }
}

/// Reports transitions as metrics, and remembers the last one.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    name: String,
    state: Arc<AtomicU8>,
}

impl Metrics {
    fn state(&self, to: BreakerState) {
        let value = to.gauge();
        self.state.store(value as u8, Ordering::Relaxed);
        metrics::gauge!("truss_breaker_state", "breaker" => self.name.clone()).set(value);
        metrics::counter!(
            "truss_breaker_transitions_total",
            "breaker" => self.name.clone(),
            "to" => to.as_str()
        )
        .increment(1);
        tracing::info!(breaker = %self.name, state = %to, "circuit breaker state changed");
    }
}

impl Instrument for Metrics {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        self.state(BreakerState::Open);
    }
    fn on_half_open(&self) {
        self.state(BreakerState::HalfOpen);
    }
    fn on_closed(&self) {
        self.state(BreakerState::Closed);
    }
}

pub(crate) struct Machine {
    inner: StateMachine<Policy, Metrics>,
    state: Arc<AtomicU8>,
}

impl Machine {
    pub(crate) fn new(name: &str, config: &StateMachineConfig) -> Self {
        let backoff = OpenBackoff {
            next: config.open_min,
            max: config.open_max,
            rng: name.bytes().fold(0x2545_F491u64, |h, b| {
                h.wrapping_mul(31).wrapping_add(u64::from(b))
            }) | 1,
        };
        let policy = match config.policy {
            OpenPolicy::ConsecutiveFailures => {
                Policy::Consecutive(failsafe::failure_policy::consecutive_failures(
                    config.consecutive_failures,
                    backoff,
                ))
            }
            OpenPolicy::SuccessRate => {
                Policy::Rate(failsafe::failure_policy::success_rate_over_time_window(
                    config.success_rate,
                    config.min_requests,
                    config.window,
                    backoff,
                ))
            }
        };
        let state = Arc::new(AtomicU8::new(0));
        let inner = failsafe::Config::new()
            .failure_policy(policy)
            .instrument(Metrics {
                name: name.to_owned(),
                state: state.clone(),
            })
            .build();
        Self { inner, state }
    }

    pub(crate) fn allow(&self) -> bool {
        self.inner.is_call_permitted()
    }

    pub(crate) fn record(&self, success: bool) {
        if success {
            self.inner.on_success();
        } else {
            self.inner.on_error();
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        // failsafe exposes no state query (`is_call_permitted` would move open → half-open),
        // so this is the last transition the instrument saw: an open breaker whose backoff
        // has run out reads `open` until the next call half-opens it.
        match self.state.load(Ordering::Relaxed) {
            0 => BreakerState::Closed,
            1 => BreakerState::HalfOpen,
            _ => BreakerState::Open,
        }
    }
}
