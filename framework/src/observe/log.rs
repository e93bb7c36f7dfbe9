//! The `tracing` subscriber the app installs from the `[log]` section.

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogConfig, LogFormat};

/// Installs a global subscriber: `RUST_LOG` when set, else `config.level`; text or JSON.
///
/// Does nothing when a global subscriber is already installed (tests, or a team's own).
/// A malformed `level` is a [`ConfigError`] naming `log.level`.
pub fn init(config: &LogConfig) -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => {
            EnvFilter::try_new(&directives).map_err(|e| {
                ConfigError::one("RUST_LOG", "environment variable RUST_LOG", e.to_string())
            })?
        }
        _ => EnvFilter::try_new(&config.level)
            .map_err(|e| ConfigError::one("log.level", "the [log] section", e.to_string()))?,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}
