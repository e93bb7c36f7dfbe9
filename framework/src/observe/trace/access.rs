//! The access line: one `INFO` event per request at target `truss::access`, inside the
//! request's span (so it carries `trace_id` and `span_id`), with `method`, `route` (the
//! template or gRPC method, never the raw path), `status`, `duration_us` and `peer`; a gRPC
//! response adds `grpc_status`:
//!
//! ```text
//! INFO request{trace_id=4bf9… span_id=00f0… method=POST route=/hello.v1.Greeter/SayHello}:
//!   truss::access: access method=POST route=/hello.v1.Greeter/SayHello status=200
//!   grpc_status=0 duration_us=412 peer=10.0.0.7:51234
//! ```
//!
//! * An HTTP response, or a gRPC one whose status is in its head (a trailers-only answer:
//!   an error, a rejection by a layer), is logged when its head is ready; `duration_us` is
//!   the time to the head.
//! * A gRPC response whose status comes in trailers (every successful call, and a stream
//!   that fails part-way) is logged when its body ends, with the trailers' `grpc-status`;
//!   `duration_us` covers the whole call. A call whose body is dropped before it ends (the
//!   client went away) is logged then, without `grpc_status`.
//! * A request dropped before its response head (the client went away, or shutdown cut it
//!   off after the grace period) is logged then with status `499`, nginx's "client closed
//!   request"; one whose service failed without a response, with `500`.
//!
//! Every request gets exactly one line.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};
use tokio::time::Instant;
use tracing::Span;

use crate::observe::log::Digits;
use crate::wire::RouteLabel;
use crate::wire::headers::{GRPC_STATUS, is_grpc, is_grpc_response};

/// What the access line needs from the request, kept while it is served.
pub(super) struct Access {
    method: Method,
    route: RouteLabel,
    peer: Option<SocketAddr>,
    start: Instant,
}

impl Access {
    pub(super) fn of<B>(req: &Request<B>) -> Self {
        Access {
            method: req.method().clone(),
            route: RouteLabel::of(req),
            peer: req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            start: Instant::now(),
        }
    }

    /// Writes the line for `response` in `span` now, or, when its `grpc-status` is still to
    /// come in trailers, makes its body write it when it ends (the body then keeps the
    /// span open).
    pub(super) fn finish(self, span: Span, response: &mut Response<Body>) {
        let status = response.status().as_u16();
        let headers = response.headers();
        // The rule the breaker and the request counter follow: an HTTP route's response is
        // gRPC only by its content type (a proxied call).
        if !is_grpc_response(self.route.is_http_route(), headers) {
            return self.log(&span, status, None);
        }
        if let Some(code) = grpc_status_text(headers) {
            return self.log(&span, status, Some(code));
        }
        if !is_grpc(headers) {
            // Not gRPC at all: no route matched, a plain answer from a layer.
            return self.log(&span, status, None);
        }
        let body = std::mem::take(response.body_mut());
        let pending = Pending {
            access: self,
            span,
            status,
        };
        *response.body_mut() = Body::new(AccessBody {
            inner: body,
            pending: Some(pending),
        });
    }

    /// Writes the line of a request that got no response: dropped before it (`499`), or its
    /// service failed (`500`).
    pub(super) fn unanswered(self, span: &Span, status: StatusCode) {
        self.log(span, status.as_u16(), None);
    }

    /// Writes the line. (The fields are evaluated only when it is written.)
    fn log(&self, span: &Span, status: u16, grpc_status: Option<&str>) {
        tracing::info!(
            target: "truss::access",
            parent: span,
            method = self.method.as_str(),
            route = self.route.as_str(),
            status,
            grpc_status,
            duration_us = self.start.elapsed().as_micros() as u64,
            peer = Peer::of(self.peer).as_str(),
            "access"
        );
    }
}

/// A line waiting for its response's trailers.
struct Pending {
    access: Access,
    span: Span,
    status: u16,
}

