//! Passive health: an endpoint that refuses connections is taken out of the balancer for a
//! while (1 s, doubling to 30 s while it keeps refusing), then given one probe call.
//!
//! Without it a dead instance that discovery still lists (a SIGKILLed process whose lease
//! has not expired) fails fast, looks cheap to peak-EWMA, and attracts most calls.
//!
//! When every instance of a client is ejected, ejection is ignored ("panic mode"): calls go
//! through and fail fast with a connection error instead of waiting for their deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::BoxError;
use crate::wire::is_connect_error;

const FIRST: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct State {
    until: Option<Instant>,
    refusals: u32,
    /// Counted in the pool's `ejected`.
    counted: bool,
}

/// The endpoints of one client, to tell when all of them are ejected.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    members: AtomicUsize,
    ejected: AtomicUsize,
}

impl Pool {
    fn all_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed) >= self.members.load(Ordering::Relaxed)
    }
}

impl State {
    fn uncount(&mut self, pool: &Pool) {
        if self.counted {
            self.counted = false;
            pool.ejected.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Wraps one endpoint: unready while ejected.
pub(crate) struct Eject<S> {
    inner: S,
    state: Arc<Mutex<State>>,
    sleep: Option<Pin<Box<Sleep>>>,
    addr: std::net::SocketAddr,
    pool: Arc<Pool>,
}

impl<S> Eject<S> {
    pub(crate) fn new(inner: S, addr: std::net::SocketAddr, pool: Arc<Pool>) -> Self {
        pool.members.fetch_add(1, Ordering::Relaxed);
        Self {
            inner,
            state: Arc::default(),
            sleep: None,
            addr,
            pool,
        }
    }
}

impl<S> Drop for Eject<S> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.state.lock() {
            s.uncount(&self.pool);
        }
        self.pool.members.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S, R> Service<R> for Eject<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = EjectFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let until = self.state.lock().map_or(None, |s| s.until);
        if let Some(until) = until {
            // Panic mode: with every endpoint ejected, waiting helps nobody.
            if Instant::now() < until && !self.pool.all_ejected() {
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                if sleep.deadline() != until {
                    sleep.as_mut().reset(until);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            // Time is up (or panic mode): a probe call goes through; its outcome decides.
            if let Ok(mut s) = self.state.lock() {
                s.until = None;
                s.uncount(&self.pool);
            }
            self.sleep = None;
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: R) -> Self::Future {
        EjectFuture {
            inner: self.inner.call(req),
            state: self.state.clone(),
            addr: self.addr,
            pool: self.pool.clone(),
        }
    }
}

/// Records whether the call could connect.
#[pin_project]
pub(crate) struct EjectFuture<F> {
    #[pin]
    inner: F,
    state: Arc<Mutex<State>>,
    addr: std::net::SocketAddr,
    pool: Arc<Pool>,
}

impl<F, T, E> Future for EjectFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx)).map_err(Into::into);
        if let Ok(mut s) = this.state.lock() {
            match &result {
                Err(e) if is_connect_error(e.as_ref()) => {
                    let wait = FIRST.saturating_mul(1 << s.refusals.min(5)).min(MAX);
                    s.refusals = s.refusals.saturating_add(1);
                    s.until = Some(Instant::now() + wait);
                    if !s.counted {
                        s.counted = true;
                        this.pool.ejected.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(addr = %this.addr, ?wait, "client: instance refused the connection; ejected");
                    metrics::counter!("truss_client_ejections_total").increment(1);
                }
                _ => {
                    s.refusals = 0;
                    s.until = None;
                    s.uncount(this.pool);
                }
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn refused() -> BoxError {
        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusing_endpoint_is_unready_until_its_backoff_ends() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = fail.clone();
        let inner = tower::service_fn(move |_: ()| {
            let fail = flag.load(std::sync::atomic::Ordering::SeqCst);
            async move { if fail { Err(refused()) } else { Ok(()) } }
        });
        let pool = Arc::new(Pool::default());
        // A healthy neighbour, so this one is not the last.
        let _other = Eject::new(
            tower::service_fn(|_: ()| async { Ok::<(), BoxError>(()) }),
            addr,
            pool.clone(),
        );
        let mut svc = Eject::new(inner, addr, pool.clone());
        assert!(svc.ready().await.unwrap().call(()).await.is_err());

        // Ejected: not ready for the first second.
        let ready = tokio::time::timeout(Duration::from_millis(999), svc.ready()).await;
        assert!(ready.is_err(), "ejected endpoint reported ready");
        // Then one probe; it fails again, so the next ejection is 2 s.
        assert!(svc.ready().await.unwrap().call(()).await.is_err());
        let start = Instant::now();
        svc.ready().await.unwrap();
        assert_eq!(start.elapsed().as_secs(), 2);
        // Back up: a success resets the backoff and keeps it ready.
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        svc.ready().await.unwrap().call(()).await.unwrap();
        let ready = tokio::time::timeout(Duration::from_millis(1), svc.ready()).await;
        assert!(ready.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_do_not_eject() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let inner = tower::service_fn(|_: ()| async { Err::<(), BoxError>("timed out".into()) });
        let mut svc = Eject::new(inner, addr, Arc::default());
        assert!(svc.ready().await.unwrap().call(()).await.is_err());
        let ready = tokio::time::timeout(Duration::from_millis(1), svc.ready()).await;
        assert!(ready.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_endpoint_is_ejected_calls_go_through_at_once() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let pool = Arc::new(Pool::default());
        let refuse = || tower::service_fn(|_: ()| async { Err::<(), BoxError>(refused()) });
        let mut a = Eject::new(refuse(), addr, pool.clone());
        let mut b = Eject::new(refuse(), addr, pool.clone());
        assert!(a.ready().await.unwrap().call(()).await.is_err());
        // One of two ejected: `a` waits.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), a.ready())
                .await
                .is_err()
        );
        assert!(b.ready().await.unwrap().call(()).await.is_err());
        // Both ejected: no waiting, the call fails fast instead.
        let start = Instant::now();
        b.ready().await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        // An endpoint leaving the pool is no longer counted.
        drop(a);
        assert_eq!(pool.members.load(Ordering::Relaxed), 1);
    }
}
