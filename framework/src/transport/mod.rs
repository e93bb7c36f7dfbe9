//! Listeners: the public HTTP listener (HTTP/1.1 + h2c), the gRPC listener (HTTP/2) and the
//! admin listener, all served by one accept loop with graceful and forced shutdown.

pub(crate) mod admin;
pub(crate) mod server;
