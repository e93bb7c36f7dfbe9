//! Adaptive load shedding, after go-zero's adaptive shedder and Kratos's BBR.
//!
//! A background sampler keeps a smoothed CPU usage figure for the container (cgroup v2 or v1
//! quota and usage; the host's `/proc/stat` when there is no cgroup). A sliding window of
//! buckets keeps, per bucket, the requests completed and their mean response time in
//! microseconds. A request is dropped when
//!
//! ```text
//! (cpu ≥ cpu_threshold  OR  a request was dropped less than cool_off ago)
//!     AND  in_flight > max_pass × buckets_per_second × min_rt
//! ```
//!
//! where `max_pass` is the most requests completed in one bucket and `min_rt` the lowest mean
//! response time of a bucket, both over the window (the bucket being filled excluded). The
//! product estimates how many requests the service completes concurrently at its best; past
//! that, more in flight only means queueing.
//!
//! ```
//! use truss::resilience::{ShedConfig, ShedLayer, Shedder};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let shedder = Shedder::with_system_cpu(&ShedConfig::default()); // spawns the sampler
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "ok" }))
//!     .layer(ShedLayer::new(shedder));
//! # let _ = app; }
//! ```

mod config;
mod cpu;
mod layer;
mod shedder;
mod window;

pub use config::ShedConfig;
pub use cpu::{CpuSource, SystemCpu};
pub use layer::{Shed, ShedLayer};
pub use shedder::{Permit, Shedder};