impl Pending {
    fn log(self, trailers: Option<&HeaderMap>) {
        let code = trailers.and_then(grpc_status_text);
        self.access.log(&self.span, self.status, code);
    }
}

/// The `grpc-status` in `headers` (a head or trailers) as the line shows it: its text, or
/// `invalid` when it is not text.
fn grpc_status_text(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(GRPC_STATUS)?;
    Some(value.to_str().unwrap_or("invalid"))
}

/// A gRPC response body that writes its access line when it ends (trailers, end of stream,
/// an error) or is dropped.
#[pin_project(PinnedDrop)]
struct AccessBody {
    #[pin]
    inner: Body,
    pending: Option<Pending>,
}

impl http_body::Body for AccessBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let ended = match &frame {
            Some(Ok(frame)) => frame.trailers_ref(),
            Some(Err(_)) | None => None,
        };
        let last = !matches!(&frame, Some(Ok(f)) if f.is_data());
        if last && let Some(pending) = this.pending.take() {
            pending.log(ended);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body dropped before it ended (the client went away, the connection closed) still
/// gets its line.
#[pinned_drop]
impl PinnedDrop for AccessBody {
    fn drop(self: Pin<&mut Self>) {
        if let Some(pending) = self.project().pending.take() {
            pending.log(None);
        }
    }
}

/// The caller's address as text on the stack, `-` when the server did not record one (a
/// router served without truss's listener, in a test). IPv4 is written digit by digit:
/// `fmt` would cost more than the rest of the access line's fields together.
struct Peer {
    buf: [u8; 64],
    len: usize,
}

impl Peer {
    fn of(addr: Option<SocketAddr>) -> Self {
        let mut peer = Peer {
            buf: [0; 64],
            len: 0,
        };
        match addr {
            None => peer.push(b"-"),
            Some(SocketAddr::V4(v4)) => {
                for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        peer.push(b".");
                    }
                    peer.number(u16::from(octet));
                }
                peer.push(b":");
                peer.number(v4.port());
            }
            Some(v6) => {
                use std::io::Write;
                let mut rest = &mut peer.buf[..];
                // `[addr%scope]:port` is at most 58 bytes: it always fits.
                let _ = write!(rest, "{v6}");
                peer.len = 64 - rest.len();
            }
        }
        peer
    }

    /// Byte by byte: the pieces are 1 to 5 bytes, where a `memcpy` call costs more than
    /// the copy.
    fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = byte;
                self.len += 1;
            }
        }
    }

    fn number(&mut self, n: u16) {
        self.push(Digits::of(u64::from(n)).as_bytes());
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("-")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::observe::log::Captured;

    #[test]
    fn peers_are_written_as_socket_addresses() {
        for addr in [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.4:5",
            "[::1]:443",
            "[fe80::1%4]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535",
        ] {
            let parsed: SocketAddr = addr.parse().unwrap();
            assert_eq!(
                Peer::of(Some(parsed)).as_str(),
                parsed.to_string(),
                "{addr}"
            );
        }
        assert_eq!(Peer::of(None).as_str(), "-");
    }

    /// Log lines written through `tracing-subscriber`'s own formatter, captured: set as this
    /// thread's default subscriber while the guard lives.
    fn install(logs: &Captured) -> tracing::subscriber::DefaultGuard {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(logs.clone());
        tracing::subscriber::set_default(tracing_subscriber::registry().with(layer))
    }

    fn access_lines(logs: &Captured) -> Vec<String> {
        logs.lines_with("truss::access")
    }

    /// The `Access` of a request to `path`, served by a route mounted at `mount`.
    async fn access(mount: &'static str, path: &str) -> Access {
        use tower::ServiceExt;

        let slot = Arc::new(Mutex::new(None));
        let keep = slot.clone();
        let app = axum::Router::new()
            .route(
                mount,
                axum::routing::any(move |req: Request<Body>| {
                    *keep.lock().unwrap() = Some(Access::of(&req));
                    async {}
                }),
            )
            .layer(crate::wire::GrpcRoutesLayer::new());
        let req = Request::post(path).body(Body::empty()).unwrap();
        app.oneshot(req).await.unwrap();
        slot.lock()
            .unwrap()
            .take()
            .expect("the route was not served")
    }

    fn grpc_response(status_in_head: Option<&'static str>, body: Body) -> Response<Body> {
        let mut builder = Response::builder().header("content-type", "application/grpc");
        if let Some(code) = status_in_head {
            builder = builder.header("grpc-status", code);
        }
        builder.body(body).unwrap()
    }

    /// A body of one data frame and then trailers with `grpc-status: code`.
    fn body_with_trailers(code: &'static str) -> Body {
        let mut trailers = HeaderMap::new();
        trailers.insert(GRPC_STATUS, http::HeaderValue::from_static(code));
        let frames = [
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"reply"))),
            Ok(Frame::trailers(trailers)),
        ];
        Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
    }

    /// The data frames of `response`'s body, read to its end.
    async fn drain(response: Response<Body>) -> Vec<Bytes> {
        let mut body = response.into_body();
        let mut data = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(bytes) = frame.unwrap().into_data() {
                data.push(bytes);
            }
        }
        data
    }

    /// `response`, finished by the `Access` of a request to `path` on a route mounted at
    /// `mount`, and the one access line written so far (if any).
    async fn finished(
        logs: &Captured,
        mount: &'static str,
        path: &str,
        mut response: Response<Body>,
    ) -> (Response<Body>, Option<String>) {
        access(mount, path)
            .await
            .finish(Span::none(), &mut response);
        let mut lines = access_lines(logs);
        assert!(lines.len() <= 1, "{lines:?}");
        (response, lines.pop())
    }

    /// The one access line written by now.
    fn only_line(logs: &Captured) -> String {
        let lines = access_lines(logs);
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines[0].clone()
    }

    #[tokio::test]
    async fn http_lines_have_no_grpc_status() {
        let logs = Captured::default();
        let _guard = install(&logs);
        let response = Response::new(Body::from("ok"));
        let (_, line) = finished(&logs, "/users/{id}", "/users/7", response).await;
        let line = line.expect("an HTTP line is written with the head");
        assert!(
            line.contains("route=\"/users/{id}\" status=200 duration_us="),
            "{line}"
        );
        assert!(!line.contains("grpc_status"), "{line}");
    }

    #[tokio::test]
    async fn a_grpc_status_in_the_head_is_logged_with_the_head() {
        let logs = Captured::default();
        let _guard = install(&logs);
        let response = grpc_response(Some("5"), Body::empty());
        let (_, line) = finished(&logs, "/pkg.Svc/{*rest}", "/pkg.Svc/Get", response).await;
        let line = line.expect("a trailers-only answer is logged with the head");
        assert!(
            line.contains("route=\"/pkg.Svc/Get\" status=200 grpc_status=\"5\""),
            "{line}"
        );
    }

    #[tokio::test]
    async fn a_grpc_status_in_trailers_is_logged_when_the_body_ends() {
        let logs = Captured::default();
        let _guard = install(&logs);
        let response = grpc_response(None, body_with_trailers("0"));
        let (response, line) = finished(&logs, "/pkg.Svc/{*rest}", "/pkg.Svc/Get", response).await;
        assert_eq!(line, None, "logged before the body");
        assert_eq!(drain(response).await, [Bytes::from_static(b"reply")]);
        let line = only_line(&logs);
        assert!(line.contains("status=200 grpc_status=\"0\""), "{line}");
    }

    #[tokio::test]
    async fn a_grpc_body_dropped_before_its_end_still_gets_its_line() {
        let logs = Captured::default();
        let _guard = install(&logs);
        let response = grpc_response(None, body_with_trailers("0"));
        let (response, _) = finished(&logs, "/pkg.Svc/{*rest}", "/pkg.Svc/Get", response).await;
        drop(response);
        let line = only_line(&logs);
        assert!(!line.contains("grpc_status"), "{line}");
    }
}
