//! OTLP trace export (feature `otlp`): spans of every request, with the request's trace id,
//! sent over gRPC to a collector with the service name and version as resource attributes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::section::duration;
use crate::section::{Section, ValidationError};

/// `[trace]`: trace export.
///
/// ```toml
/// [trace]
/// otlp_endpoint = "http://127.0.0.1:4317"   # default: none, nothing exported
/// sample_ratio = 1.0                         # share of new traces exported
/// export_timeout = "10s"
/// ```
///
/// With no endpoint nothing is exported, but trace ids are still generated, logged and
/// propagated. Setting an endpoint needs truss built with the `otlp` feature.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// Collector endpoint for OTLP over gRPC. Default: none.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces (no sampled caller) that are exported, 0–1. Default 1.0.
    pub sample_ratio: f64,
    /// Timeout of one export. Default `10s`.
    #[serde(with = "duration")]
    pub export_timeout: Duration,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            export_timeout: Duration::from_secs(10),
        }
    }
}

impl Section for TraceConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ValidationError::new("sample_ratio", "must be from 0 to 1"));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(ValidationError::new(
                    "otlp_endpoint",
                    format!("must be an http:// or https:// URL, got {endpoint:?}"),
                ));
            }
            if cfg!(not(feature = "otlp")) {
                return Err(ValidationError::new(
                    "otlp_endpoint",
                    "is set, but truss was built without its `otlp` feature",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use export::{Exporter, OtlpLayer, layer};

#[cfg(feature = "otlp")]
mod export {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
    use tracing_opentelemetry::OpenTelemetryLayer;

    use super::TraceConfig;
    use crate::BoxError;

    /// The `tracing` layer that exports spans.
    pub type OtlpLayer<S> = OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

    /// Owns the export pipeline; [`shutdown`](Self::shutdown) flushes what is buffered.
    #[derive(Debug, Clone)]
    pub struct Exporter {
        provider: SdkTracerProvider,
    }

    impl Exporter {
        /// Exports everything buffered, then stops. Blocks: call it from a blocking context
        /// (`spawn_blocking`) inside a runtime.
        pub fn shutdown(&self) -> Result<(), BoxError> {
            self.provider.force_flush()?;
            self.provider.shutdown()?;
            Ok(())
        }

        /// Exports everything buffered. Blocks, like [`shutdown`](Self::shutdown).
        pub fn flush(&self) -> Result<(), BoxError> {
            self.provider.force_flush()?;
            Ok(())
        }
    }

    /// A `tracing` layer exporting spans over OTLP/gRPC, or `None` when no endpoint is
    /// configured. Call inside a tokio runtime.
    pub fn layer<S>(
        config: &TraceConfig,
        service: &str,
        version: &str,
    ) -> Result<Option<(OtlpLayer<S>, Exporter)>, BoxError>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(config.export_timeout)
            .build()?;
        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .with_attribute(KeyValue::new("service.version", version.to_owned()))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .build();
        let tracer = provider.tracer("truss");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        Ok(Some((layer, Exporter { provider })))
    }
}

/// Makes the request's `tracing` span part of the request's W3C trace, so exported spans
/// carry the same trace id as `x-trace-id` and the logs.
#[cfg(feature = "otlp")]
pub(crate) fn link(span: &tracing::Span, ctx: &crate::observe::trace::TraceContext) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let parent = ctx.parent_span_id.unwrap_or(ctx.span_id);
    let flags = if ctx.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(ctx.trace_id.0),
        SpanId::from_bytes(parent.0),
        flags,
        true,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(remote);
    let _ = span.set_parent(cx);
}
