//! Listeners: the public HTTP listener (HTTP/1.1 + h2c), the gRPC listener (HTTP/2) and the
//! admin listener, all served by one accept loop with graceful and forced shutdown, each an
//! instance of the one [`listener::Listener`] abstraction.

pub(crate) mod admin;
mod greeting;
pub(crate) mod listener;
pub(crate) mod server;
