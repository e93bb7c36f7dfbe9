use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
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
    /// Too large, or not all there yet (a stream): what was read, then the rest. Sent once.
    Partial(Replay<B>),
}

/// Reads `body` until it ends, more than `limit` bytes were read, or its next frame is not
/// ready yet (a stream fed as it goes).
pub(crate) async fn buffer<B>(mut body: B, limit: usize) -> Result<Buffered<B>, BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut chunks = Vec::new();
    let mut size = 0usize;
    let mut trailers = None;
    loop {
        let next = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)));
        let frame = match next.await {
            Poll::Ready(Some(frame)) => frame.map_err(Into::into)?,
            Poll::Ready(None) => break,
            // Not all there yet: a stream its caller feeds as it goes (a client or
            // bidirectional gRPC stream, a proxied upload). Waiting for its end could wait
            // for the very answer the caller waits for: it is sent once, as it comes.
            Poll::Pending => {
                return Ok(Buffered::Partial(Replay {
                    chunks: chunks.into(),
                    trailers: None,
                    rest: Some(body),
                }));
            }
        };
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    #[tokio::test]
    async fn a_body_still_being_fed_is_not_waited_for() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"first message"))))
            .await
            .unwrap();
        let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        // The caller feeds the rest only once it has the answer: waiting would hang.
        match buffer(body, 1024).await.unwrap() {
            Buffered::Partial(replay) => assert_eq!(replay.chunks.len(), 1),
            Buffered::Whole { .. } => panic!("a stream still open was taken as whole"),
        }
        drop(tx);
    }

    #[tokio::test]
    async fn a_finished_body_is_kept_whole() {
        let body = http_body_util::Full::new(Bytes::from_static(b"unary"));
        match buffer(body, 1024).await.unwrap() {
            Buffered::Whole { chunks, .. } => assert_eq!(chunks, [Bytes::from_static(b"unary")]),
            Buffered::Partial(_) => panic!("a finished body was sent once"),
        }
    }
}
