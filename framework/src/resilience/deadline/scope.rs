use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::{pin_project, pinned_drop};

use super::{CURRENT, Deadline};
use crate::local;

/// A future run with a [`Deadline`] as [`Deadline::current`]: made by [`Deadline::scope`].
///
/// The deadline is current while the future is polled and while it is dropped, on whatever
/// thread polls it. It does not stop the future at the deadline; the deadline layer and
/// truss's clients do that.
#[pin_project(PinnedDrop)]
#[must_use = "futures do nothing unless polled"]
pub struct DeadlineScope<F> {
    deadline: Deadline,
    /// `None` once it has completed: it is dropped in the deadline's scope then.
    #[pin]
    future: Option<F>,
}

impl<F> DeadlineScope<F> {
    pub(super) fn new(deadline: Deadline, future: F) -> Self {
        DeadlineScope {
            deadline,
            future: Some(future),
        }
    }
}

impl<F: Future> Future for DeadlineScope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        local::enter(&CURRENT, *this.deadline, || {
            let Some(future) = this.future.as_mut().as_pin_mut() else {
                panic!("DeadlineScope polled after completion");
            };
            let out = std::task::ready!(future.poll(cx));
            this.future.set(None);
            Poll::Ready(out)
        })
    }
}

/// A future cut short is dropped with its deadline current, as it was polled.
#[pinned_drop]
impl<F> PinnedDrop for DeadlineScope<F> {
    fn drop(self: Pin<&mut Self>) {
        let mut this = self.project();
        if this.future.is_some() {
            local::enter(&CURRENT, *this.deadline, || this.future.set(None));
        }
    }
}
