//! The one listener abstraction. HTTP, gRPC and admin are instances of it (a [`Server`]
//! over TCP); a new kind of input, such as a message consumer, is another instance, not a
//! copy of the start-up code.
//!
//! [`Server`]: super::server::Server

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::registry::BoxFuture;
use crate::shutdown::ShutdownHandle;

/// How a listener is told to stop taking work and how long it may drain.
pub(crate) struct Drain {
    /// Turns `true` when the listener must stop taking new work.
    pub(crate) stop: watch::Receiver<bool>,
    /// Sent once the listener no longer takes new work (new connections are refused).
    pub(crate) closed: oneshot::Sender<()>,
    /// How long work in flight may take to finish after `stop`.
    pub(crate) grace: Duration,
    /// Forced shutdown: abandon the rest at once.
    pub(crate) force: ShutdownHandle,
}

/// One input of the app. It is bound (or connected) before the app turns ready, serves
/// through the protected stack until [`Drain::stop`], reports on [`Drain::closed`] once it
/// takes no new work, then finishes what is in flight within [`Drain::grace`].
pub(crate) trait Listener: Send + 'static {
    /// `http`, `grpc`, `admin`, ...: for logs and errors.
    fn name(&self) -> &'static str;

    /// The bound address, for listeners that accept connections.
    fn local_addr(&self) -> Option<SocketAddr>;

    /// Serves until told to stop, then drains.
    fn serve(self: Box<Self>, drain: Drain) -> BoxFuture<'static, ()>;
}
