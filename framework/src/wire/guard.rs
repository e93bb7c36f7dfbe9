use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Response, StatusCode};
use pin_project::pin_project;

/// The response future of the guarding layers (admission with the breaker, metrics): the
/// inner service's future holding `G`, a guard released when the request completes or is
/// dropped, or a ready rejection.
#[pin_project(project = Proj, PinnedDrop)]
#[derive(Debug)]
pub enum GuardedFuture<F, G: Completion = ()> {
    /// Admitted: the inner service is serving it.
    Admitted {
        /// The inner future.
        #[pin]
        future: F,
        /// Released when this future completes or is dropped.
        guard: Option<G>,
    },
    /// Rejected before reaching the inner service.
    Rejected {
        /// The rejection, taken on first poll.
        response: Option<Response<Body>>,
    },
}

impl<F, G: Completion> GuardedFuture<F, G> {
    pub(crate) fn admitted(future: F, guard: G) -> Self {
        Self::Admitted {
            future,
            guard: Some(guard),
        }
    }

    pub(crate) fn rejected(response: Response<Body>) -> Self {
        Self::Rejected {
            response: Some(response),
        }
    }
}

/// Something an admitted request holds until it completes.
pub trait Completion {
    /// Called with the response before the guard is dropped.
    fn completed(&mut self, _response: &Response<Body>) {}

    /// Called instead of [`completed`](Self::completed), before the guard is dropped, when a
    /// policy after this guard's in the same admission layer (a
    /// [`Chain`](crate::resilience::Chain)) turned the request away with the HTTP `status`
    /// of its rejection (503, 429…), also for a gRPC caller, whose response says 200 and
    /// the gRPC code.
    fn rejected(&mut self, _status: StatusCode) {}

    /// Called instead of [`completed`](Self::completed), before the guard is dropped, when
    /// the request ended without a response: its future was dropped first (the client went
    /// away, a timeout outside cut it off) or the inner service failed.
    fn abandoned(&mut self) {}
}

impl Completion for () {}

impl<T: Completion> Completion for Option<T> {
    fn completed(&mut self, response: &Response<Body>) {
        if let Some(t) = self {
            t.completed(response);
        }
    }

    fn rejected(&mut self, status: StatusCode) {
        if let Some(t) = self {
            t.rejected(status);
        }
    }

    fn abandoned(&mut self) {
        if let Some(t) = self {
            t.abandoned();
        }
    }
}

impl<A: Completion, B: Completion> Completion for (A, B) {
    fn completed(&mut self, response: &Response<Body>) {
        self.0.completed(response);
        self.1.completed(response);
    }

    fn rejected(&mut self, status: StatusCode) {
        self.0.rejected(status);
        self.1.rejected(status);
    }

    fn abandoned(&mut self) {
        self.0.abandoned();
        self.1.abandoned();
    }
}

impl<F, G, E> Future for GuardedFuture<F, G>
where
    F: Future<Output = Result<Response<Body>, E>>,
    G: Completion,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Admitted { future, guard } => {
                let out = std::task::ready!(future.poll(cx));
                if let Some(mut guard) = guard.take() {
                    match &out {
                        Ok(response) => guard.completed(response),
                        Err(_) => guard.abandoned(),
                    }
                }
                Poll::Ready(out)
            }
            Proj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("GuardedFuture polled after completion"),
            },
        }
    }
}

/// Dropped while the inner service was still serving: the guard hears it was abandoned.
#[pin_project::pinned_drop]
impl<F, G: Completion> PinnedDrop for GuardedFuture<F, G> {
    fn drop(self: Pin<&mut Self>) {
        if let Proj::Admitted { guard, .. } = self.project()
            && let Some(mut guard) = guard.take()
        {
            guard.abandoned();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records which of its calls came.
    struct Heard(Arc<Mutex<Vec<&'static str>>>);

    impl Completion for Heard {
        fn completed(&mut self, _response: &Response<Body>) {
            self.0.lock().unwrap().push("completed");
        }

        fn abandoned(&mut self) {
            self.0.lock().unwrap().push("abandoned");
        }
    }

    type Served = Result<Response<Body>, ()>;

    #[tokio::test]
    async fn a_guard_hears_how_its_request_ended() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let ok = std::future::ready::<Served>(Ok(Response::new(Body::empty())));
        GuardedFuture::admitted(ok, Heard(heard.clone()))
            .await
            .unwrap();
        let failed = std::future::ready::<Served>(Err(()));
        let _ = GuardedFuture::admitted(failed, Heard(heard.clone())).await;
        let pending = std::future::pending::<Served>();
        drop(GuardedFuture::admitted(pending, Heard(heard.clone())));
        assert_eq!(
            *heard.lock().unwrap(),
            ["completed", "abandoned", "abandoned"]
        );
    }
}
