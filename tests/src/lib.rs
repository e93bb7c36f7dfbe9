//! Helpers for truss's cross-crate integration tests: small real HTTP/1.1 and HTTP/2 clients
//! and app configs that bind port 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use truss::config::{Config, NoAppConfig};

/// Any error, for test plumbing.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A config whose listeners bind 127.0.0.1:0, with the given shutdown timings.
///
/// Load shedding is off: it reacts to the machine's CPU, which a parallel test run keeps
/// busy, and these tests are about other things. Shedding has its own tests with an injected
/// CPU source.
pub fn local_config(drain_delay: Duration, grace: Duration) -> Config<NoAppConfig> {
    let mut config = Config::<NoAppConfig>::default();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    config.http.addr = any;
    config.grpc.addr = any;
    config.admin.addr = any;
    config.shutdown.drain_delay = drain_delay;
    config.shutdown.grace = grace;
    config.shutdown.hook_timeout = Duration::from_secs(2);
    config.admission.shed.enabled = false;
    config
}

/// An example's config from its embedded `defaults` alone (no process arguments, no
/// environment), loaded as the binary `name` would, with the listeners and shutdown timings
/// of [`local_config`] (free ports, no drain delay, 5 s grace).
pub fn example_config<T>(defaults: &'static str, name: &str) -> Config<T>
where
    T: truss::config::Section + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let base = local_config(Duration::ZERO, Duration::from_secs(5));
    let mut config = truss::config::ConfigLoader::new()
        .defaults(defaults)
        .args(vec![name.to_owned()])
        .env_vars(Vec::<(String, String)>::new())
        .load::<T>()
        .expect("an example's embedded defaults load");
    config.http = base.http;
    config.grpc = base.grpc;
    config.admin = base.admin;
    config.shutdown = base.shutdown;
    config
}

/// An example's config as [`example_config`] makes it, with load shedding off and the
/// example's SQLite file in `dir`.
pub fn example_config_in<T>(defaults: &'static str, name: &str, dir: &Path) -> Config<T>
where
    T: truss::config::Section + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let mut config = example_config::<T>(defaults, name);
    config.admission.shed.enabled = false;
    config.database.data_dir = dir.to_path_buf();
    config
}

/// The `user` example and an `order` example that finds it by a static endpoint, both on
/// free ports with their SQLite files in `dir`.
pub async fn user_and_order(
    dir: &Path,
) -> Result<(truss::RunningApp, truss::RunningApp), BoxError> {
    let user_config = example_config_in::<user::UserConfig>(user::DEFAULTS, "user", dir);
    let user_app = user::app(&user_config).await?.start().await?;
    let mut config = example_config_in::<order::OrderConfig>(order::DEFAULTS, "order", dir);
    config.registry.static_endpoints.insert(
        "user".to_owned(),
        vec![truss::registry::StaticEndpoint {
            http: user_app.http_addr(),
            grpc: user_app.grpc_addr(),
        }],
    );
    let order_app = order::app(&config).await?.start().await?;
    Ok((user_app, order_app))
}

/// `GET /config` of an admin listener: the config in force, its sources and revision.
pub async fn config_status(admin: SocketAddr) -> Result<serde_json::Value, BoxError> {
    let (code, body) = get(admin, "/config").await?;
    if code != StatusCode::OK {
        return Err(format!("GET /config: {code}: {body}").into());
    }
    Ok(serde_json::from_str(&body)?)
}

/// Polls [`config_status`] until `done` holds (20 s at most) and returns that status.
pub async fn wait_config(
    admin: SocketAddr,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, BoxError> {
    for _ in 0..1000 {
        let status = config_status(admin).await?;
        if done(&status) {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("timed out; last /config: {}", config_status(admin).await?).into())
}

/// The value of the sample `name{labels}` (written exactly as the exposition prints it) in
/// this process's Prometheus recorder; 0 when absent.
pub fn metric_sample(name_and_labels: &str) -> u64 {
    let text = truss::observe::metrics::render(&truss::observe::metrics::install());
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0)
}

/// A Python tool `scripts/setup.sh` installs into `.tools/venv` (`openapi-spec-validator`,
/// `schemathesis`), or the one on `PATH`.
///
/// # Panics
///
/// When neither exists: the README's test command installs them.
pub fn python_tool(name: &str) -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.tools/venv/bin")
        .join(name);
    if local.is_file() {
        return local;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} is missing: run scripts/setup.sh (the README's test command does)")
        })
}

