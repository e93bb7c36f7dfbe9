use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::section::duration;
use crate::section::{Section, ValidationError};

/// `[retry]`: client retries.
///
/// ```toml
/// [retry]
/// enabled = true
/// max_attempts = 3            # first try included
/// backoff_min = "25ms"
/// backoff_max = "1s"
/// jitter = 0.5                # share of each backoff that is random, 0–1
/// budget_ratio = 0.2          # retries allowed per request, over budget_window
/// budget_min_per_sec = 10     # plus this floor
/// budget_window = "10s"
/// max_body = 65536            # bytes buffered for replay; larger bodies are not retried
/// http_statuses = [502, 503, 504]
/// grpc_codes = [14]           # UNAVAILABLE
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Whether to retry at all. Default `true`.
    pub enabled: bool,
    /// Attempts per call, the first included. Default 3.
    pub max_attempts: u32,
    /// First backoff. Default `25ms`.
    #[serde(with = "duration")]
    pub backoff_min: Duration,
    /// Largest backoff. Default `1s`.
    #[serde(with = "duration")]
    pub backoff_max: Duration,
    /// Random share of each backoff, 0–1. Default 0.5.
    pub jitter: f64,
    /// Retries allowed per request over the budget window. Default 0.2 (20 %).
    pub budget_ratio: f32,
    /// Retries allowed per second regardless of traffic. Default 10.
    pub budget_min_per_sec: u32,
    /// How long a request counts towards the budget (1 s to 60 s). Default `10s`.
    #[serde(with = "duration")]
    pub budget_window: Duration,
    /// Largest request body buffered for replay, in bytes. Default 65536.
    pub max_body: usize,
    /// HTTP statuses retried for idempotent methods. Default 502, 503, 504.
    pub http_statuses: Vec<u16>,
    /// gRPC status codes retried. Default 14 (`UNAVAILABLE`).
    pub grpc_codes: Vec<i32>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 3,
            backoff_min: Duration::from_millis(25),
            backoff_max: Duration::from_secs(1),
            jitter: 0.5,
            budget_ratio: 0.2,
            budget_min_per_sec: 10,
            budget_window: Duration::from_secs(10),
            max_body: 64 * 1024,
            http_statuses: vec![502, 503, 504],
            grpc_codes: vec![14],
        }
    }
}

impl Section for RetryConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.max_attempts == 0 {
            return Err(ValidationError::new("max_attempts", "must be at least 1"));
        }
        if self.backoff_max.is_zero() || self.backoff_min > self.backoff_max {
            return Err(ValidationError::new(
                "backoff_min",
                "must be at most backoff_max, which must be greater than 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ValidationError::new("jitter", "must be from 0 to 1"));
        }
        if !(0.0..=10.0).contains(&self.budget_ratio) {
            return Err(ValidationError::new("budget_ratio", "must be from 0 to 10"));
        }
        if self.budget_window < Duration::from_secs(1)
            || self.budget_window > Duration::from_secs(60)
        {
            return Err(ValidationError::new(
                "budget_window",
                "must be from 1s to 60s",
            ));
        }
        if self.budget_min_per_sec > 1_000_000 {
            return Err(ValidationError::new(
                "budget_min_per_sec",
                "must be at most 1000000",
            ));
        }
        Ok(())
    }
}
