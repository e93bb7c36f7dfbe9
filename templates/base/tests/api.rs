{{#if grpc}}
//! Starts the service on free ports and calls it over real gRPC and HTTP.
{{else}}
//! Starts the service on free ports and calls it over real HTTP.
{{/if}}

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use truss::config::ConfigLoader;

async fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn creates_and_reads_an_item() {
    let config = ConfigLoader::new()
        .args(["test"])
        .env_vars([
            ("TRUSS_HTTP__ADDR", "127.0.0.1:0"),
            ("TRUSS_GRPC__ADDR", "127.0.0.1:0"),
            ("TRUSS_ADMIN__ADDR", "127.0.0.1:0"),
            ("TRUSS_SHUTDOWN__DRAIN_DELAY", "0s"),
        ])
        .defaults({{name_snake}}::DEFAULTS)
        .load::<{{name_snake}}::AppConfig>()
        .unwrap();
    let app = {{name_snake}}::app(&config).start().await.unwrap();
    let addr = app.http_addr().unwrap();

{{#if grpc}}
    let mut client =
        {{name_snake}}::pb::{{name_snake}}_client::{{Name}}Client::connect(format!("http://{}", app.grpc_addr().unwrap()))
            .await
            .unwrap();
    let item = client
        .create_item({{name_snake}}::pb::CreateItemRequest { name: "by grpc".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(item.id, 1);
    let status = client
        .get_item({{name_snake}}::pb::GetItemRequest { id: 42 })
        .await
        .unwrap_err();
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

    let got = http(addr, "GET /v1/items/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
{{else}}
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");

    let got = http(addr, "GET /v1/items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
{{/if}}
    assert!(got.contains(r#""name":"first""#), "{got}");

    let missing = http(addr, "GET /v1/items/9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404") && missing.contains("ITEM_NOT_FOUND"), "{missing}");

    app.shutdown().await.unwrap();
}