/// Checks an OpenAPI document with `openapi-spec-validator` (OpenAPI 3.1 schema).
///
/// # Panics
///
/// When the document is not valid; the message is the validator's.
pub fn validate_openapi(document: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document).expect("write the document");
    let out = Command::new(python_tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "not valid OpenAPI 3.1:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An open HTTP/1.1 connection (kept alive between requests).
pub struct H1 {
    send: http1::SendRequest<Empty<Bytes>>,
}

impl H1 {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { send })
    }

    /// Sends `GET path` and reads the whole response.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), BoxError> {
        let (status, _, body) = self.get_with(path, &[]).await?;
        Ok((status, body))
    }

    /// Sends `GET path` with extra headers; the status, headers and body of the response.
    pub async fn get_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, http::HeaderMap, String), BoxError> {
        self.send.ready().await?;
        let mut req = Request::get(path).header(http::header::HOST, "localhost");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = self.send.send_request(req.body(Empty::new())?).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
}

/// An open HTTP/2 (prior knowledge, h2c) connection.
pub struct H2 {
    send: http2::SendRequest<Empty<Bytes>>,
}

impl H2 {
    /// Connects to `addr` speaking HTTP/2 from the first byte.
    pub async fn connect(addr: SocketAddr) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { send })
    }

    /// Sends `GET path` and reads the whole response.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), BoxError> {
        self.send.ready().await?;
        let req = Request::get(format!("http://localhost{path}")).body(Empty::new())?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// `GET path` on a fresh HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), BoxError> {
    H1::connect(addr).await?.get(path).await
}

/// A real etcd (Debian's `etcd-server`) on free loopback ports with a temporary data
/// directory; killed when dropped, even when the test fails.
pub struct Etcd {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    tls: bool,
}

/// etcd's data directory: on tmpfs when there is one, so its fsyncs cannot stall behind
/// the disk writeback of a build running before the test (a CI run of the end-to-end test
/// once waited 30 s for registrations that way).
fn etcd_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("truss-etcd")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("temp dir")
}

