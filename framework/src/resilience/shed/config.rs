use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::section::duration;
use crate::section::{Section, ValidationError};

/// `[admission.shed]`: adaptive load shedding. Defaults follow go-zero.
///
/// ```toml
/// [admission.shed]
/// enabled = true
/// cpu_threshold = 90       # percent of the container's CPU quota, 1..=100
/// window = "5s"            # history the capacity estimate looks at
/// buckets = 50             # window granularity (here 100 ms buckets)
/// cool_off = "1s"          # keep shedding this long after a drop, whatever the CPU says
/// cpu_interval = "250ms"   # CPU sampling period
/// cpu_smoothing = "1s"     # time constant of the CPU moving average
/// ```
///
/// go-zero smooths CPU with β = 0.95 per 250 ms sample, a time constant of about 5 s: a
/// sudden overload takes over 10 s to cross a 90 % threshold, while the queue grows. truss
/// defaults to 1 s so shedding starts within a couple of seconds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShedConfig {
    /// Whether the shedding layer is applied. Default `true`.
    pub enabled: bool,
    /// CPU usage, in percent of the quota, from which shedding may start. Default 90.
    pub cpu_threshold: u32,
    /// Length of the sliding window. Default `5s`.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Buckets in the window. Default 50.
    pub buckets: u32,
    /// After a drop, keep shedding (when in-flight is high) for this long. Default `1s`.
    #[serde(with = "duration")]
    pub cool_off: Duration,
    /// CPU sampling period. Default `250ms`.
    #[serde(with = "duration")]
    pub cpu_interval: Duration,
    /// Time constant of the exponential moving average over CPU samples. Default `1s`.
    #[serde(with = "duration")]
    pub cpu_smoothing: Duration,
}

impl Default for ShedConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cpu_threshold: 90,
            window: Duration::from_secs(5),
            buckets: 50,
            cool_off: Duration::from_secs(1),
            cpu_interval: Duration::from_millis(250),
            cpu_smoothing: Duration::from_secs(1),
        }
    }
}

impl ShedConfig {
    /// The length of one bucket.
    pub fn bucket(&self) -> Duration {
        self.window / self.buckets.max(1)
    }
}

impl Section for ShedConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=100).contains(&self.cpu_threshold) {
            return Err(ValidationError::new(
                "cpu_threshold",
                format!(
                    "must be a percentage from 1 to 100, got {}",
                    self.cpu_threshold
                ),
            ));
        }
        if self.buckets < 2 || self.buckets > 10_000 {
            return Err(ValidationError::new("buckets", "must be from 2 to 10000"));
        }
        if self.window.is_zero() || self.window / self.buckets < Duration::from_millis(1) {
            return Err(ValidationError::new(
                "window",
                "must be at least 1ms per bucket",
            ));
        }
        if self.cpu_smoothing.is_zero() {
            return Err(ValidationError::new(
                "cpu_smoothing",
                "must be greater than 0",
            ));
        }
        if self.cpu_interval < Duration::from_millis(10) {
            return Err(ValidationError::new(
                "cpu_interval",
                "must be at least 10ms",
            ));
        }
        Ok(())
    }
}
