use std::fmt;

/// The protocol a listener or a call speaks: the `transport` label of metrics, and how a
/// rejection must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP/1.1 or h2c, JSON bodies.
    Http,
    /// gRPC over HTTP/2.
    Grpc,
}

impl Transport {
    /// The label value: `http` or `grpc`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Grpc => "grpc",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