/// A free port for a server the test may stop and start again on the same port: below the
/// kernel's ephemeral range (`ip_local_port_range`, 32768 up by default), so while the
/// server is down neither a `bind(0)` nor an outgoing connection of a parallel test can be
/// handed that port. Picked at random, checked free by binding it, and never handed out
/// twice by this process (a server's two ports, or two parallel tests, could otherwise get
/// the same one before either binds it).
fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..1000 {
        let port = 20_000 + (rand_u32() % 12_000) as u16;
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A random number from the clock and a counter (no rand dependency needed here).
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Etcd {
        let mut etcd = Etcd {
            child: None,
            dir: etcd_dir(),
            client_port: free_port(),
            peer_port: free_port(),
            tls: false,
        };
        etcd.spawn().await;
        etcd
    }

    /// Starts etcd serving clients over TLS, with a CA and server certificate made by
    /// `openssl` in its temporary directory ([`ca_file`](Self::ca_file)).
    pub async fn start_tls() -> Etcd {
        let mut etcd = Etcd {
            child: None,
            dir: etcd_dir(),
            client_port: free_port(),
            peer_port: free_port(),
            tls: true,
        };
        tls_certs(etcd.dir.path());
        etcd.spawn().await;
        etcd
    }

    /// The CA certificate of a TLS etcd.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The client endpoint, `http(s)://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    async fn spawn(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = std::process::Command::new("etcd");
        if self.tls {
            command
                .arg("--cert-file")
                .arg(self.dir.path().join("server.pem"))
                .arg("--key-file")
                .arg(self.dir.path().join("server.key"));
        }
        let child = command
            .args(["--name", "test"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("test={peer}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start etcd: run the README's test command, which installs etcd-server");
        self.child = Some(child);
        // Patient: a loaded machine (the whole suite in parallel) can take a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut last = String::new();
        while std::time::Instant::now() < deadline {
            match self.etcdctl(&["endpoint", "health"]) {
                Ok(_) => return,
                Err(error) => last = error,
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "etcd exited with {status} (port {} taken?): {last}",
                    self.client_port
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("etcd did not become healthy within 60 s: {last}");
    }

    /// Kills etcd (the data directory stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data directory.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Runs `etcdctl` against this etcd; its stdout on success.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let mut command = std::process::Command::new("etcdctl");
        if self.tls {
            command.arg(format!("--cacert={}", self.ca_file().display()));
        }
        let out = command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Logs in at the `user` example (`POST /v1/login`, demo credentials) and returns the token.
pub async fn demo_token(user_http: SocketAddr) -> Result<String, BoxError> {
    let body = r#"{"email":"ada@example.com","password":"demo"}"#;
    let (status, _, text) = call(user_http, "POST", "/v1/login", Some(body)).await?;
    let reply: serde_json::Value = serde_json::from_str(&text)?;
    match reply["token"].as_str() {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ => Err(format!("login failed: {status} {text}").into()),
    }
}

/// A response read whole: status, headers, body.
pub type Answer = (StatusCode, http::HeaderMap, String);

/// Sends one HTTP/1.1 request on a new connection; `json` is sent as an
/// `application/json` body.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<Answer, BoxError> {
    call_as(addr, method, path, json, None).await
}

/// [`call`] with `Authorization: Bearer <token>` when `token` is given.
pub async fn call_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> Result<Answer, BoxError> {
    use http_body_util::Full;
    let stream = TcpStream::connect(addr).await?;
    let (mut send, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"));
    if json.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::from(json.unwrap_or_default().to_owned())))?;
    let response = send.send_request(req).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// Runs `promtool check metrics` on an exposition text; the error holds promtool's output.
///
/// # Panics
///
/// When `promtool` is not on `PATH`: the README's test command installs it.
pub fn promtool_check(text: &str) -> Result<(), String> {
    use std::io::Write;
    let promtool = std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
        .expect("promtool not found: run the README's test command, which installs it");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A service process logging to a file; killed when dropped, even when the test fails.
pub struct Proc {
    child: Child,
    /// Where it logs.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin --config config`, stdout and stderr into `log`.
    pub fn spawn(bin: &str, config: &Path, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn service");
        Proc { child, log }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The HTTP and admin addresses from its "listening" line.
    pub async fn addrs(&self) -> (SocketAddr, SocketAddr) {
        for _ in 0..600 {
            if let Some(line) = self.log().lines().find(|l| l.contains("listening")) {
                return (field(line, "http"), field(line, "admin"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no 'listening' line in {}:\n{}",
            self.log.display(),
            self.log()
        );
    }

    /// The gRPC address from its "listening" line.
    pub async fn grpc_addr(&self) -> SocketAddr {
        self.addrs().await;
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("listening"))
            .unwrap_or_default();
        field(line, "grpc")
    }

    /// Sends `signal` from Rust, not through a `kill` command a minimal machine may lack.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with a valid signal number has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits for it to exit, at most `within`.
    pub async fn exit(&mut self, within: Duration) -> ExitStatus {
        let end = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(tokio::time::Instant::now() < end, "process did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, name: &str) -> SocketAddr {
    let start = line.find(&format!("{name}=")).expect("field") + name.len() + 1;
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].parse().expect("address")
}

/// A real PostgreSQL (Debian's `postgresql`) on a free loopback port: a throwaway cluster
/// (`initdb`, trust auth) in a temporary directory that also holds its unix socket; killed
/// when dropped, even when the test fails. Run as root, the server runs as the `postgres`
/// user (PostgreSQL refuses root).
pub struct Postgres {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` that holds `initdb`.
fn postgres_bin() -> std::path::PathBuf {
    let root = std::path::Path::new("/usr/lib/postgresql");
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/*/bin/initdb: run the README's test command, which installs postgresql")
}

/// The uid and gid of the `postgres` user when running as root (None otherwise).
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam gets a NUL-terminated name and its
    // result is read at once, on this thread, before any other passwd call.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "running as root, and there is no `postgres` user to run PostgreSQL as"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

impl Postgres {
    /// Creates a cluster, starts PostgreSQL and waits until it accepts connections.
    pub async fn start() -> Postgres {
        let mut pg = Postgres {
            child: None,
            dir: tempfile::Builder::new()
                .prefix("truss-pg")
                .tempdir()
                .expect("temp dir"),
            bin: postgres_bin(),
            port: free_port(),
            user: postgres_user(),
        };
        if let Some((uid, gid)) = pg.user {
            std::os::unix::fs::chown(pg.dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("cannot run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.spawn().await;
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// A command for one of PostgreSQL's programs, as the `postgres` user when root.
    fn command(&self, program: &str) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command.stdin(std::process::Stdio::null());
        command
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log file");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "cannot start postgres: run the README's test command, which installs postgresql",
            );
        self.child = Some(child);
        for _ in 0..100 {
            let ready = std::process::Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        panic!("postgres did not start:\n{log}");
    }

    /// Stops PostgreSQL at once (immediate shutdown, then SIGKILL after 5 s); the cluster
    /// stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: PostgreSQL's immediate shutdown, which also ends every backend.
            // SAFETY: kill with a pid this struct spawned and has not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGQUIT) };
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts PostgreSQL again on the same port and cluster.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Runs one statement with `psql` in the `postgres` database (its own connection); its
    /// unaligned output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_in("postgres", sql)
    }

    /// Runs one statement with `psql` in `database`; its unaligned output.
    pub fn psql_in(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = std::process::Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", "postgres", "-d", database, "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes a throwaway CA (`ca.pem`, `ca.key`) and a server certificate for 127.0.0.1 and
/// localhost signed by it (`server.pem`, `server.key`) in `dir`, with `openssl`.
pub fn tls_certs(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=truss-test-ca",
        "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext.cnf",
    ] {
        let ok = std::process::Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(ok.success(), "openssl {args}");
    }
}

/// A real Redis (Debian's `redis-server`) on a free loopback port, in a temporary
/// directory, without persistence; killed when dropped, even when the test fails.
pub struct RedisServer {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl RedisServer {
    /// Starts Redis and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        let mut redis = RedisServer {
            child: None,
            dir: tempfile::Builder::new()
                .prefix("truss-redis")
                .tempdir()
                .expect("temp dir"),
            port: free_port(),
        };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("log file");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // DEBUG SLEEP makes a slow server on demand (from loopback only).
            .args(["--enable-debug-command", "local"])
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start redis-server: run the README's test command, which installs it");
        self.child = Some(child);
        for _ in 0..100 {
            if self.cli(&["PING"]).is_ok_and(|out| out == "PONG") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        panic!("redis-server did not start:\n{log}");
    }

    /// Kills Redis (SIGKILL: no goodbye to its clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port (empty: nothing was saved).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Makes the server sleep for `duration` (`DEBUG SLEEP` on a connection of its own): it
    /// answers no one meanwhile. Returns once the server is seen asleep (a `PING` on a new
    /// connection goes unanswered for 100 ms, twice in a row), with the sleeper task, which
    /// ends when the server wakes.
    pub async fn sleep(&self, duration: Duration) -> tokio::task::JoinHandle<()> {
        let url = self.url();
        let sleeper = tokio::spawn(async move {
            let client = redis::Client::open(url).expect("redis url");
            let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
            let mut raw = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .expect("connect to redis");
            let _: redis::RedisResult<()> = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(duration.as_secs_f64())
                .query_async(&mut raw)
                .await;
        });
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut silent = 0;
        for _ in 0..100 {
            assert!(
                !sleeper.is_finished(),
                "the DEBUG SLEEP task ended before redis was seen asleep"
            );
            silent = if answers_ping(addr).await {
                0
            } else {
                silent + 1
            };
            if silent == 2 {
                return sleeper;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis did not fall asleep within seconds");
    }

    /// Runs `redis-cli` with `args` against this Redis (its own connection); its trimmed
    /// stdout on success. redis-cli reports error replies on stdout with exit code 0: they
    /// come back as `Ok("ERR …")`.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real NATS server with JetStream (Debian's `nats-server`) on a free loopback port, its
/// store in a temporary directory; killed when dropped, even when the test fails.
pub struct NatsServer {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl NatsServer {
    /// Starts `nats-server -js` and waits until it accepts connections.
    pub async fn start() -> NatsServer {
        let mut nats = NatsServer {
            child: None,
            dir: tempfile::Builder::new()
                .prefix("truss-nats")
                .tempdir()
                .expect("temp dir"),
            port: free_port(),
        };
        nats.spawn().await;
        nats
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        // Debian installs it in /usr/sbin, which a non-root PATH may lack.
        let bin = if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let log = self.dir.path().join("nats.log");
        let _ = std::fs::remove_file(&log);
        let child = std::process::Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.dir.path().join("store"))
            .arg("-l")
            .arg(&log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start nats-server: run the README's test command, which installs it");
        self.child = Some(child);
        for _ in 0..100 {
            let ready = std::fs::read_to_string(&log).unwrap_or_default();
            if ready.contains("Server is ready") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("nats-server did not start:\n{log}");
    }

    /// Kills the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store (JetStream's files survive).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A protobuf body with multi-byte varints and non-ASCII text: not UTF-8 once encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoOrder {
    /// Above 127: a two-byte varint.
    #[prost(uint64, tag = "1")]
    pub order_id: u64,
    /// With a non-ASCII character.
    #[prost(string, tag = "2")]
    pub item: String,
}

/// The protobuf body the binary-payload tests send.
pub fn proto_order() -> ProtoOrder {
    ProtoOrder {
        order_id: 300,
        item: "tea ☕".to_owned(),
    }
}

/// Consumes `subscription` on `backend` with a protobuf handler that fails the first
/// delivery with a 503 and records what the retry decoded; returns that body, or an error
/// when no retry arrived within 10 s.
pub async fn proto_body_after_a_retry(
    backend: std::sync::Arc<dyn truss::queue::Backend>,
    subscription: &str,
) -> Result<(u32, ProtoOrder), BoxError> {
    use truss::queue::{ConsumerConfig, Message, Proto};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let handler = {
        let seen = seen.clone();
        move |msg: Message<Proto<ProtoOrder>>| {
            let seen = seen.clone();
            async move {
                if msg.attempt == 1 {
                    return Err(truss::Error::unavailable("DOWN", "first delivery fails"));
                }
                if let Ok(mut seen) = seen.lock() {
                    *seen = Some((msg.attempt, msg.body.0.clone()));
                }
                Ok(())
            }
        }
    };
    let quick = ConsumerConfig {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        poll: Duration::from_millis(50),
        ..ConsumerConfig::default()
    };
    let app = truss::App::builder("notify")
        .config(&local_config(Duration::ZERO, Duration::from_secs(5)))
        .consume(subscription, backend, quick, handler)
        .start()
        .await?;
    let mut got = None;
    for _ in 0..500 {
        got = seen.lock().ok().and_then(|s| s.clone());
        if got.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown().await?;
    got.ok_or_else(|| "the retry never arrived".into())
}

/// Whether the Redis at `addr` answers a `PING` on a new connection within 100 ms.
async fn answers_ping(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
        conn.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        conn.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(100), probe).await,
        Ok(Some(true))
    )
}
