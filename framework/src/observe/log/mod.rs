//! The `tracing` subscriber the app installs from `[log]` (and `[trace]` for export).
//!
//! Lines are formatted on the thread that logs them and written by one writer thread from a
//! bounded buffer ([`NonBlocking`]): a request never waits on the stdout lock. A full buffer
//! drops lines and counts them in `truss_log_dropped_total`; [`LogGuard::shutdown`] writes
//! out everything buffered before it returns. Written to a file or a pipe, the text format
//! is the plain one of `format.rs`; on a terminal it is `tracing-subscriber`'s, in colour.

mod format;
mod writer;

pub use writer::{LineWriter, NonBlocking};

use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{ConfigError, LogConfig, LogFormat};
use crate::observe::otel::TraceConfig;
use crate::reload::LevelControl;

/// Keeps trace export running; [`shutdown`](Self::shutdown) flushes it.
#[derive(Default)]
pub struct LogGuard {
    #[cfg(feature = "otlp")]
    exporter: Option<crate::observe::otel::Exporter>,
    writer: Option<NonBlocking>,
    /// Sets the filter of the installed subscriber; `None` when `RUST_LOG` fixes it or
    /// another subscriber was installed first.
    level: Option<LevelControl>,
}

/// Bytes of log lines buffered before new ones are dropped (written out every 5 ms).
pub const BUFFER_BYTES: usize = 8 << 20;

/// How long [`LogGuard::shutdown`] waits for queued lines to be written.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("writer", &self.writer)
            .field("level", &self.level.is_some())
            .finish_non_exhaustive()
    }
}

impl LogGuard {
    /// Changes the level filter of the subscriber this guard installed (a reload of
    /// `log.level`).
    pub(crate) fn level_control(&self) -> Option<LevelControl> {
        self.level.clone()
    }

    /// Writes out every queued log line, then flushes exported spans (a no-op without the
    /// `otlp` feature or an endpoint).
    pub async fn shutdown(self) {
        if let Some(writer) = self.writer {
            let flushed = tokio::task::spawn_blocking(move || writer.flush(FLUSH_LIMIT)).await;
            if !matches!(flushed, Ok(true)) {
                eprintln!("truss: log lines may be lost: the log writer did not flush in time");
            }
        }
        #[cfg(feature = "otlp")]
        if let Some(exporter) = self.exporter {
            let flushed = tokio::task::spawn_blocking(move || exporter.shutdown()).await;
            if let Ok(Err(error)) = flushed {
                tracing::warn!(%error, "flushing trace export failed");
            }
        }
    }
}

/// Installs a global subscriber: `RUST_LOG` when set, else `log.level`; text or JSON; plus
/// OTLP export when `trace.otlp_endpoint` is set. Call inside a tokio runtime.
///
/// Does nothing when a global subscriber is already installed (tests, or a team's own).
/// Every line written inside a request's span carries its `trace_id` and `span_id`.
pub fn init(
    log: &LogConfig,
    trace: &TraceConfig,
    service: &str,
    version: &str,
) -> Result<LogGuard, ConfigError> {
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => {
            let filter = EnvFilter::try_new(&directives).map_err(|e| {
                ConfigError::one("RUST_LOG", "environment variable RUST_LOG", e.to_string())
            })?;
            (filter, true)
        }
        _ => {
            let filter = EnvFilter::try_new(&log.level)
                .map_err(|e| ConfigError::one("log.level", "the [log] section", e.to_string()))?;
            (filter, false)
        }
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let level: LevelControl = Arc::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = (trace, service, version);
    let (writer, _thread) = NonBlocking::new(std::io::stdout(), BUFFER_BYTES);

    #[cfg(feature = "otlp")]
    {
        let export =
            crate::observe::otel::layer::<tracing_subscriber::Registry>(trace, service, version)
                .map_err(|e| {
                    ConfigError::one("trace.otlp_endpoint", "the [trace] section", e.to_string())
                })?;
        let (otel, exporter) = match export {
            Some((layer, exporter)) => (Some(layer), Some(exporter)),
            None => (None, None),
        };
        let fmt = fmt_layer(log.format, ansi, writer.clone());
        let installed = tracing_subscriber::registry()
            .with(otel)
            .with(fmt.with_filter(filter))
            .try_init();
        Ok(LogGuard {
            exporter,
            // Another subscriber won: drop the writer, and its thread ends.
            writer: installed.is_ok().then_some(writer),
            level: (installed.is_ok() && !from_env).then_some(level),
        })
    }
    #[cfg(not(feature = "otlp"))]
    {
        let fmt = fmt_layer(log.format, ansi, writer.clone());
        let installed = tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .try_init();
        Ok(LogGuard {
            // Another subscriber won: drop the writer, and its thread ends.
            writer: installed.is_ok().then_some(writer),
            level: (installed.is_ok() && !from_env).then_some(level),
        })
    }
}

/// The line formatter, text or JSON, writing through `writer`.
fn fmt_layer<S>(
    format: LogFormat,
    ansi: bool,
    writer: NonBlocking,
) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        // Colours for a terminal; the plain fast format for files and pipes.
        LogFormat::Text if ansi => layer.with_ansi(true).boxed(),
        LogFormat::Text => layer
            .with_ansi(false)
            .event_format(format::Line)
            .fmt_fields(format::Fields)
            .boxed(),
        LogFormat::Json => layer.json().boxed(),
    }
}
