//! Config loading: precedence and the errors malformed input gets.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use truss::config::{Config, ConfigError, ConfigLoader, Section, ValidationError};

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct Team {
    greeting: String,
    workers: u32,
}

impl Section for Team {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.workers > 64 {
            return Err(ValidationError::new("workers", "must be at most 64"));
        }
        Ok(())
    }
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Config<Team>, ConfigError> {
    let mut argv = vec!["svc".to_owned()];
    argv.extend(args.iter().map(|s| s.to_string()));
    ConfigLoader::new()
        .args(argv)
        .env_vars(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .load()
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn defaults_apply_without_file_or_env() {
    let config = load(&[], &[]).unwrap();
    assert_eq!(config.http.addr.to_string(), "0.0.0.0:8080");
    assert_eq!(config.grpc.addr.to_string(), "0.0.0.0:9090");
    assert_eq!(config.admin.addr.to_string(), "127.0.0.1:9091");
    assert_eq!(config.shutdown.drain_delay, Duration::from_secs(1));
    assert_eq!(config.app, Team::default());
}

#[test]
fn file_overrides_defaults_and_env_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "svc.toml",
        r#"
        [http]
        addr = "127.0.0.1:7000"
        [shutdown]
        grace = "3s"
        drain_delay = "250ms"
        [app]
        greeting = "from file"
        workers = 4
        "#,
    );
    let config = load(
        &["--config", path_str(&file)],
        &[
            ("TRUSS_HTTP__ADDR", "127.0.0.1:7001"),
            ("TRUSS_APP__WORKERS", "8"),
            ("OTHER_HTTP__ADDR", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(config.http.addr.to_string(), "127.0.0.1:7001", "env wins");
    assert_eq!(config.shutdown.grace, Duration::from_secs(3), "file wins");
    assert_eq!(config.shutdown.drain_delay, Duration::from_millis(250));
    assert_eq!(
        config.shutdown.hook_timeout,
        Duration::from_secs(5),
        "default stays"
    );
    assert_eq!(config.app.greeting, "from file");
    assert_eq!(config.app.workers, 8);
}

#[test]
fn file_path_from_env_var_and_yaml_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = write(&dir, "svc.yaml", "grpc:\n  addr: 127.0.0.1:7100\n");
    let config = load(&[], &[("TRUSS_CONFIG", path_str(&yaml))]).unwrap();
    assert_eq!(config.grpc.addr.to_string(), "127.0.0.1:7100");

    let json = write(&dir, "svc.json", r#"{"admin": {"addr": "127.0.0.1:7200"}}"#);
    let config = load(&[&format!("--config={}", path_str(&json))], &[]).unwrap();
    assert_eq!(config.admin.addr.to_string(), "127.0.0.1:7200");
}

#[test]
fn custom_prefix() {
    let config: Config<Team> = ConfigLoader::new()
        .env_prefix("hello")
        .args(["svc"])
        .env_vars([("HELLO_APP__GREETING", "hi"), ("TRUSS_APP__GREETING", "no")])
        .load()
        .unwrap();
    assert_eq!(config.app.greeting, "hi");
}

/// Asserts the error names `key` and `source`, and returns its text.
fn assert_names(err: ConfigError, key: &str, source: &str) -> String {
    let text = err.to_string();
    assert!(
        text.contains(key),
        "error does not name key {key:?}: {text}"
    );
    assert!(
        text.contains(source),
        "error does not name source {source:?}: {text}"
    );
    text
}

#[test]
fn bad_syntax_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "svc.toml", "[http\naddr = 1");
    let err = load(&["--config", path_str(&file)], &[]).unwrap_err();
    assert_names(err, "svc.toml", "file");
}

#[test]
fn wrong_type_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "svc.toml", "[app]\nworkers = \"many\"\n");
    let err = load(&["--config", path_str(&file)], &[]).unwrap_err();
    assert_names(err, "`app.workers`", path_str(&file));
}

