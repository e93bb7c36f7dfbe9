//! The proto3 JSON mapping on `#[http]` routes (pbjson's serde, as the examples and the
//! `--grpc` template generate it), over real HTTP, and the OpenAPI document describing it.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use truss::Error;
use truss_tests::{BoxError, call};

mod pb {
    tonic::include_proto!("mapping.v1");
    include!(concat!(env!("OUT_DIR"), "/mapping.v1.serde.rs"));
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/mapping_descriptor.bin"));
}

use pb::{Lookup, Sample};

struct Api;

#[truss::grpc(pb::mapping_server::Mapping)]
impl Api {
    #[http(post, "/v1/echo")]
    async fn echo(&self, sample: Sample) -> Result<Sample, Error> {
        Ok(sample)
    }

    #[http(get, "/v1/find/{id}")]
    async fn find(&self, lookup: Lookup) -> Result<Sample, Error> {
        Ok(Sample {
            id: lookup.id,
            color: lookup.color,
            ..Sample::default()
        })
    }
}

async fn start() -> Result<truss::RunningApp, BoxError> {
    let config =
        truss_tests::local_config(std::time::Duration::ZERO, std::time::Duration::from_secs(1));
    let api = Arc::new(Api);
    Ok(truss::App::builder("mapping")
        .openapi_crate(env!("CARGO_CRATE_NAME"))
        .config(&config)
        .http(api.clone().http_routes())
        .grpc(pb::mapping_server::MappingServer::from_arc(api))
        .file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .start()
        .await?)
}

async fn post(http: SocketAddr, body: &Value) -> Result<(u16, Value), BoxError> {
    let (status, _, text) = call(http, "POST", "/v1/echo", Some(&body.to_string())).await?;
    Ok((status.as_u16(), serde_json::from_str(&text)?))
}

#[tokio::test]
async fn messages_follow_the_proto3_json_mapping() -> Result<(), BoxError> {
    let app = start().await?;
    let http = app.http_addr().ok_or("http")?;

    // Input: 64-bit integers as strings or numbers, an enum by name, the well-known types in
    // their canonical forms, bytes in base64, a field by its json_name, a oneof member.
    let sent = json!({
        "big": "-9007199254740993",
        "id": 18446744073709551615u64,
        "color": "COLOR_BLUE",
        "at": "2026-12-03T10:00:00Z",
        "wait": "1.5s",
        "maybe": "7",
        "blob": "aGk=",
        "displayName": "camel in",
        "counts": {"a": 1},
        "word": "hi",
    });
    let (status, got) = post(http, &sent).await?;
    assert_eq!(status, 200, "{got}");
    // Output: 64-bit integers as strings, names as in the .proto, every field.
    assert_eq!(got["big"], "-9007199254740993");
    assert_eq!(got["id"], "18446744073709551615");
    assert_eq!(got["color"], "COLOR_BLUE");
    // RFC 3339; pbjson-types writes the UTC offset as `+00:00` where protobuf writes `Z`.
    let at = got["at"].as_str().unwrap_or_default();
    assert!(
        at == "2026-12-03T10:00:00Z" || at == "2026-12-03T10:00:00+00:00",
        "{got}"
    );
    let wait = got["wait"].as_str().unwrap_or_default();
    assert!(wait == "1.5s" || wait == "1.500s", "{got}");
    assert_eq!(got["maybe"], "7");
    assert_eq!(got["blob"], "aGk=");
    assert_eq!(got["display_name"], "camel in");
    assert_eq!(got["counts"], json!({"a": 1}));
    assert_eq!(got["word"], "hi");

    // An enum by number, a proto name on input.
    let (status, got) = post(http, &json!({"color": 1, "display_name": "snake in"})).await?;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["color"], "COLOR_RED");
    assert_eq!(got["display_name"], "snake in");

    // Unknown fields and bad values: 400 naming the field, never a 500.
    let (status, got) = post(http, &json!({"nope": 1})).await?;
    assert_eq!(status, 400, "{got}");
    assert_eq!(got["metadata"]["nope"], "unknown field", "{got}");
    for bad in [
        json!({"big": "x"}),
        json!({"id": -1}),
        json!({"color": "COLOR_GREEN"}),
        json!({"at": "yesterday"}),
        json!({"wait": "soon"}),
        json!({"blob": "***"}),
        json!({"word": "a", "number": 1}),
    ] {
        let (status, got) = post(http, &bad).await?;
        assert_eq!(status, 400, "{bad} -> {got}");
        assert_eq!(got["reason"], "INVALID_ARGUMENT", "{bad} -> {got}");
    }

    // Path and query: the id from the path (a string), the enum from the query by name.
    let (status, _, text) = call(http, "GET", "/v1/find/5?color=COLOR_RED", None).await?;
    assert_eq!(status, 200, "{text}");
    let got: Value = serde_json::from_str(&text)?;
    assert_eq!(got["id"], "5");
    assert_eq!(got["color"], "COLOR_RED");
    app.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn the_document_describes_the_mapping() -> Result<(), BoxError> {
    let app = start().await?;
    let (_, text) = truss_tests::get(app.http_addr().ok_or("http")?, "/openapi.json").await?;
    let doc: Value = serde_json::from_str(&text)?;
    truss_tests::validate_openapi(&text);

    let sample = &doc["components"]["schemas"]["mapping.v1.Sample"]["properties"];
    assert_eq!(sample["big"]["type"], "string");
    assert_eq!(sample["id"]["pattern"], "^[0-9]{1,20}$");
    assert_eq!(
        sample["color"]["enum"],
        json!(["COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_BLUE"])
    );
    assert_eq!(sample["at"]["anyOf"][0]["format"], "date-time");
    assert!(
        sample["wait"]["anyOf"][0]["pattern"].is_string(),
        "{sample}"
    );
    assert_eq!(sample["blob"]["contentEncoding"], "base64");
    assert!(sample["display_name"].is_object(), "proto names: {sample}");
    assert_eq!(sample["counts"]["additionalProperties"]["format"], "int32");
    assert!(
        sample["word"].is_object() && sample["number"].is_object(),
        "{sample}"
    );
    let body =
        &doc["paths"]["/v1/echo"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        body["additionalProperties"], false,
        "unknown fields are rejected"
    );
    let find = &doc["paths"]["/v1/find/{id}"]["get"]["parameters"];
    assert_eq!(find[0]["name"], "id");
    assert_eq!(find[0]["schema"]["type"], "string");
    assert_eq!(find[1]["name"], "color");
    app.shutdown().await?;
    Ok(())
}
