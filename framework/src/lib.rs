//! truss
pub mod app;
pub mod config;
pub mod observe;
pub mod registry;
pub mod shutdown;
mod transport;

pub use app::{App, AppBuilder, AppError, Phase, RunningApp};
pub use config::Config;
pub use observe::health::Health;
pub use shutdown::ShutdownHandle;

/// A boxed error, as tower uses.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