#[test]
fn unknown_key_is_rejected_in_framework_and_team_sections_and_top_level() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "svc.toml",
        "[http]\nadr = \"127.0.0.1:1\"\n[app]\ngreting = \"x\"\n[htpp]\naddr = 1\n",
    );
    let err = load(&["--config", path_str(&file)], &[]).unwrap_err();
    let text = assert_names(err.clone(), "`http.adr`", path_str(&file));
    assert!(text.contains("`app.greting`"), "{text}");
    assert!(text.contains("`htpp`"), "{text}");
    let keys: Vec<_> = err.keys().collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
}

#[test]
fn unknown_key_from_env_names_the_variable() {
    let err = load(&[], &[("TRUSS_SHUTDOWN__GRACEFUL", "1s")]).unwrap_err();
    assert_names(err, "`shutdown.graceful`", "TRUSS_SHUTDOWN__GRACEFUL");
}

#[test]
fn bad_duration_names_key_and_env_var() {
    let err = load(&[], &[("TRUSS_SHUTDOWN__GRACE", "10 seconds")]).unwrap_err();
    let text = assert_names(
        err,
        "`shutdown.grace`",
        "environment variable TRUSS_SHUTDOWN__GRACE",
    );
    assert!(text.contains("invalid duration"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "svc.toml", "[shutdown]\ndrain_delay = 5\n");
    let err = load(&["--config", path_str(&file)], &[]).unwrap_err();
    let text = assert_names(err, "`shutdown.drain_delay`", path_str(&file));
    assert!(text.contains("needs a unit"), "{text}");
}

#[test]
fn bad_address_names_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "svc.toml", "[admin]\naddr = \"localhost\"\n");
    let err = load(&["--config", path_str(&file)], &[]).unwrap_err();
    let text = assert_names(err, "`admin.addr`", path_str(&file));
    assert!(text.contains("socket address"), "{text}");
}

#[test]
fn missing_file_named_explicitly_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = load(&["--config", path_str(&missing)], &[]).unwrap_err();
    assert_names(err, "nope.toml", "--config");

    let err = load(&[], &[("TRUSS_CONFIG", path_str(&missing))]).unwrap_err();
    assert_names(err, "nope.toml", "TRUSS_CONFIG");

    let err = load(&["--config"], &[]).unwrap_err();
    assert!(err.to_string().contains("--config"), "{err}");
}

#[test]
fn unknown_extension_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "svc.ini", "x=1");
    let err = load(&["--config", path_str(&file)], &[]).unwrap_err();
    assert_names(err, "svc.ini", ".toml");
}

#[test]
fn team_validation_names_key_and_source() {
    let err = load(&[], &[("TRUSS_APP__WORKERS", "100")]).unwrap_err();
    let text = assert_names(err, "`app.workers`", "TRUSS_APP__WORKERS");
    assert!(text.contains("at most 64"), "{text}");
}

#[test]
fn several_problems_are_all_reported() {
    let err = load(
        &[],
        &[("TRUSS_HTTP__ADDR", "nope"), ("TRUSS_GRPC__ADDR", "nope")],
    )
    .unwrap_err();
    let keys: Vec<_> = err.keys().collect();
    assert_eq!(keys, ["http.addr", "grpc.addr"]);
}

