//! Protocol plumbing shared by the server and client layers, HTTP and gRPC alike. It holds no
//! policy: `observe`, `resilience` and `client` build on it, and it imports none of them.
//!
//! * [`route_label`]: the bounded label a request is counted and configured under.
//! * [`GrpcRoutesLayer`]: marks tonic's routes, so that label is the gRPC method.
//! * [`GuardedFuture`] and [`Completion`]: a response future that holds a guard until the
//!   response is ready, or a ready rejection (admission, metrics and deadlines all use it).
//! * [`Transport`]: `http` or `grpc`, for labels and for rejections in the caller's protocol.
//! * [`headers`]: the header names truss reads and writes, [`grpc_status`] and [`is_grpc`].
//! * rejections in the caller's protocol and connect-error detection (crate-internal).

mod connect;
mod guard;
pub mod headers;
pub(crate) mod reject;
mod route;
mod transport;

pub(crate) use connect::is_connect_error;
pub use guard::{Completion, GuardedFuture};
pub use headers::{grpc_status, is_grpc};
pub use route::{GrpcRoutesLayer, GrpcRoutesService, route_label};
pub(crate) use route::{RouteLabel, is_http_route};
pub use transport::Transport;
