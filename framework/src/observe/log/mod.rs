//! The `tracing` subscriber the app installs from `[log]` (and `[trace]` for export).
//!
//! Lines are formatted on the thread that logs them and written by one writer thread from a
//! bounded buffer ([`NonBlocking`]): a request never waits on the stdout lock. A full buffer
//! drops lines and counts them in `truss_log_dropped_total`; [`LogGuard::shutdown`] writes
//! out everything buffered before it returns. Written to a file or a pipe, the text format
//! is the plain one of `format.rs`; on a terminal it is `tracing-subscriber`'s, in colour.

#[cfg(test)]
mod captured;
mod format;
mod switch;
mod writer;

#[cfg(test)]
pub(crate) use captured::Captured;
pub(crate) use format::Digits;
pub use writer::{LineWriter, NonBlocking};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{ConfigError, LogConfig, LogFormat};
use crate::observe::otel::TraceConfig;

/// Keeps trace export running; [`shutdown`](Self::shutdown) flushes it.
#[derive(Default)]
pub struct LogGuard {
    #[cfg(feature = "otlp")]
    exporter: Option<crate::observe::otel::Exporter>,
    writer: Option<NonBlocking>,
    /// Sets the filter and format of the installed subscriber; `None` when another
    /// subscriber was installed first.
    control: Option<LogControl>,
}

/// Bytes of log lines buffered before new ones are dropped (written out every 5 ms).
pub const BUFFER_BYTES: usize = 8 << 20;

/// How long [`LogGuard::shutdown`] waits for queued lines to be written.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("writer", &self.writer)
            .field("control", &self.control.is_some())
            .finish_non_exhaustive()
    }
}

impl LogGuard {
    /// Changes the level filter and format of the subscriber this guard installed (a
    /// reload of `[log]`).
    pub(crate) fn control(&self) -> Option<LogControl> {
        self.control.clone()
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
    let use_json = Arc::new(AtomicBool::new(log.format == LogFormat::Json));
    let control = LogControl {
        level: (!from_env).then(|| -> SetLevel {
            Arc::new(move |level: &str| {
                let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
                handle.reload(filter).map_err(|e| e.to_string())
            })
        }),
        json: use_json.clone(),
    };
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
        let fmt = fmt_layer(ansi, writer.clone(), use_json);
        let installed = tracing_subscriber::registry()
            .with(otel)
            .with(fmt.with_filter(filter))
            .try_init();
        Ok(LogGuard {
            exporter,
            // Another subscriber won: drop the writer, and its thread ends.
            writer: installed.is_ok().then_some(writer),
            control: installed.is_ok().then_some(control),
        })
    }
    #[cfg(not(feature = "otlp"))]
    {
        let fmt = fmt_layer(ansi, writer.clone(), use_json);
        let installed = tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .try_init();
        Ok(LogGuard {
            // Another subscriber won: drop the writer, and its thread ends.
            writer: installed.is_ok().then_some(writer),
            control: installed.is_ok().then_some(control),
        })
    }
}

/// The line formatter writing through `writer`: JSON while `use_json` is set, else text.
fn fmt_layer<S>(
    ansi: bool,
    writer: NonBlocking,
    use_json: Arc<AtomicBool>,
) -> switch::Switch<Box<dyn Layer<S> + Send + Sync + 'static>, impl Layer<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let layer = || tracing_subscriber::fmt::layer().with_writer(writer.clone());
    let text = if ansi {
        // Colours for a terminal; the plain fast format for files and pipes.
        layer().with_ansi(true).boxed()
    } else {
        layer()
            .with_ansi(false)
            .event_format(format::Line)
            .fmt_fields(format::Fields)
            .boxed()
    };
    switch::Switch {
        text,
        json: layer().json(),
        use_json,
    }
}

type SetLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Changes the installed subscriber's `[log]` settings while the app runs.
#[derive(Clone)]
pub(crate) struct LogControl {
    /// `None` while `RUST_LOG` fixes the filter.
    level: Option<SetLevel>,
    json: Arc<AtomicBool>,
}

impl LogControl {
    /// Sets the level filter; `Ok(false)` when `RUST_LOG` is set and wins.
    pub(crate) fn set_level(&self, level: &str) -> Result<bool, String> {
        match &self.level {
            Some(set) => set(level).map(|()| true),
            None => Ok(false),
        }
    }

    /// Puts `log`'s level and format in force; `source` names where they came from in the
    /// error of a bad level.
    pub(crate) fn apply(&self, log: &LogConfig, source: &str) -> Result<(), ConfigError> {
        let set = self
            .set_level(&log.level)
            .map_err(|e| ConfigError::one("log.level", source, e))?;
        if !set {
            tracing::warn!(source, "log.level does not apply: RUST_LOG is set and wins");
        }
        self.set_format(log.format);
        Ok(())
    }

    /// Switches between text and JSON lines.
    pub(crate) fn set_format(&self, format: LogFormat) {
        self.json
            .store(format == LogFormat::Json, Ordering::Relaxed);
    }
}
