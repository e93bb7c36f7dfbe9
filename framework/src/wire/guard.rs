use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Response, StatusCode};
use pin_project::pin_project;

/// The response future of the guarding layers (admission with the breaker, metrics): the
/// inner service's future holding `G`, a guard released when the request completes or is
/// dropped, or a ready rejection.
#[pin_project(project = Proj)]
#[derive(Debug)]
pub enum GuardedFuture<F, G = ()> {
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

impl<F, G> GuardedFuture<F, G> {
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
                if let Some(mut guard) = guard.take()
                    && let Ok(response) = &out
                {
                    guard.completed(response);
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
