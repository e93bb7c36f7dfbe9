use std::fmt;

use http::HeaderValue;

use super::current::{Current, TraceScope};

/// A 16-byte trace id (never all zero).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id (never all zero).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

/// Lowercase hex in one `write_str` (ids are formatted on every log line: `{:02x}` per byte
/// was a measurable share of a request's cost).
fn hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    let n = bytes.len().min(16);
    for (i, b) in bytes[..n].iter().enumerate() {
        buf[2 * i] = DIGITS[usize::from(b >> 4)];
        buf[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    // Only ASCII hex digits were written.
    f.write_str(std::str::from_utf8(&buf[..2 * n]).map_err(|_| fmt::Error)?)
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(&self.0, f)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(&self.0, f)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(&self.0, f)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(&self.0, f)
    }
}

/// A non-zero random u64 (unique ids, not secrets).
fn random() -> u64 {
    crate::random::next_u64().max(1)
}

impl TraceId {
    /// A new random trace id.
    pub fn random() -> Self {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&random().to_be_bytes());
        id[8..].copy_from_slice(&random().to_be_bytes());
        TraceId(id)
    }
}

impl SpanId {
    /// A new random span id.
    pub fn random() -> Self {
        SpanId(random().to_be_bytes())
    }
}

/// The trace a request belongs to, and this service's span in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace, shared by every service the request crosses.
    pub trace_id: TraceId,
    /// This service's span.
    pub span_id: SpanId,
    /// The caller's span, when the caller sent one.
    pub parent_span_id: Option<SpanId>,
    /// The caller's sampling decision (true for new traces).
    pub sampled: bool,
    /// The caller's `tracestate`, passed on unchanged.
    pub tracestate: Option<HeaderValue>,
}

fn unhex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

impl TraceContext {
    /// A new trace.
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_span_id: None,
            sampled: true,
            tracestate: None,
        }
    }

    /// A new trace, sampled with probability `ratio`.
    pub fn new_root_sampled(ratio: f64) -> Self {
        let mut ctx = Self::new_root();
        ctx.sampled = ratio >= 1.0 || crate::random::unit() < ratio;
        ctx
    }

    /// The context of the request this task is serving, if any.
    pub fn current() -> Option<TraceContext> {
        super::current::get()
    }

    /// Runs `fut` with this context as [`current`](Self::current): how work that is not a
    /// request (a message, say) carries its trace.
    pub fn scope<F: std::future::Future>(self, fut: F) -> TraceScope<F> {
        TraceScope::new(Current::new(self), fut)
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        self.trace_id.to_string()
    }

    /// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) into a child context:
    /// same trace, new span, the caller's span as parent. `None` when malformed.
    ///
    /// ```
    /// use truss::observe::trace::TraceContext;
    /// let t = TraceContext::from_traceparent(
    ///     b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None).unwrap();
    /// assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    /// assert!(TraceContext::from_traceparent(b"00-zz-00-01", None).is_none());
    /// ```
    pub fn from_traceparent(value: &[u8], tracestate: Option<HeaderValue>) -> Option<Self> {
        let mut parts = value.split(|b| *b == b'-');
        let version = unhex::<1>(parts.next()?)?[0];
        let trace = unhex::<16>(parts.next()?)?;
        let parent = unhex::<8>(parts.next()?)?;
        let flags = unhex::<1>(parts.next()?)?[0];
        let rest = parts.next();
        // Version 00 has exactly four fields; later versions may add more; ff is invalid.
        if version == 0xff || (version == 0 && rest.is_some()) {
            return None;
        }
        if trace == [0; 16] || parent == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace),
            span_id: SpanId::random(),
            parent_span_id: Some(SpanId(parent)),
            sampled: flags & 1 == 1,
            tracestate,
        })
    }

    /// The `traceparent` to send for a call made from this span: a new child span id.
    pub fn child_traceparent(&self) -> HeaderValue {
        let flags = if self.sampled { "01" } else { "00" };
        let text = format!("00-{}-{}-{flags}", self.trace_id, SpanId::random());
        // Hex digits and dashes only: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_traceparents() {
        let ok = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::from_traceparent(ok, None).unwrap();
        assert_eq!(t.parent_span_id.unwrap().to_string(), "00f067aa0ba902b7");
        assert!(t.sampled);
        for bad in [
            &b""[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(
                TraceContext::from_traceparent(bad, None).is_none(),
                "{bad:?}"
            );
        }
        // A future version may carry more fields.
        assert!(
            TraceContext::from_traceparent(
                b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
                None
            )
            .is_some()
        );
    }

    #[test]
    fn child_keeps_the_trace() {
        let root = TraceContext::new_root();
        let header = root.child_traceparent();
        let child = TraceContext::from_traceparent(header.as_bytes(), None).unwrap();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.parent_span_id, Some(root.span_id));
        assert_ne!(TraceId::random(), TraceId::random());
    }
}
