//! A service with no instance answers `UNAVAILABLE` at once.
//!
//! tower's balancer waits for an instance while it has none, so without this a call to a
//! service that discovery reports empty would wait for its deadline (or for ever, without
//! one) instead of failing fast. Until discovery has reported (etcd's first listing is
//! still on its way) calls wait, as before: an app calling a dependency as it starts is not
//! refused for being early.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use pin_project::pin_project;
use tower::BoxError;

use crate::wire::headers::not_sent;

/// How many instances discovery last reported; [`UNKNOWN`](Live::UNKNOWN) until it has.
#[derive(Debug)]
pub(crate) struct Live(AtomicUsize);

impl Live {
    const UNKNOWN: usize = usize::MAX;

    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self(AtomicUsize::new(Self::UNKNOWN)))
    }

    /// Discovery reported `count` instances.
    pub(crate) fn set(&self, count: usize) {
        self.0.store(count, Ordering::Relaxed);
    }

    fn none(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// In front of the balancer: refuses calls while discovery reports no instance.
#[derive(Clone)]
pub(crate) struct FailEmpty<S> {
    inner: S,
    live: Arc<Live>,
    service: Arc<str>,
    /// What `poll_ready` saw: `call` must follow it (the balancer's buffer panics on a call
    /// it did not make ready).
    empty: bool,
}

impl<S> FailEmpty<S> {
    pub(crate) fn new(inner: S, live: Arc<Live>, service: &str) -> Self {
        Self {
            inner,
            live,
            service: service.into(),
            empty: false,
        }
    }
}

impl<S, Req> tower::Service<Req> for FailEmpty<S>
where
    S: tower::Service<Req, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = FailEmptyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.empty = self.live.none();
        if self.empty {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if self.empty {
            let why = format!("no instance of `{}` is known", self.service);
            // Never sent: the retry layer does not retry it, the breaker does not count it.
            let status = not_sent(tonic::Status::unavailable(why), "no-instance");
            return FailEmptyFuture::Refused(Some(status));
        }
        FailEmptyFuture::Called(self.inner.call(req))
    }
}

/// The response future of [`FailEmpty`].
#[pin_project(project = Proj)]
pub(crate) enum FailEmptyFuture<F> {
    /// Refused: no instance.
    Refused(Option<tonic::Status>),
    /// Passed to the balancer.
    Called(#[pin] F),
}

impl<F, T> Future for FailEmptyFuture<F>
where
    F: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Refused(status) => {
                let status = status
                    .take()
                    .unwrap_or_else(|| tonic::Status::unavailable("polled after completion"));
                Poll::Ready(Err(status.into()))
            }
            Proj::Called(inner) => inner.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::ready;

    use tower::{Service, ServiceExt};

    use super::*;
    use crate::wire::headers::is_not_sent;

    fn echo() -> impl Service<u8, Response = u8, Error = BoxError> + Clone {
        tower::service_fn(|n: u8| ready(Ok::<_, BoxError>(n)))
    }

    #[tokio::test]
    async fn refuses_only_once_discovery_reported_none() {
        let live = Live::new();
        let mut svc = FailEmpty::new(echo(), live.clone(), "user");
        // Not reported yet: calls go to the balancer, as before.
        assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
        live.set(0);
        let error = svc.ready().await.unwrap().call(2).await.unwrap_err();
        let status = error.downcast::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("`user`"), "{}", status.message());
        assert!(is_not_sent(&status), "marked as never sent");
        live.set(2);
        assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
    }
}
