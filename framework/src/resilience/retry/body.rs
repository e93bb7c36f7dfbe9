use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project::pin_project;

use crate::BoxError;

/// A request body types the retry layer can rebuild from what it buffered.
pub trait ReplayBody: Body<Data = Bytes> + Send + Sized + 'static {
    /// Wraps a [`Replay`] body.
    fn from_replay(body: Replay<Self>) -> Self;
}

impl ReplayBody for tonic::body::Body {
    fn from_replay(body: Replay<Self>) -> Self {
        tonic::body::Body::new(body)
    }
}

impl ReplayBody for axum::body::Body {
    fn from_replay(body: Replay<Self>) -> Self {
        axum::body::Body::new(body)
    }
}

/// Buffered data (and trailers), then possibly the rest of an unbuffered body.
#[pin_project]
pub struct Replay<B> {
    chunks: std::collections::VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    #[pin]
    rest: Option<B>,
}

impl<B> Replay<B> {
    pub(crate) fn buffered(chunks: &[Bytes], trailers: Option<&HeaderMap>) -> Self {
        Self {
            chunks: chunks.iter().cloned().collect(),
            trailers: trailers.cloned(),
            rest: None,
        }
    }
}

impl<B> Body for Replay<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(chunk) = this.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match this.rest.as_pin_mut() {
            Some(rest) => rest.poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self.chunks.iter().map(|c| c.len() as u64).sum();
        match &self.rest {
            Some(rest) => {
                let mut hint = rest.size_hint();
                hint.set_lower(hint.lower() + buffered);
                if let Some(upper) = hint.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
            None => SizeHint::with_exact(buffered),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }
}

/// What reading a body for replay gave.
pub(crate) enum Buffered<B> {
    /// The whole body: it can be sent any number of times.
    Whole {
        chunks: Vec<Bytes>,
        trailers: Option<HeaderMap>,
    },
    /// Too large: what was read, then the rest. Sent once.
    Partial(Replay<B>),
}

/// Reads `body` until it ends or more than `limit` bytes were read.
pub(crate) async fn buffer<B>(mut body: B, limit: usize) -> Result<Buffered<B>, BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut chunks = Vec::new();
    let mut size = 0usize;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into)?;
        match frame.into_data() {
            Ok(data) => {
                size += data.len();
                chunks.push(data);
                if size > limit {
                    return Ok(Buffered::Partial(Replay {
                        chunks: chunks.into(),
                        trailers: None,
                        rest: Some(body),
                    }));
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok(Buffered::Whole { chunks, trailers })
}
