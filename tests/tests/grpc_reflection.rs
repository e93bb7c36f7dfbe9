//! gRPC server reflection, asked by a real reflection client (tonic-reflection's, v1 and
//! v1alpha): the `user` and `order` examples, started in-process on their embedded defaults
//! (auth on), list their services without a token and resolve a method's input type through
//! `file_containing_symbol`; with `grpc.reflection = false` the call is UNIMPLEMENTED (and,
//! auth being on, UNAUTHENTICATED without a token, as on any route the app does not serve);
//! a descriptor set that does not decode stops the start with an error.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use prost::Message as _;
use prost_types::FileDescriptorProto;
use tonic::Code;
use tonic::transport::Channel;
use truss_tests::local_config;

/// What one reflection request asks.
enum Ask {
    List,
    Symbol(String),
    File(String),
}

/// What one reflection reply says, the same for both versions.
#[derive(Debug)]
enum Answer {
    /// The service names, sorted.
    Services(Vec<String>),
    /// The files sent, decoded.
    Files(Vec<FileDescriptorProto>),
}

#[derive(Debug, Clone, Copy)]
enum Version {
    V1,
    V1alpha,
}

const VERSIONS: [Version; 2] = [Version::V1, Version::V1alpha];

/// One request of each `Ask` on one reflection stream, and the replies in order.
macro_rules! ask_with {
    ($name:ident, $v:ident) => {
        async fn $name(
            channel: Channel,
            asks: &[Ask],
            token: Option<&str>,
        ) -> Result<Vec<Answer>, tonic::Status> {
            use tonic_reflection::pb::$v::ServerReflectionRequest;
            use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;

            let requests: Vec<_> = asks
                .iter()
                .map(|ask| ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(match ask {
                        Ask::List => MessageRequest::ListServices(String::new()),
                        Ask::Symbol(s) => MessageRequest::FileContainingSymbol(s.clone()),
                        Ask::File(f) => MessageRequest::FileByFilename(f.clone()),
                    }),
                })
                .collect();
            let mut request = tonic::Request::new(tokio_stream::iter(requests));
            if let Some(token) = token {
                let bearer = format!("Bearer {token}").parse().unwrap();
                request.metadata_mut().insert("authorization", bearer);
            }
            let mut replies = ServerReflectionClient::new(channel)
                .server_reflection_info(request)
                .await?
                .into_inner();
            let mut answers = Vec::new();
            while let Some(reply) = replies.message().await? {
                answers.push(match reply.message_response {
                    Some(MessageResponse::ListServicesResponse(list)) => {
                        let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
                        names.sort();
                        Answer::Services(names)
                    }
                    Some(MessageResponse::FileDescriptorResponse(files)) => Answer::Files(
                        files
                            .file_descriptor_proto
                            .iter()
                            .map(|b| FileDescriptorProto::decode(b.as_slice()).unwrap())
                            .collect(),
                    ),
                    other => panic!("unexpected reply: {other:?}"),
                });
            }
            Ok(answers)
        }
    };
}

ask_with!(ask_v1, v1);
ask_with!(ask_v1alpha, v1alpha);

/// The replies to `asks`, on one stream; a failed one ends it with its status.
async fn ask(
    version: Version,
    addr: SocketAddr,
    asks: &[Ask],
) -> Result<Vec<Answer>, tonic::Status> {
    ask_as(version, addr, asks, None).await
}

async fn ask_as(
    version: Version,
    addr: SocketAddr,
    asks: &[Ask],
    token: Option<&str>,
) -> Result<Vec<Answer>, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    match version {
        Version::V1 => ask_v1(channel, asks, token).await,
        Version::V1alpha => ask_v1alpha(channel, asks, token).await,
    }
}

fn files(answer: &Answer) -> &[FileDescriptorProto] {
    match answer {
        Answer::Files(files) => files,
        other => panic!("expected files, got {other:?}"),
    }
}

async fn user(dir: &Path, reflection: bool) -> truss::RunningApp {
    let mut config =
        truss_tests::example_config_in::<user::UserConfig>(user::DEFAULTS, "user", dir);
    config.grpc.reflection = reflection;
    user::app(&config).await.unwrap().start().await.unwrap()
}

async fn order(dir: &Path) -> truss::RunningApp {
    let config =
        truss_tests::example_config_in::<order::OrderConfig>(order::DEFAULTS, "order", dir);
    order::app(&config).await.unwrap().start().await.unwrap()
}

fn services(own: &str) -> Vec<String> {
    let mut all = vec![
        own.to_owned(),
        "grpc.health.v1.Health".to_owned(),
        "grpc.reflection.v1.ServerReflection".to_owned(),
        "grpc.reflection.v1alpha.ServerReflection".to_owned(),
    ];
    all.sort();
    all
}

