//! Spans reach a real OTLP/gRPC trace receiver (a tonic server built from the published
//! OpenTelemetry protos) with the request's trace id and the service's resource attributes.
//!
//! Alone in its test binary: it installs a global `tracing` subscriber.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use truss::App;
use truss::observe::otel::TraceConfig;
use truss_tests::{H1, local_config};

struct Receiver(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attribute(req: &ExportTraceServiceRequest, key: &str) -> Option<String> {
    req.resource_spans.iter().find_map(|rs| {
        rs.resource.as_ref()?.attributes.iter().find_map(|kv| {
            (kv.key == key).then(|| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })?
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_an_otlp_receiver() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let config = TraceConfig {
        otlp_endpoint: Some(format!("http://{receiver_addr}")),
        ..TraceConfig::default()
    };
    let (layer, exporter) =
        truss::observe::otel::layer::<tracing_subscriber::Registry>(&config, "otlp-test", "9.9.9")
            .unwrap()
            .expect("an endpoint is configured");
    tracing_subscriber::registry().with(layer).init();

    let app = App::builder("otlp-test")
        .config(&local_config(Duration::ZERO, Duration::from_secs(5)))
        .http(Router::new().route("/traced", get(|| async { "ok" })))
        .start()
        .await
        .unwrap();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{trace_id}-b7ad6b7169203331-01");
    let mut conn = H1::connect(app.http_addr().unwrap()).await.unwrap();
    let (_, headers, _) = conn
        .get_with("/traced", &[("traceparent", &traceparent)])
        .await
        .unwrap();
    assert_eq!(headers["x-trace-id"], trace_id);

    let flusher = exporter.clone();
    tokio::task::spawn_blocking(move || flusher.flush())
        .await
        .unwrap()
        .unwrap();

    let wanted = hex(trace_id);
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(export) = rx.recv().await {
            let spans = export
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans);
            if spans
                .clone()
                .any(|s| s.trace_id == wanted && s.name == "request")
            {
                return export;
            }
        }
        panic!("receiver closed");
    })
    .await
    .expect("no span with the request's trace id arrived");
    assert_eq!(
        attribute(&found, "service.name").as_deref(),
        Some("otlp-test")
    );
    assert_eq!(
        attribute(&found, "service.version").as_deref(),
        Some("9.9.9")
    );

    app.shutdown().await.unwrap();
    tokio::task::spawn_blocking(move || exporter.shutdown())
        .await
        .unwrap()
        .unwrap();
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
