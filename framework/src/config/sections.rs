//! The framework's typed config sections. Every field has a documented default, every section
//! rejects unknown keys.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use crate::section::{Section, ValidationError};

/// `[http]`: the public HTTP listener (HTTP/1.1 and h2c on one port).
///
/// ```toml
/// [http]
/// addr = "0.0.0.0:8080"          # default
/// header_read_timeout = "10s"     # default; slow-loris guard (see the field)
/// openapi = true                  # default; GET /openapi.json
/// openapi_ui = false              # true: Swagger UI at GET /docs (feature `openapi-ui`)
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to bind. Port 0 picks a free port; the bound address is logged at start.
    pub addr: SocketAddr,
    /// How long a client may take to send a request head on HTTP/1.1, and, on a new
    /// connection to this listener or the admin one, to show which protocol it speaks (an
    /// HTTP/1.1 request line or HTTP/2's preface) and, for HTTP/2, to send the header of its
    /// first frame, all from the accept: a connection silent for longer is closed. An HTTP/2
    /// client that has greeted may stay idle. Must be above zero. Default `10s`.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Serve the OpenAPI 3.1 document of the routes at `GET /openapi.json` (public when
    /// `[auth]` is on). Default `true`. See [`openapi`](crate::openapi).
    pub openapi: bool,
    /// Serve Swagger UI for that document at `GET /docs` (feature `openapi-ui`). Default
    /// `false`.
    pub openapi_ui: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            header_read_timeout: Duration::from_secs(10),
            openapi: true,
            openapi_ui: false,
        }
    }
}

/// `[grpc]`: the gRPC listener (HTTP/2 only).
///
/// ```toml
/// [grpc]
/// addr = "0.0.0.0:9090"          # default
/// max_concurrent_streams = 1024  # default
/// handshake_timeout = "10s"      # default; slow-loris guard (see the field)
/// reflection = true              # default; false: no grpc.reflection services
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Address to bind. Port 0 picks a free port.
    pub addr: SocketAddr,
    /// Maximum concurrent HTTP/2 streams per connection. Default 1024.
    pub max_concurrent_streams: u32,
    /// How long a new connection may take to send HTTP/2's preface and the header of its
    /// first frame: a connection silent for longer is closed (hyper's HTTP/2 server would
    /// wait for it for ever, even through a graceful shutdown). A client that has greeted
    /// may stay idle. Must be above zero. Default `10s`.
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    /// Serve gRPC server reflection (`grpc.reflection.v1` and `grpc.reflection.v1alpha`)
    /// next to the app's services, so `grpcurl`, `grpcui` or Postman can list and describe
    /// them without the `.proto` files. Default `true`.
    ///
    /// Reflection describes the standard health and reflection services and every
    /// descriptor set registered with
    /// [`AppBuilder::file_descriptor_set`](crate::AppBuilder::file_descriptor_set). Like
    /// health, it is public when `[auth]` is on (unless `auth.routes` says otherwise).
    /// `false` leaves the services out: reflection calls get `UNIMPLEMENTED` (with `[auth]`
    /// on, `UNAUTHENTICATED` without a token, as on any route the app does not serve).
    pub reflection: bool,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            max_concurrent_streams: 1024,
            handshake_timeout: Duration::from_secs(10),
            reflection: true,
        }
    }
}

/// `[admin]`: the admin listener serving `/healthz`, `/readyz` and `/metrics`, and the
/// profiling endpoints when asked. It bypasses every admission and resilience layer, and
/// binds to loopback by default so it is not exposed.
///
/// ```toml
/// [admin]
/// addr = "127.0.0.1:9091"   # default
/// profiling = false         # default; true: /debug/pprof/* (needs the `profiling` feature)
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address to bind. Default `127.0.0.1:9091`.
    pub addr: SocketAddr,
    /// Serve CPU profiles of the process on this listener: `/debug/pprof/profile?seconds=N`
    /// (pprof protobuf, for `go tool pprof`) and `/debug/pprof/flamegraph?seconds=N` (SVG).
    /// Default `false`.
    ///
    /// Needs truss built with the `profiling` feature; `true` without it fails validation
    /// rather than silently serving nothing. A profile reveals function names and costs CPU
    /// while it runs, so keep it off on an admin address others can reach. See
    /// `truss::observe::profile` (documented when the feature is on).
    ///
    /// ```
    /// use truss::config::{AdminConfig, Section};
    ///
    /// let admin = AdminConfig { profiling: true, ..AdminConfig::default() };
    /// match admin.validate() {
    ///     Ok(()) => assert!(cfg!(feature = "profiling")),
    ///     Err(e) => assert!(e.to_string().starts_with("profiling: ") && e.message.contains("`profiling` feature")),
    /// }
    /// ```
    pub profiling: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 9091)),
            profiling: false,
        }
    }
}

