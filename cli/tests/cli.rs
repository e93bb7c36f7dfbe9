//! `cargo truss` end to end: refusals, custom templates, `--db postgres` rendered, and every
//! built-in template rendered on its SQLite default, built against the local framework,
//! tested, started and asked for `/healthz`, `/readyz` (and gRPC: health, and reflection listing
//! the service).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_cargo-truss");

fn truss(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("truss")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run cargo-truss")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

#[test]
fn refuses_bad_names_existing_directories_and_missing_templates() {
    let dir = tempfile::tempdir().unwrap();
    for (name, says) in [
        ("1svc", "not a valid crate name"),
        ("My-Svc", "not a valid crate name"),
        ("my svc", "not a valid crate name"),
        ("fn", "Rust keyword"),
        ("truss", "shadow"),
        ("svc-", "trailing"),
    ] {
        let out = truss(dir.path(), &["new", name]);
        assert!(!out.status.success(), "{name} accepted");
        assert!(stderr(&out).contains(says), "{name}: {}", stderr(&out));
    }
    assert!(entries(dir.path()).is_empty(), "something was written");

    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
    let out = truss(dir.path(), &["new", "taken"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(entries(&dir.path().join("taken")), ["keep.txt"]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );

    let empty = tempfile::tempdir().unwrap();
    let empty_path = empty.path().to_str().unwrap();
    let out = truss(dir.path(), &["new", "svc", "--templates", empty_path]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("template `http` not found"),
        "{}",
        stderr(&out)
    );
    let out = truss(dir.path(), &["new", "svc", "--template", "nope"]);
    assert!(
        stderr(&out).contains("template `nope` not found"),
        "{}",
        stderr(&out)
    );
    let out = truss(dir.path(), &["new", "svc", "--frobnicate"]);
    assert!(
        stderr(&out).contains("unknown option `--frobnicate`"),
        "{}",
        stderr(&out)
    );
    let out = truss(dir.path(), &["new", "svc", "--db", "mysql"]);
    assert!(
        stderr(&out).contains("--db mysql: not a supported database; use sqlite or postgres"),
        "{}",
        stderr(&out)
    );
    let out = truss(dir.path(), &["new", "svc", "--db"]);
    assert!(
        stderr(&out).contains("`--db` needs a value"),
        "{}",
        stderr(&out)
    );

    // A template with a typo in a placeholder fails before anything is written.
    let bad = tempfile::tempdir().unwrap();
    assert!(truss(bad.path(), &["templates", "tpl"]).status.success());
    std::fs::write(bad.path().join("tpl/http/src/extra.rs"), "// {{nmae}}\n").unwrap();
    let tpl = bad.path().join("tpl");
    let out = truss(
        dir.path(),
        &["new", "svc", "--templates", tpl.to_str().unwrap()],
    );
    assert!(
        stderr(&out).contains("unknown placeholder {{nmae}}"),
        "{}",
        stderr(&out)
    );

    assert_eq!(entries(dir.path()), ["taken"], "nothing half-written");
}

#[test]
fn a_custom_template_directory_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let out = truss(dir.path(), &["templates", "tpl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tpl = dir.path().join("tpl");
    for file in [
        "README.md",
        "base/Cargo.toml.tmpl",
        "http/src/handler.rs",
        "grpc/proto/{{name_snake}}.proto",
    ] {
        assert!(tpl.join(file).is_file(), "no tpl/{file}");
    }
    assert_eq!(entries(&tpl), ["README.md", "base", "grpc", "http"]);

    // An edit to base/ reaches every template; a template's own file replaces base's.
    let readme = tpl.join("base/README.md");
    let mut text = std::fs::read_to_string(&readme).unwrap();
    text.push_str("\nOwned by the {{Name}} team.\n");
    std::fs::write(&readme, text).unwrap();
    std::fs::write(tpl.join("grpc/README.md"), "# {{name}} speaks gRPC\n").unwrap();
    std::fs::write(
        tpl.join("base/NOTES.md"),
        "{{#if grpc}}\ngRPC notes\n{{else}}\nother notes\n{{/if}}\n",
    )
    .unwrap();
    // A new template: base plus its own files.
    std::fs::create_dir_all(tpl.join("worker/src")).unwrap();
    std::fs::write(tpl.join("worker/src/worker.rs"), "// {{Name}}\n").unwrap();

    for args in [
        &["new", "pay-gate", "--templates", "tpl"][..],
        &["new", "pay-api", "--templates", "tpl", "--grpc"],
        &[
            "new",
            "pay-job",
            "--templates",
            "tpl",
            "--template",
            "worker",
        ],
    ] {
        let out = truss(dir.path(), args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let read = |path: &str| std::fs::read_to_string(dir.path().join(path)).unwrap();
    let made = read("pay-gate/README.md");
    assert!(made.contains("Owned by the PayGate team."), "{made}");
    assert!(made.starts_with("# pay-gate"));
    assert_eq!(read("pay-gate/NOTES.md"), "other notes\n");
    assert_eq!(read("pay-api/README.md"), "# pay-api speaks gRPC\n");
    assert_eq!(read("pay-api/NOTES.md"), "gRPC notes\n");
    assert!(dir.path().join("pay-api/proto/pay_api.proto").is_file());
    assert_eq!(read("pay-job/src/worker.rs"), "// PayJob\n");
    assert!(read("pay-job/README.md").contains("Owned by the PayJob team."));

    let out = truss(
        dir.path(),
        &["new", "svc", "--templates", "tpl", "--template", "base"],
    );
    assert!(stderr(&out).contains("not a template"), "{}", stderr(&out));

    // Writing templates over an existing directory is refused.
    let out = truss(dir.path(), &["templates", "tpl"]);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

/// The uncommented `key = value` lines of `[section]` in a TOML file, comments cut off.
fn section_keys(toml: &str, section: &str) -> Vec<String> {
    toml.lines()
        .skip_while(|l| l.trim() != format!("[{section}]"))
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(|l| l.split(" #").next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The `[database]` settings every generated config.toml spells out besides where the data
/// is (`data_dir` for SQLite, `url` for PostgreSQL).
const DATABASE_KEYS: [&str; 7] = [
    "max_connections = 10",
    "min_connections = 0",
    "acquire_timeout = \"2s\"",
    "statement_timeout = \"5s\"",
    "migrate = true",
    "required = true",
    "health_interval = \"5s\"",
];

#[test]
fn db_postgres_configures_the_generated_project() {
    let dir = tempfile::tempdir().unwrap();
    for grpc in [false, true] {
        let name = if grpc { "pay-api" } else { "pay-gate" };
        let snake = name.replace('-', "_");
        let mut args = vec!["new", name, "--db", "postgres"];
        if grpc {
            args.push("--grpc");
        }
        let out = truss(dir.path(), &args);
        assert!(out.status.success(), "{}", stderr(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("on PostgreSQL")
                && stdout.contains(&format!("createdb -h 127.0.0.1 -U postgres {snake}")),
            "{stdout}"
        );
        let read = |path: &str| std::fs::read_to_string(dir.path().join(name).join(path)).unwrap();

        let config = read("config.toml");
        let url = format!("url = \"postgres://postgres@127.0.0.1:5432/{snake}\"");
        let mut expected = vec![url.as_str()];
        expected.extend(DATABASE_KEYS);
        assert_eq!(section_keys(&config, "database"), expected, "{config}");
        assert!(
            config.contains("\n# data_dir = \"data\""),
            "the SQLite lines are commented: {config}"
        );

        let readme = read("README.md");
        assert!(
            readme.contains(&format!("createdb -h 127.0.0.1 -U postgres {snake}")),
            "{readme}"
        );
        assert!(read("Cargo.toml").contains(r#"features = ["sql"]"#));
        assert!(read("migrations/postgres/0001_items.sql").contains("CREATE TABLE items"));
        assert!(read("migrations/sqlite/0001_items.sql").contains("CREATE TABLE items"));
        assert!(!read("Dockerfile").contains("DATA_DIR"));
        let manifest = read("deploy/kubernetes.yaml");
        assert!(
            manifest.contains("replicas: 2") && manifest.contains("- name: TRUSS_DATABASE__URL")
        );
        let test = read("tests/api.rs");
        assert!(
            test.contains("config.database.url = None;"),
            "the generated test needs no server: {test}"
        );
        for file in [
            "config.toml",
            "README.md",
            "Dockerfile",
            "deploy/kubernetes.yaml",
        ] {
            assert!(
                !read(file).contains("{{"),
                "{file}: an unrendered section or placeholder"
            );
        }
    }

    // `--db sqlite` is the default, spelled out.
    let default = tempfile::tempdir().unwrap();
    let explicit = tempfile::tempdir().unwrap();
    assert!(truss(default.path(), &["new", "pay-gate"]).status.success());
    let out = truss(explicit.path(), &["new", "pay-gate", "--db=sqlite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(default.path().join("pay-gate/config.toml")).unwrap();
    let mut expected = vec!["data_dir = \"data\""];
    expected.extend(DATABASE_KEYS);
    assert_eq!(section_keys(&config, "database"), expected, "{config}");
    assert!(config.contains("\n# url = \"postgres://postgres@127.0.0.1:5432/pay_gate\""));
    for file in [
        "config.toml",
        "README.md",
        "Dockerfile",
        "deploy/kubernetes.yaml",
        ".gitignore",
        "src/lib.rs",
        "tests/api.rs",
    ] {
        let read = |root: &Path| std::fs::read_to_string(root.join("pay-gate").join(file)).unwrap();
        assert_eq!(read(default.path()), read(explicit.path()), "{file}");
    }
}

/// The services a gRPC server lists through server reflection (v1), sorted.
async fn reflected_services(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().expect("a reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("not a service list: {reply:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// A started service process, killed when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listening(log: &Path) -> (SocketAddr, Option<SocketAddr>, SocketAddr) {
    for _ in 0..300 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("listening")) {
            let field = |name: &str| {
                let start = line.find(&format!("{name}="))? + name.len() + 1;
                let rest = &line[start..];
                rest[..rest.find(' ').unwrap_or(rest.len())].parse().ok()
            };
            return (
                field("http").unwrap(),
                field("grpc"),
                field("admin").unwrap(),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("service never logged 'listening'");
}

fn http_status(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_owned()
}

fn cargo(project: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(project)
        // Shared by both templates (and kept between runs), apart from the workspace's.
        .env("CARGO_TARGET_DIR", repo().join("target/scaffold"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?} failed in {}:\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The generated code is formatted as rustfmt would.
fn rustfmt_check(project: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["fmt", "--check"])
        .current_dir(project)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo fmt --check in {}:\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Adds unary, server-streaming and client-streaming rpcs to the proto, then `add rpc`.
fn add_rpcs(project: &Path) {
    let proto = project.join("proto/shop_api.proto");
    let mut text = std::fs::read_to_string(&proto).unwrap();
    text = text.replace(
        "package shop_api.v1;\n",
        "package shop_api.v1;\n\nimport \"google/protobuf/empty.proto\";\n",
    );
    text = text.replace(
        "  rpc GetItem(GetItemRequest) returns (Item);\n",
        "  rpc GetItem(GetItemRequest) returns (Item);\n  rpc DeleteItem(GetItemRequest) returns (google.protobuf.Empty);\n  rpc WatchItems(GetItemRequest) returns (stream Item);\n  rpc ImportItems(stream Item) returns (Item);\n",
    );
    std::fs::write(&proto, text).unwrap();

    let api = project.join("src/api.rs");
    let before = std::fs::read_to_string(&api).unwrap();
    let out = truss(project, &["add", "rpc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for rpc in ["DeleteItem", "WatchItems", "ImportItems"] {
        assert!(stdout.contains(&format!("added ShopApi/{rpc}")), "{stdout}");
    }
    assert!(
        !stdout.contains("CreateItem"),
        "an existing rpc was added again: {stdout}"
    );
    let after = std::fs::read_to_string(&api).unwrap();
    // Only insertions: the old file is the new one with one block taken out.
    let cut = before
        .rfind("\n}\n\nimpl Validate")
        .expect("end of the grpc impl")
        + 1;
    assert!(
        after.starts_with(&before[..cut]),
        "code before the insertion changed"
    );
    assert!(
        after.ends_with(&before[cut..]),
        "code after the insertion changed"
    );
    assert!(after.contains(
        "async fn delete_item(&self, req: pb::GetItemRequest) -> Result<(), truss::Error>"
    ));

    let again = truss(project, &["add", "rpc"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to add"));
    assert_eq!(std::fs::read_to_string(&api).unwrap(), after);
}

#[tokio::test(flavor = "multi_thread")]
async fn built_in_templates_build_run_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let framework = repo().join("framework");
    for (name, grpc) in [("shop-api", true), ("shop-web", false)] {
        let mut args = vec!["new", name, "--truss-path", framework.to_str().unwrap()];
        if grpc {
            args.push("--grpc");
        }
        let out = truss(dir.path(), &args);
        assert!(out.status.success(), "{}", stderr(&out));
        let project = dir.path().join(name);
        for file in [
            "Dockerfile",
            "deploy/kubernetes.yaml",
            "config.toml",
            "tests/api.rs",
        ] {
            assert!(project.join(file).is_file(), "{name}: no {file}");
        }
        let manifest = std::fs::read_to_string(project.join("deploy/kubernetes.yaml")).unwrap();
        assert!(manifest.contains("path: /healthz") && manifest.contains("path: /readyz"));
        // The default database: SQLite in data/, which git ignores.
        for file in [
            "migrations/sqlite/0001_items.sql",
            "migrations/postgres/0001_items.sql",
        ] {
            assert!(project.join(file).is_file(), "{name}: no {file}");
        }
        let config = std::fs::read_to_string(project.join("config.toml")).unwrap();
        assert_eq!(section_keys(&config, "database")[0], "data_dir = \"data\"");
        let ignored = std::fs::read_to_string(project.join(".gitignore")).unwrap();
        assert!(ignored.lines().any(|l| l == "/data/"), "{ignored}");
        // The workspace's lock file: the same versions, already downloaded.
        std::fs::copy(repo().join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
        rustfmt_check(&project);
        if grpc {
            add_rpcs(&project);
        }
        cargo(&project, &["build"]);
        cargo(&project, &["test"]); // the template's own test: real HTTP (and gRPC) calls
        // `cargo truss openapi`: the document, written without starting the service.
        let doc = dir.path().join(format!("{name}-openapi.json"));
        let out = Command::new(BIN)
            .args(["truss", "openapi", "--out", doc.to_str().unwrap()])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", repo().join("target/scaffold"))
            .env("CARGO_NET_OFFLINE", "true")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let text = std::fs::read_to_string(&doc).unwrap();
        assert!(text.contains("\"openapi\": \"3.1.0\""), "{text}");
        assert!(text.contains("\"/v1/items/{id}\""), "{text}");
        // What `app()` does before `run()` (opening the SQLite file) still happens.
        let _ = std::fs::remove_dir_all(project.join("data"));
        assert!(
            !project.join("data").exists(),
            "{name}: the template's test wrote into the project directory"
        );

        let log = project.join("run.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(repo().join("target/scaffold/debug").join(name))
            .current_dir(&project)
            .env("TRUSS_HTTP__ADDR", "127.0.0.1:0")
            .env("TRUSS_GRPC__ADDR", "127.0.0.1:0")
            .env("TRUSS_ADMIN__ADDR", "127.0.0.1:0")
            .env("TRUSS_SHUTDOWN__DRAIN_DELAY", "0s")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let service = Service(child);
        let (http, grpc_addr, admin) = listening(&log);
        assert!(http_status(admin, "/healthz").contains("200"), "{name}");
        // Ready once the `database` check's first ping has answered.
        let mut ready = http_status(admin, "/readyz");
        for _ in 0..50 {
            if ready.contains("200") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            ready = http_status(admin, "/readyz");
        }
        assert!(ready.contains("200"), "{name}: {ready}");
        assert!(http_status(http, "/v1/items/1").contains("404"), "{name}");
        assert!(
            project.join(format!("data/{name}.db")).is_file(),
            "{name}: no SQLite file in data/"
        );
        if grpc {
            let addr = grpc_addr.expect("grpc address");
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            assert_eq!(
                reflected_services(channel.clone()).await,
                [
                    "grpc.health.v1.Health",
                    "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection",
                    "shop_api.v1.ShopApi",
                ]
            );
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            let reply = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "shop_api.v1.ShopApi".into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                reply.status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            );
        }
        drop(service);
    }
}
