//! Google SRE client-side adaptive throttling (go-zero's and Kratos's breaker).

use crate::resilience::clock::nanos;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::section::duration;
use crate::section::{Section, ValidationError};

/// Adaptive throttling parameters. Defaults follow go-zero.
///
/// A request is rejected with probability
/// `max(0, (requests − min_requests − k × accepts) / (requests + 1))` over the window, where
/// `requests` counts every attempt (rejected ones too) and `accepts` the successes. One
/// request is let through at least every `force_pass`, so recovery is noticed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// How many requests per accepted one are tolerated before throttling. Default 1.5
    /// (Kratos: 2). Lower is more aggressive.
    pub k: f64,
    /// Sliding window length. Default `10s`.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Buckets in the window. Default 40.
    pub buckets: u32,
    /// Requests in the window before any rejection ("protection"). Default 5.
    pub min_requests: u64,
    /// Let one request through at least this often. Default `1s`; `0` never forces.
    #[serde(with = "duration")]
    pub force_pass: Duration,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            k: 1.5,
            window: Duration::from_secs(10),
            buckets: 40,
            min_requests: 5,
            force_pass: Duration::from_secs(1),
        }
    }
}

impl Section for AdaptiveConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if !self.k.is_finite() || self.k < 1.0 {
            return Err(ValidationError::new("k", "must be at least 1.0"));
        }
        if !(1..=10_000).contains(&self.buckets) {
            return Err(ValidationError::new("buckets", "must be from 1 to 10000"));
        }
        if self.window.is_zero() || self.window / self.buckets < Duration::from_millis(1) {
            return Err(ValidationError::new(
                "window",
                "must be at least 1ms per bucket",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    requests: u64,
    accepts: u64,
}

/// The throttle's state.
#[derive(Debug)]
pub(crate) struct Adaptive {
    config: AdaptiveConfig,
    start: Instant,
    bucket_nanos: u64,
    buckets: Mutex<Vec<Bucket>>,
    last_pass: AtomicU64,
    rng: AtomicU64,
    /// The bucket epoch (+1) the cached ratio was computed in; 0 when stale.
    cached_epoch: AtomicU64,
    /// The cached rejection probability, as `f64` bits.
    cached_ratio: AtomicU64,
}

impl Adaptive {
    pub(crate) fn new(config: &AdaptiveConfig, seed: u64) -> Self {
        let buckets = config.buckets.max(1);
        Self {
            config: config.clone(),
            start: Instant::now(),
            bucket_nanos: nanos(config.window / buckets).max(1),
            buckets: Mutex::new(vec![
                Bucket {
                    epoch: u64::MAX,
                    ..Bucket::default()
                };
                buckets as usize
            ]),
            last_pass: AtomicU64::new(0),
            rng: AtomicU64::new(seed | 1),
            cached_epoch: AtomicU64::new(0),
            cached_ratio: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        nanos(self.start.elapsed())
    }

    fn totals(&self, epoch: u64) -> (u64, u64) {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = epoch.saturating_sub(buckets.len() as u64 - 1);
        buckets
            .iter()
            .filter(|b| b.epoch != u64::MAX && b.epoch >= oldest && b.epoch <= epoch)
            .fold((0, 0), |(r, a), b| (r + b.requests, a + b.accepts))
    }

    fn add(&self, now: u64, requests: u64, accepts: u64) {
        let epoch = now / self.bucket_nanos;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let len = buckets.len() as u64;
        let b = &mut buckets[(epoch % len) as usize];
        if b.epoch != epoch {
            *b = Bucket {
                epoch,
                requests: 0,
                accepts: 0,
            };
        }
        b.requests += requests;
        b.accepts += accepts;
    }

    /// The current rejection probability.
    pub(crate) fn drop_ratio(&self) -> f64 {
        self.ratio_at(self.now())
    }

    /// The rejection probability at `now`, computed at most once per bucket unless a failure
    /// was recorded since: successes only lower it, so a value up to one bucket old errs on
    /// the side of caution, and a failure is seen at once.
    fn ratio_at(&self, now: u64) -> f64 {
        let epoch = now / self.bucket_nanos;
        if self.cached_epoch.load(Ordering::Acquire) == epoch + 1 {
            return f64::from_bits(self.cached_ratio.load(Ordering::Relaxed));
        }
        let (requests, accepts) = self.totals(epoch);
        let weighted = self.config.k * accepts as f64;
        let excess = requests as f64 - self.config.min_requests as f64 - weighted;
        let ratio = (excess / (requests as f64 + 1.0)).max(0.0);
        self.cached_ratio.store(ratio.to_bits(), Ordering::Relaxed);
        self.cached_epoch.store(epoch + 1, Ordering::Release);
        ratio
    }

    fn random(&self) -> f64 {
        // xorshift64*: plenty for a coin toss, and seedable for tests.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether to let a request through. Rejections count as requests.
    pub(crate) fn allow(&self) -> bool {
        let now = self.now();
        let ratio = self.ratio_at(now);
        if ratio <= 0.0 {
            self.last_pass.store(now, Ordering::Relaxed);
            return true;
        }
        let force = nanos(self.config.force_pass);
        if force > 0 && now.saturating_sub(self.last_pass.load(Ordering::Relaxed)) >= force {
            self.last_pass.store(now, Ordering::Relaxed);
            return true;
        }
        if self.random() < ratio {
            self.add(now, 1, 0);
            return false;
        }
        self.last_pass.store(now, Ordering::Relaxed);
        true
    }

    /// Records the outcome of an allowed request, and returns the rejection probability
    /// after it (one clock read for both).
    pub(crate) fn record(&self, success: bool) -> f64 {
        let now = self.now();
        self.add(now, 1, u64::from(success));
        if !success {
            self.cached_epoch.store(0, Ordering::Release);
        }
        self.ratio_at(now)
    }
}