/// `[shutdown]`: the graceful shutdown sequence.
///
/// On SIGTERM, SIGINT or [`ShutdownHandle::shutdown`](crate::ShutdownHandle::shutdown):
/// readiness goes false → before-stop hooks (each bounded by `hook_timeout`) → `drain_delay`
/// → listeners stop accepting → in-flight requests get up to `grace` to finish → remaining
/// connections are closed by force → after-stop hooks → `run` returns. The whole sequence is
/// bounded by `hook_timeout × (hooks + 1) + drain_delay + grace + 1s`: each hook, before or
/// after, gets at most `hook_timeout`, so does deregistering from the registry, and the admin
/// listener drains last, for at most `min(grace, 1s)` more.
///
/// ```toml
/// [shutdown]
/// drain_delay = "1s"    # default: time for load balancers to notice /readyz went false
/// grace = "10s"         # default: how long in-flight requests may take to finish
/// hook_timeout = "5s"   # default: the most one lifecycle hook may take
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Pause between readiness going false (and deregistration) and closing the listeners.
    #[serde(with = "duration")]
    pub drain_delay: Duration,
    /// How long in-flight requests may run after the listeners close before connections are
    /// closed by force.
    #[serde(with = "duration")]
    pub grace: Duration,
    /// Upper bound for each before-stop and after-stop hook.
    #[serde(with = "duration")]
    pub hook_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(1),
            grace: Duration::from_secs(10),
            hook_timeout: Duration::from_secs(5),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: the `tracing` subscriber the app installs.
///
/// ```toml
/// [log]
/// level = "info"    # default; RUST_LOG, when set, wins
/// format = "text"   # or "json"
/// access = true     # one line per request at target truss::access
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// An `EnvFilter` directive such as `info` or `info,truss=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
    /// Whether to log one line per request (route template, status, duration). Default
    /// `true`.
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
            access: true,
        }
    }
}

/// The team section for an app that has none: it accepts an empty or absent `[app]` and
/// rejects any key in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoAppConfig {}

impl Section for HttpConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.header_read_timeout.is_zero() {
            return Err(ValidationError::new(
                "header_read_timeout",
                "must be above zero: every connection would be closed before its first request",
            ));
        }
        if self.openapi_ui && !self.openapi {
            return Err(ValidationError::new(
                "openapi_ui",
                "needs `openapi = true`: the page shows that document",
            ));
        }
        if self.openapi_ui && cfg!(not(feature = "openapi-ui")) {
            return Err(ValidationError::new(
                "openapi_ui",
                "is true, but truss was built without its `openapi-ui` feature",
            ));
        }
        Ok(())
    }
}
impl Section for GrpcConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.handshake_timeout.is_zero() {
            return Err(ValidationError::new(
                "handshake_timeout",
                "must be above zero: every connection would be closed before its first call",
            ));
        }
        Ok(())
    }
}
impl Section for ShutdownConfig {}
impl Section for NoAppConfig {}

impl Section for AdminConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.profiling && !cfg!(feature = "profiling") {
            return Err(ValidationError::new(
                "profiling",
                "is true, but truss was built without its `profiling` feature: enable the \
                 feature (truss = { features = [\"profiling\"] }) or set it to false",
            ));
        }
        Ok(())
    }
}

impl Section for LogConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(drop)
            .map_err(|e| {
                ValidationError::new("level", format!("invalid log filter {:?}: {e}", self.level))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_header_read_timeout_is_refused_naming_the_key() {
        let config = HttpConfig {
            header_read_timeout: Duration::ZERO,
            ..HttpConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("header_read_timeout"), "{error}");
        assert!(HttpConfig::default().validate().is_ok());
    }

    #[test]
    fn a_zero_grpc_handshake_timeout_is_refused_naming_the_key() {
        let config = GrpcConfig {
            handshake_timeout: Duration::ZERO,
            ..GrpcConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("handshake_timeout"), "{error}");
        assert!(GrpcConfig::default().validate().is_ok());
    }
}