/// Lists the services, then resolves `service`'s `method` to the file of its input type, as
/// a client like grpcurl does: the file holding the service, the method's input type in it,
/// the file holding that type, and that file again by name. An unknown symbol is NOT_FOUND.
async fn lists_and_resolves(
    addr: SocketAddr,
    version: Version,
    (package, service, method): (&str, &str, &str),
    expected_input: &str,
) {
    let answers = ask(version, addr, &[Ask::List, Ask::Symbol(service.to_owned())])
        .await
        .unwrap();
    assert_eq!(answers.len(), 2, "{version:?}: {answers:?}");
    let Answer::Services(names) = &answers[0] else {
        panic!("{version:?}: expected services, got {:?}", answers[0]);
    };
    assert_eq!(names, &services(service), "{version:?}");

    let short = service.rsplit('.').next().unwrap();
    let file = files(&answers[1])
        .iter()
        .find(|f| f.package() == package && f.service.iter().any(|s| s.name() == short))
        .unwrap_or_else(|| panic!("{version:?}: no file with {service}"));
    let rpc = file
        .service
        .iter()
        .find(|s| s.name() == short)
        .unwrap()
        .method
        .iter()
        .find(|m| m.name() == method)
        .unwrap_or_else(|| panic!("{version:?}: no {method} in {service}"));
    // Fully qualified, with a leading dot.
    let input = rpc
        .input_type()
        .strip_prefix('.')
        .expect("a qualified name");
    assert_eq!(input, expected_input, "{version:?}");

    let answers = ask(
        version,
        addr,
        &[
            Ask::Symbol(input.to_owned()),
            Ask::File(file.name().to_owned()),
        ],
    )
    .await
    .unwrap();
    let message = input.rsplit('.').next().unwrap();
    let holder = files(&answers[0])
        .iter()
        .find(|f| f.package() == package && f.message_type.iter().any(|m| m.name() == message))
        .unwrap_or_else(|| panic!("{version:?}: no file with {input}: {answers:?}"));
    assert_eq!(holder.name(), file.name(), "{version:?}");
    assert!(
        files(&answers[1]).iter().any(|f| f.name() == file.name()),
        "{version:?}: {:?}",
        answers[1]
    );
    let status = ask(version, addr, &[Ask::Symbol("no.such.Symbol".to_owned())])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{version:?}: {status:?}");
    assert!(status.message().contains("no.such.Symbol"), "{status:?}");
}

#[tokio::test]
async fn user_lists_its_services_and_resolves_get_user_on_v1_and_v1alpha() {
    let dir = tempfile::tempdir().unwrap();
    let app = user(dir.path(), true).await;
    let addr = app.grpc_addr().unwrap();
    for version in VERSIONS {
        lists_and_resolves(
            addr,
            version,
            ("user.v1", "user.v1.Users", "GetUser"),
            "user.v1.GetUserRequest",
        )
        .await;
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn order_lists_its_services_and_resolves_get_order_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = order(dir.path()).await;
    let addr = app.grpc_addr().unwrap();
    for version in VERSIONS {
        lists_and_resolves(
            addr,
            version,
            ("order.v1", "order.v1.Orders", "GetOrder"),
            "order.v1.GetOrderRequest",
        )
        .await;
    }
    // The service itself wants a token: reflection is public like health, not open by
    // accident.
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = order::pb::orders_client::OrdersClient::new(channel)
        .get_order(order::pb::GetOrderRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn reflection_off_is_unimplemented_on_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let app = user(dir.path(), false).await;
    let addr = app.grpc_addr().unwrap();
    let token = truss_tests::demo_token(app.http_addr().unwrap())
        .await
        .unwrap();
    for version in VERSIONS {
        let status = ask(version, addr, &[Ask::List]).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{version:?}: {status:?}"
        );
        let status = ask_as(version, addr, &[Ask::List], Some(&token))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unimplemented,
            "{version:?}: {status:?}"
        );
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_descriptor_set_that_does_not_decode_is_a_start_error() {
    let greeter = hello::Greeter::new(&hello::HelloConfig::default()).into_service();
    // Field 1 (`file`), 5 bytes long, with 1 byte: truncated.
    let broken: &'static [u8] = &[0x0a, 0x05, 0x01];
    let started = truss::App::builder("broken")
        .config(&local_config(Duration::ZERO, Duration::from_secs(1)))
        .grpc(greeter)
        .file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .file_descriptor_set(broken)
        .start()
        .await;
    let Err(error) = started else {
        panic!("the start should fail");
    };
    assert!(matches!(error, truss::AppError::Config(_)), "{error}");
    let text = error.to_string();
    assert!(text.contains("`file_descriptor_set[1]`"), "{text}");
}
