use std::fmt;

/// Where a breaker stands, as [`Breaker::state`](super::Breaker::state) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Every call goes through.
    Closed,
    /// Adaptive strategy: some calls are rejected, with the probability of
    /// [`Breaker::drop_ratio`](super::Breaker::drop_ratio).
    Throttling,
    /// State machine: trial calls decide whether to close again.
    HalfOpen,
    /// State machine: every call is rejected until the open backoff runs out.
    Open,
}

impl BreakerState {
    /// The label value: `closed`, `throttling`, `half_open` or `open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Throttling => "throttling",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    /// The value of the `truss_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub(crate) const fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed | BreakerState::Throttling => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
