//! The trace the running request (or message) belongs to: [`TraceContext::current`].
//!
//! Its ids are a small `Copy` value in a thread-local, set while the request's `call` or one
//! poll of its future runs (as `crate::local` does for the deadline). The caller's `tracestate`, which most
//! requests lack, has a thread-local of its own and is moved in and out only when this
//! trace or the one around it has one.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;
use pin_project::{pin_project, pinned_drop};

use super::context::{SpanId, TraceContext, TraceId};

thread_local! {
    static IDS: Cell<Option<Ids>> = const { Cell::new(None) };
    static STATE: Cell<Option<HeaderValue>> = const { Cell::new(None) };
}

/// A [`TraceContext`] without its `tracestate`.
#[derive(Clone, Copy)]
struct Ids {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    sampled: bool,
    has_state: bool,
}

/// The current trace, if this thread is running a request's `call` or polling a future in a
/// [`TraceScope`].
pub(super) fn get() -> Option<TraceContext> {
    let ids = IDS.get()?;
    let tracestate = if ids.has_state {
        STATE
            .try_with(|cell| {
                let state = cell.take();
                let copy = state.clone();
                cell.set(state);
                copy
            })
            .ok()
            .flatten()
    } else {
        None
    };
    Some(TraceContext {
        trace_id: ids.trace_id,
        span_id: ids.span_id,
        parent_span_id: ids.parent_span_id,
        sampled: ids.sampled,
        tracestate,
    })
}

/// A trace, split so that making it current copies 40 bytes.
pub(super) struct Current {
    ids: Ids,
    state: Option<HeaderValue>,
}

impl Current {
    pub(super) fn new(ctx: TraceContext) -> Self {
        Current {
            ids: Ids {
                trace_id: ctx.trace_id,
                span_id: ctx.span_id,
                parent_span_id: ctx.parent_span_id,
                sampled: ctx.sampled,
                has_state: ctx.tracestate.is_some(),
            },
            state: ctx.tracestate,
        }
    }

    /// Runs `f` with this trace current.
    #[inline]
    pub(super) fn enter<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let outer = IDS.replace(Some(self.ids));
        let _restore = RestoreIds(outer);
        if !self.ids.has_state && !outer.is_some_and(|outer| outer.has_state) {
            return f();
        }
        let _swapped = SwapState::new(&mut self.state);
        f()
    }
}

/// Puts the outer trace's ids back when dropped (after its state: see the drop order in
/// [`Current::enter`]).
struct RestoreIds(Option<Ids>);

impl Drop for RestoreIds {
    #[inline]
    fn drop(&mut self) {
        IDS.set(self.0);
    }
}

/// This trace's `tracestate` swapped with the thread's while it lives.
struct SwapState<'a>(&'a mut Option<HeaderValue>);

impl<'a> SwapState<'a> {
    fn new(state: &'a mut Option<HeaderValue>) -> Self {
        let mut swap = SwapState(state);
        swap.swap();
        swap
    }

    fn swap(&mut self) {
        // Only while the thread is shutting down is the thread-local gone: then there is no
        // outer state to keep either.
        let _ = STATE.try_with(|cell| *self.0 = cell.replace(self.0.take()));
    }
}

impl Drop for SwapState<'_> {
    fn drop(&mut self) {
        self.swap();
    }
}

/// A future run with a trace as [`TraceContext::current`]: made by [`TraceContext::scope`].
///
/// The trace is current while the future is polled and while it is dropped, on whatever
/// thread polls it.
#[pin_project(PinnedDrop)]
#[must_use = "futures do nothing unless polled"]
pub struct TraceScope<F> {
    current: Current,
    /// `None` once it has completed (or was cut short): it is dropped in the scope then.
    #[pin]
    future: Option<F>,
}

impl<F> TraceScope<F> {
    #[inline]
    pub(super) fn new(current: Current, future: F) -> Self {
        TraceScope {
            current,
            future: Some(future),
        }
    }

    /// Whether the future has neither completed nor been dropped.
    pub(super) fn is_running(&self) -> bool {
        self.future.is_some()
    }

    /// Drops the future now, in the scope.
    pub(super) fn cancel(self: Pin<&mut Self>) {
        let mut this = self.project();
        if this.future.is_some() {
            this.current.enter(|| this.future.set(None));
        }
    }
}

impl<F: Future> Future for TraceScope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        this.current.enter(|| {
            let Some(future) = this.future.as_mut().as_pin_mut() else {
                panic!("TraceScope polled after completion");
            };
            let out = std::task::ready!(future.poll(cx));
            this.future.set(None);
            Poll::Ready(out)
        })
    }
}

/// A future cut short is dropped with its trace current, as it was polled.
#[pinned_drop]
impl<F> PinnedDrop for TraceScope<F> {
    fn drop(self: Pin<&mut Self>) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(tracestate: Option<&'static str>) -> TraceContext {
        TraceContext {
            tracestate: tracestate.map(HeaderValue::from_static),
            ..TraceContext::new_root()
        }
    }

    #[test]
    fn scopes_nest_and_restore_the_outer_trace_and_its_state() {
        let outer = context(Some("a=1"));
        let inner = context(None);
        let mut outer_current = Current::new(outer.clone());
        outer_current.enter(|| {
            assert_eq!(get(), Some(outer.clone()));
            Current::new(inner.clone()).enter(|| assert_eq!(get(), Some(inner.clone())));
            assert_eq!(get(), Some(outer.clone()));
        });
        assert_eq!(get(), None);
        // The state went back to its owner.
        assert_eq!(outer_current.state, outer.tracestate);
    }

    #[tokio::test]
    async fn a_scoped_future_sees_its_trace_while_polled_and_dropped() {
        let ctx = context(Some("b=2"));
        let seen = ctx.clone().scope(async { TraceContext::current() }).await;
        assert_eq!(seen, Some(ctx.clone()));
        assert_eq!(TraceContext::current(), None);

        struct Probe(std::sync::Arc<std::sync::Mutex<Option<TraceContext>>>);
        impl Drop for Probe {
            fn drop(&mut self) {
                if let Ok(mut seen) = self.0.lock() {
                    *seen = TraceContext::current();
                }
            }
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let probe = Probe(seen.clone());
        let never = ctx.clone().scope(async move {
            let _probe = probe;
            std::future::pending::<()>().await;
        });
        let mut never = Box::pin(never);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(never.as_mut().poll(&mut cx).is_pending());
        drop(never);
        assert_eq!(seen.lock().unwrap().clone(), Some(ctx));
    }
}
