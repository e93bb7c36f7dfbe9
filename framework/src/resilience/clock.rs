use std::time::Duration;

/// A [`governor`] clock driven by `tokio::time`, so rate limits follow a paused test clock.
///
/// Its instants are the time elapsed since the clock was created.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }
}

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (about 584 years), for the
/// atomics the layers keep time in.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