#[test]
fn bad_admission_values_are_rejected_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[admission.rate_limit]\nrps = -5\n",
            "`admission.rate_limit.rps`",
            "positive",
        ),
        (
            "[admission.routes.\"/login\"]\nrps = 5\nburst = 0\n",
            "`admission.routes.\"/login\".burst`",
            "at least 1",
        ),
        (
            "[admission.shed]\ncpu_threshold = 150\n",
            "`admission.shed.cpu_threshold`",
            "1 to 100",
        ),
        (
            "[admission.routes.\"/x\"]\nrps = 5\nkey = \"cookie\"\n",
            "`admission.routes./x.key`",
            "invalid key",
        ),
    ];
    for (i, (text, key, message)) in cases.into_iter().enumerate() {
        let file = write(&dir, &format!("case{i}.toml"), text);
        let err = load(&["--config", path_str(&file)], &[]).unwrap_err();
        let text = assert_names(err, key, path_str(&file));
        assert!(text.contains(message), "{text}");
    }
    let err = load(&[], &[("TRUSS_ADMISSION__SHED__CPU_THRESHOLD", "0")]).unwrap_err();
    assert_names(
        err,
        "`admission.shed.cpu_threshold`",
        "TRUSS_ADMISSION__SHED__CPU_THRESHOLD",
    );
}

#[test]
fn registry_static_endpoints_parse_and_empty_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "svc.toml",
        "[registry.static]\nuser = [{ grpc = \"127.0.0.1:9090\" }, { http = \"127.0.0.1:8080\" }]\n",
    );
    let config = load(&["--config", path_str(&file)], &[]).unwrap();
    let user = &config.registry.static_endpoints["user"];
    assert_eq!(user.len(), 2);
    assert_eq!(user[0].grpc.unwrap().port(), 9090);

    let bad = write(&dir, "bad.toml", "[registry.static]\nuser = [{}]\n");
    let err = load(&["--config", path_str(&bad)], &[]).unwrap_err();
    assert_names(err, "`registry.static.user`", path_str(&bad));
}

#[test]
fn every_framework_section_is_accepted_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "all.toml",
        r#"
        [http]
        addr = "127.0.0.1:1"
        [grpc]
        addr = "127.0.0.1:2"
        [admin]
        addr = "127.0.0.1:3"
        [shutdown]
        grace = "1s"
        [log]
        access = false
        [admission]
        max_in_flight = 7
        [timeout]
        default = "2s"
        [timeout.routes]
        "/slow" = "1m"
        [breaker]
        strategy = "state_machine"
        [retry]
        max_attempts = 2
        [trace]
        sample_ratio = 0.5
        [registry]
        advertise_host = "10.0.0.7"
        [app]
        workers = 3
        "#,
    );
    let config = load(&["--config", path_str(&file)], &[]).unwrap();
    assert_eq!(config.admission.max_in_flight, 7);
    assert_eq!(config.timeout.default, Duration::from_secs(2));
    assert_eq!(config.timeout.routes["/slow"].0, Duration::from_secs(60));
    assert_eq!(
        config.breaker.strategy,
        truss::resilience::breaker::Strategy::StateMachine
    );
    assert_eq!(config.retry.max_attempts, 2);
    assert_eq!(config.trace.sample_ratio, 0.5);
    assert_eq!(
        config.registry.advertise_host.unwrap().to_string(),
        "10.0.0.7"
    );
    assert!(!config.log.access);
    assert_eq!(config.app.workers, 3);
}

#[test]
fn bad_auth_keys_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "svc.toml",
        "[[auth.keys]]\nalg = \"HS999\"\nsecret = \"x\"\n",
    );
    let err = load(&["--config", path_str(&file)], &[]).unwrap_err();
    let text = assert_names(err, "auth.keys[0].alg", path_str(&file));
    assert!(text.contains("HS999"), "{text}");

    let file = write(
        &dir,
        "svc2.toml",
        "[[auth.keys]]\nkid = \"a\"\nalg = \"RS256\"\nsecret = \"not a pem\"\n",
    );
    let err = load(&["--config", path_str(&file)], &[]).unwrap_err();
    assert_names(err, "auth.keys[0].pem_file", path_str(&file));

    let file = write(
        &dir,
        "svc3.toml",
        "[auth.routes.\"GET /x\"]\npublic = true\nscope = \"a\"\n",
    );
    let err = load(&["--config", path_str(&file)], &[]).unwrap_err();
    assert_names(err, "auth.routes", path_str(&file));
}
