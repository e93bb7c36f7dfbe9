use crate::resilience::clock::nanos;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use http::{Response, StatusCode};
use tokio::time::Instant;

use crate::wire::Completion;

use super::config::ShedConfig;
use super::cpu::{CpuSource, SystemCpu};
use super::window::Window;

const NEVER: u64 = u64::MAX;

/// The shedding decision, shared by every route of a listener.
pub struct Shedder {
    cpu: Arc<dyn CpuSource>,
    threshold: f64,
    cool_off_nanos: u64,
    bucket_nanos: u64,
    buckets_per_second: f64,
    start: Instant,
    in_flight: AtomicI64,
    last_drop: AtomicU64,
    window: Mutex<Window>,
}

impl std::fmt::Debug for Shedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shedder")
            .field("cpu", &self.cpu.usage())
            .field("in_flight", &self.in_flight())
            .field("max_flight", &self.max_flight())
            .finish()
    }
}

impl Shedder {
    /// A shedder reading CPU from `cpu`. `config` is assumed valid (see its [`Section::validate`](crate::config::Section::validate)).
    pub fn new(config: &ShedConfig, cpu: Arc<dyn CpuSource>) -> Arc<Self> {
        let bucket = config.bucket().max(Duration::from_micros(1));
        Arc::new(Self {
            cpu,
            threshold: f64::from(config.cpu_threshold) / 100.0,
            cool_off_nanos: nanos(config.cool_off),
            bucket_nanos: nanos(bucket),
            buckets_per_second: 1.0 / bucket.as_secs_f64(),
            start: Instant::now(),
            in_flight: AtomicI64::new(0),
            last_drop: AtomicU64::new(NEVER),
            window: Mutex::new(Window::new(config.buckets)),
        })
    }

    /// A shedder with a [`SystemCpu`] sampler (spawned on the current tokio runtime).
    pub fn with_system_cpu(config: &ShedConfig) -> Arc<Self> {
        Self::new(
            config,
            SystemCpu::spawn(config.cpu_interval, config.cpu_smoothing),
        )
    }

    fn now(&self) -> u64 {
        nanos(self.start.elapsed())
    }

    /// Requests admitted and not yet finished.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The estimated concurrency the service sustains at its best:
    /// `max_pass × buckets_per_second × min_rt`.
    pub fn max_flight(&self) -> f64 {
        let epoch = self.now() / self.bucket_nanos;
        let stats = self
            .window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats(epoch);
        // With no history, assume a slow (1 s) service: a generous estimate, as go-zero does.
        let min_rt_secs = stats.min_rt_nanos.map_or(1.0, |n| n / 1e9);
        stats.max_pass as f64 * self.buckets_per_second * min_rt_secs
    }

    /// Admits a request (the permit records its completion when dropped) or sheds it.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let now = self.now();
        if self.should_drop(now) {
            self.last_drop.store(now, Ordering::Relaxed);
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(Permit {
            shedder: self.clone(),
            start: now,
            failed: false,
        })
    }

    fn should_drop(&self, now: u64) -> bool {
        let overloaded = self.cpu.usage() >= self.threshold;
        let last = self.last_drop.load(Ordering::Relaxed);
        let hot = last != NEVER && now.saturating_sub(last) < self.cool_off_nanos;
        if !(overloaded || hot) {
            return false;
        }
        self.in_flight() as f64 > self.max_flight()
    }

    /// Records a request admitted at `start` (as [`now`](Self::now) read it) that completed;
    /// `failed`: it does not count towards the capacity estimate.
    fn complete(&self, start: u64, failed: bool) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        // Failures do not count as passes: they say nothing about capacity (go-zero's
        // promise.Fail()).
        if failed {
            return;
        }
        // One clock read gives both the response time and the bucket.
        let now = self.now();
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(now / self.bucket_nanos, now.saturating_sub(start));
    }
}

/// An admitted request; dropping it records the completion and its response time, unless
/// the response was a server error (a 5xx) or the request never completed (its future
/// dropped first, or its service failed: the layers call [`Completion::abandoned`]).
#[derive(Debug)]
pub struct Permit {
    shedder: Arc<Shedder>,
    /// When it was admitted, in nanoseconds since the shedder's start.
    start: u64,
    failed: bool,
}

impl Permit {
    /// Marks the request failed: it will not count towards the capacity estimate.
    pub fn fail(&mut self) {
        self.failed = true;
    }
}

impl Completion for Permit {
    fn completed(&mut self, response: &Response<Body>) {
        // By HTTP status only: a gRPC error answered in the head says 200 and counts as a
        // pass (looking for `grpc-status` would cost every request a header lookup).
        self.rejected(response.status());
    }

