{{#if grpc}}
//! Starts the service on free ports and calls it over real gRPC and HTTP, on a SQLite file in
//! a temporary directory.
{{else}}
//! Starts the service on free ports and calls it over real HTTP, on a SQLite file in a
//! temporary directory.
{{/if}}

use std::net::SocketAddr;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use truss::config::ConfigLoader;

{{#if grpc}}
use {{name_snake}}::pb::{self, {{name_snake}}_client::{{Name}}Client};
{{/if}}
use {{name_snake}}::{AppConfig, DEFAULTS, app};

async fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    http(addr, &request).await
}

{{#if grpc}}
/// The services listed by gRPC server reflection (v1).
async fn reflected_services(grpc: &str) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let channel = tonic::transport::Channel::from_shared(grpc.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match replies
        .message()
        .await
        .unwrap()
        .and_then(|r| r.message_response)
    {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection reply: {other:?}"),
    }
}

{{/if}}
/// The embedded defaults on free ports, with the database in `data_dir`: a SQLite file
/// whatever `config.toml` says, so the test needs no server and writes nothing here.
fn config(data_dir: &Path) -> truss::Config<AppConfig> {
    let mut config = ConfigLoader::new()
        .args(["test"])
        .env_vars([
            ("TRUSS_HTTP__ADDR", "127.0.0.1:0"),
            ("TRUSS_GRPC__ADDR", "127.0.0.1:0"),
            ("TRUSS_ADMIN__ADDR", "127.0.0.1:0"),
            ("TRUSS_SHUTDOWN__DRAIN_DELAY", "0s"),
        ])
        .defaults(DEFAULTS)
        .load::<AppConfig>()
        .unwrap();
    config.database.url = None;
    config.database.data_dir = data_dir.to_path_buf();
    config
}

#[tokio::test]
async fn creates_and_reads_an_item() {
    let data = tempfile::tempdir().unwrap();
    let config = config(data.path());
    let service = app(&config).await.unwrap().start().await.unwrap();
    let addr = service.http_addr().unwrap();

{{#if grpc}}
    let grpc = format!("http://{}", service.grpc_addr().unwrap());
    let mut client = {{Name}}Client::connect(grpc.clone()).await.unwrap();
    let request = pb::CreateItemRequest {
        name: "by grpc".into(),
    };
    let item = client.create_item(request).await.unwrap().into_inner();
    assert_eq!(item.id, 1);
    let request = pb::GetItemRequest { id: 42 };
    let status = client.get_item(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

{{/if}}
    let body = r#"{"name":"first"}"#;
    let created = http(
        addr,
        &format!(
            "POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
{{#if grpc}}
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");
    let path = "/v1/items/2";
{{else}}
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let path = "/v1/items/1";
{{/if}}

    let got = get(addr, path).await;
    assert!(got.contains(r#""name":"first""#), "{got}");

    let missing = get(addr, "/v1/items/9").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert!(missing.contains("ITEM_NOT_FOUND"), "{missing}");

    // The OpenAPI document describes the routes.
    let openapi = get(addr, "/openapi.json").await;
    assert!(openapi.starts_with("HTTP/1.1 200"), "{openapi}");
    assert!(openapi.contains(r#""openapi":"3.1.0""#), "{openapi}");
    assert!(openapi.contains(r#""/v1/items/{id}""#), "{openapi}");
{{#if grpc}}

    // Server reflection lists the service, as grpcurl would see it.
    let services = reflected_services(&grpc).await;
    let own = "{{name_snake}}.v1.{{Name}}";
    assert!(services.iter().any(|s| s == own), "{services:?}");
{{/if}}

    service.shutdown().await.unwrap();

    // The item is in the database: a new instance on the same file reads it back.
    assert!(data.path().join("{{name}}.db").is_file());
    let service = app(&config).await.unwrap().start().await.unwrap();
    let got = get(service.http_addr().unwrap(), path).await;
    assert!(got.contains(r#""name":"first""#), "{got}");
    service.shutdown().await.unwrap();
}
