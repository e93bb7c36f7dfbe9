//! The hello binary itself: it logs the addresses it bound, serves, stops cleanly on SIGTERM,
//! and exits non-zero with a clear message on bad config.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_hello");

/// Kills the child when the test ends, even on failure.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hello() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("TRUSS_HTTP__ADDR", "127.0.0.1:0")
        .env("TRUSS_GRPC__ADDR", "127.0.0.1:0")
        .env("TRUSS_ADMIN__ADDR", "127.0.0.1:0")
        .env("TRUSS_SHUTDOWN__DRAIN_DELAY", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn field(line: &str, name: &str) -> SocketAddr {
    let start = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
    let rest = &line[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn logs_bound_addresses_serves_and_stops_on_sigterm() {
    let mut child = Guard(hello().env("TRUSS_APP__GREETING", "Hi").spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("listening"))
        .expect("no 'listening' line");
    let (http, admin) = (field(&line, "http"), field(&line, "admin"));
    assert_ne!(http.port(), 0);
    field(&line, "grpc");

    let resp = http_get(http, "/hello?name=Ada");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("Hi, Ada!"), "{resp}");
    assert!(http_get(admin, "/readyz").starts_with("HTTP/1.1 200"));

    // Signalled from Rust, not through a `kill` command a minimal machine may lack.
    let pid = libc::pid_t::try_from(child.0.id()).expect("pid");
    // SAFETY: kill(2) with a valid signal number has no memory-safety preconditions.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGTERM) },
        0,
        "kill -TERM failed"
    );
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(
        rest.iter().any(|l| l.contains("shutdown complete")),
        "{rest:?}"
    );
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) with a valid signal number has no memory-safety preconditions.
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "kill({signal}) failed"
    );
}

/// The body of a GET, polled until `want` holds or 10 s pass.
fn poll_get(addr: SocketAddr, path: &str, want: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        last = http_get(addr, path);
        if want(&last) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

#[test]
fn sighup_reloads_the_greeting_and_log_level_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.toml");
    // The file watch polls hourly here: only SIGHUP can make this reload. Access lines are
    // filtered out until the reload turns them on.
    let text = |greeting: &str, level: &str| {
        format!(
            "[reload]\npoll = \"1h\"\n[log]\nlevel = \"{level}\"\n[app]\ngreeting = \"{greeting}\"\n"
        )
    };
    let json = |greeting: &str| text(greeting, "info").replace("[log]", "[log]\nformat = \"json\"");
    std::fs::write(&file, text("Hi", "info,truss::access=off")).unwrap();
    let mut child = Guard(hello().arg("--config").arg(&file).spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("listening"))
        .expect("no 'listening' line");
    let (http, admin) = (field(&line, "http"), field(&line, "admin"));
    assert!(http_get(http, "/hello?name=Ada").ends_with("Hi, Ada!"));

    std::fs::write(&file, text("Howdy", "info")).unwrap();
    signal(&child.0, libc::SIGHUP);
    let resp = poll_get(http, "/hello?name=Ada", |r| r.ends_with("Howdy, Ada!"));
    assert!(resp.ends_with("Howdy, Ada!"), "{resp}");
    let config = http_get(admin, "/config");
    assert!(config.contains("\"revision\":1"), "{config}");

    // An invalid greeting is rejected whole: the old one stays.
    std::fs::write(&file, text(" ", "info")).unwrap();
    signal(&child.0, libc::SIGHUP);
    let config = poll_get(admin, "/config", |c| c.contains("must not be empty"));
    assert!(config.contains("`app.greeting`"), "{config}");
    assert!(http_get(http, "/hello?name=Ada").ends_with("Howdy, Ada!"));

    // JSON lines from now on.
    std::fs::write(&file, json("Howdy")).unwrap();
    signal(&child.0, libc::SIGHUP);
    poll_get(admin, "/config", |c| c.contains("\"revision\":2"));
    assert!(http_get(http, "/hello?name=Bob").ends_with("Howdy, Bob!"));

    signal(&child.0, libc::SIGTERM);
    let exit = child.0.wait().unwrap();
    assert!(
        exit.success(),
        "a reload must not stop the process: {exit:?}"
    );
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let reloaded = rest
        .iter()
        .position(|l| l.contains("config reloaded"))
        .unwrap_or_else(|| panic!("no reload logged: {rest:?}"));
    let access = |l: &&String| l.contains("/hello") && l.contains("200");
    assert!(
        !rest[..reloaded].iter().any(|l| access(&l)),
        "access lines before the level changed: {rest:?}"
    );
    assert!(
        rest[reloaded..].iter().any(|l| access(&l)),
        "access lines after the level changed: {rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("config reload rejected")),
        "{rest:?}"
    );
}

#[test]
fn bad_config_exits_non_zero_naming_key_and_source() {
    let out = hello()
        .env("TRUSS_SHUTDOWN__GRACE", "ten seconds")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`shutdown.grace`"), "{stderr}");
    assert!(stderr.contains("TRUSS_SHUTDOWN__GRACE"), "{stderr}");

    let dir = std::env::temp_dir().join(format!("hello-missing-{}", std::process::id()));
    let out = hello()
        .arg("--config")
        .arg(dir.join("hello.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--config"), "{stderr}");
    assert!(stderr.contains("hello.toml"), "{stderr}");
}

#[test]
fn shipped_config_file_is_valid() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/hello.toml");
    let config: truss::Config<hello::HelloConfig> = truss::config::ConfigLoader::new()
        .args(["hello", "--config", file])
        .env_vars(Vec::<(String, String)>::new())
        .load()
        .unwrap();
    assert_eq!(config.app.greeting, "Hello");
}