    fn rejected(&mut self, status: StatusCode) {
        if status.is_server_error() {
            self.fail();
        }
    }

    /// Cut short or failed: its time says nothing about capacity.
    fn abandoned(&mut self) {
        self.fail();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shedder.complete(self.start, self.failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ShedConfig {
        ShedConfig {
            window: Duration::from_secs(5),
            buckets: 50,
            cool_off: Duration::from_secs(1),
            cpu_threshold: 80,
            ..ShedConfig::default()
        }
    }

    /// Ten requests of 10 ms each per 100 ms bucket, for a whole window: max_pass 10,
    /// 10 buckets a second, min_rt 10 ms → capacity 1 in flight.
    async fn warm_up(shedder: &Arc<Shedder>) {
        for _ in 0..10 {
            for _ in 0..10 {
                let permit = shedder.try_acquire().expect("admitted during warm-up");
                tokio::time::advance(Duration::from_millis(10)).await;
                drop(permit);
            }
        }
        tokio::time::advance(Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_permit_told_of_a_later_5xx_rejection_is_not_a_pass() {
        let shedder = Shedder::new(&config(), SystemCpu::manual(0.0));
        let mut permit = shedder.try_acquire().expect("admitted");
        permit.rejected(StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::advance(Duration::from_millis(10)).await;
        drop(permit);
        // Past the bucket: the estimate reads finished buckets only.
        tokio::time::advance(Duration::from_millis(100)).await;
        // No history yet: a slow (1 s) service is assumed, 1 × 10 buckets/s × 1 s.
        assert_eq!(shedder.max_flight(), 10.0, "no pass recorded: {shedder:?}");
        assert_eq!(shedder.in_flight(), 0);

        let mut permit = shedder.try_acquire().expect("admitted");
        permit.rejected(StatusCode::TOO_MANY_REQUESTS);
        tokio::time::advance(Duration::from_millis(10)).await;
        drop(permit);
        tokio::time::advance(Duration::from_millis(100)).await;
        // One pass of 10 ms in a 100 ms bucket: 1 × 10 buckets/s × 0.01 s.
        assert!((shedder.max_flight() - 0.1).abs() < 1e-9, "{shedder:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_requests_are_not_passes() {
        let shedder = Shedder::new(&config(), SystemCpu::manual(0.0));
        let mut cut_short = shedder.try_acquire().expect("admitted");
        cut_short.abandoned();
        tokio::time::advance(Duration::from_millis(10)).await;
        drop(cut_short);
        tokio::time::advance(Duration::from_millis(100)).await;
        // No pass recorded: the estimate still assumes a slow service.
        assert_eq!(shedder.max_flight(), 10.0, "{shedder:?}");
        assert_eq!(shedder.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn admits_everything_below_the_cpu_threshold() {
        let cpu = SystemCpu::manual(0.79);
        let shedder = Shedder::new(&config(), cpu);
        warm_up(&shedder).await;
        assert!((shedder.max_flight() - 1.0).abs() < 0.05, "{shedder:?}");
        let held: Vec<_> = (0..1000).map(|_| shedder.try_acquire()).collect();
        assert!(held.iter().all(Option::is_some));
        assert_eq!(shedder.in_flight(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn drops_when_cpu_is_high_and_in_flight_exceeds_capacity_then_recovers() {
        let cpu = SystemCpu::manual(0.5);
        let shedder = Shedder::new(&config(), cpu.clone());
        warm_up(&shedder).await;

        cpu.set(0.95);
        // In flight 0 and 1 are within the capacity of 1: admitted.
        let a = shedder.try_acquire().expect("first admitted");
        let b = shedder
            .try_acquire()
            .expect("second admitted (in flight 1 ≤ 1)");
        // In flight 2 > 1: dropped.
        assert!(shedder.try_acquire().is_none());

        // CPU falls, but a drop happened < cool_off ago: still shedding while in-flight is high.
        cpu.set(0.1);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(shedder.try_acquire().is_none(), "cool-off ignored");

        // That drop restarted the cool-off; once it is over, admitted again although
        // in-flight is still above the estimate.
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(
            (shedder.max_flight() - 1.0).abs() < 0.05,
            "history still in the window"
        );
        let c = shedder.try_acquire().expect("recovered after cool-off");
        drop((a, b, c));
        assert_eq!(shedder.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn high_cpu_alone_does_not_drop_when_in_flight_is_low() {
        let cpu = SystemCpu::manual(1.0);
        let shedder = Shedder::new(&config(), cpu);
        warm_up(&shedder).await;
        for _ in 0..100 {
            // One at a time: in flight 0 never exceeds the capacity.
            assert!(shedder.try_acquire().is_some());
        }
    }
}
