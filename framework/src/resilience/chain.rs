//! Admission policies applied one after another by one layer.

use std::sync::Arc;

use http::Request;

use super::admit::{AdmitLayer, Policy, Rejection, Resolved};
use crate::wire::Completion;

/// Two policies as one: `A` decides first, and `B` only for requests `A` admitted. Either
/// may be absent. Each keeps its own decision counters, route state and guard.
///
/// One [`AdmitLayer`] over a chain costs one service and one response future per request,
/// where a layer per policy nests one of each per policy (and `Option` layers an `Either`
/// more): each level moves the inner future once more while the request's future is built.
/// The app applies its admission policies and the server breaker as one chain.
///
/// When `B` turns a request away, `A`'s guard is told the rejection's HTTP status
/// ([`Completion::rejected`]) before it is dropped: the shedder does not count it as
/// served, the breaker counts a 5xx as a failure.
///
/// ```
/// use std::collections::BTreeMap;
/// use truss::resilience::{
///     AdmitLayer, Chain, InFlightLimitLayer, RateLimitLayer, RateLimitRule, RateLimits,
/// };
///
/// let rule = RateLimitRule { rps: 100.0, ..RateLimitRule::default() };
/// let limits = RateLimits::new(Some(&rule), &BTreeMap::new()).unwrap();
/// let layer = AdmitLayer::chain(
///     Some(InFlightLimitLayer::new(1_000)),
///     Some(RateLimitLayer::new(limits)),
/// );
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "ok" }))
///     .layer(layer);
/// # let _ = app;
/// ```
#[derive(Debug)]
pub struct Chain<A, B> {
    first: Option<AdmitLayer<A>>,
    then: Option<AdmitLayer<B>>,
}

impl<A: Policy, B: Policy> AdmitLayer<Chain<A, B>> {
    /// One layer applying `first`'s policy, then `then`'s (each when present).
    pub fn chain(first: Option<AdmitLayer<A>>, then: Option<AdmitLayer<B>>) -> Self {
        Self::from_policy(Arc::new(Chain { first, then }))
    }
}

impl<A: Policy, B: Policy> Policy for Chain<A, B> {
    type Guard = (Option<A::Guard>, Option<B::Guard>);
    type Route = (Option<Resolved<A::Route>>, Option<Resolved<B::Route>>);
    /// Each policy counts its own decisions.
    const COUNTED_AS: Option<&'static str> = None;

    fn route<R>(self: &Arc<Self>, route: &str, req: &Request<R>) -> Self::Route {
        (
            self.first.as_ref().map(|l| l.resolve(route, req)),
            self.then.as_ref().map(|l| l.resolve(route, req)),
        )
    }

    #[inline]
    fn admit<R>(
        self: &Arc<Self>,
        route: &str,
        state: &Self::Route,
        req: &Request<R>,
    ) -> Result<Self::Guard, Rejection> {
        let mut first = match (&self.first, &state.0) {
            (Some(layer), Some(resolved)) => Some(layer.decide(route, resolved, req)?),
            _ => None,
        };
        let then = match (&self.then, &state.1) {
            (Some(layer), Some(resolved)) => match layer.decide(route, resolved, req) {
                Ok(guard) => Some(guard),
                Err(r) => {
                    first.rejected(r.status);
                    return Err(r);
                }
            },
            _ => None,
        };
        Ok((first, then))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::{Response, StatusCode};
    use tower::ServiceExt;

    use super::*;

    /// What the guards saw, in order.
    type Log = Arc<Mutex<Vec<String>>>;

    /// Admits everything (or nothing, with `reject`), logging its guard's fate.
    #[derive(Debug)]
    struct Probe {
        name: &'static str,
        reject: bool,
        log: Log,
    }

    struct Guard(&'static str, Log);

    impl Completion for Guard {
        fn completed(&mut self, response: &Response<Body>) {
            let line = format!("{} completed {}", self.0, response.status().as_u16());
            self.1.lock().unwrap().push(line);
        }

        fn rejected(&mut self, status: StatusCode) {
            let line = format!("{} rejected {}", self.0, status.as_u16());
            self.1.lock().unwrap().push(line);
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            self.1.lock().unwrap().push(format!("{} dropped", self.0));
        }
    }

    impl Policy for Probe {
        type Guard = Guard;
        type Route = String;
        const COUNTED_AS: Option<&'static str> = None;

        fn route<B>(self: &Arc<Self>, route: &str, _: &Request<B>) -> String {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} resolved {route}", self.name));
            route.to_owned()
        }

        fn admit<B>(
            self: &Arc<Self>,
            route: &str,
            state: &String,
            _: &Request<B>,
        ) -> Result<Guard, Rejection> {
            assert_eq!(route, state);
            self.log
                .lock()
                .unwrap()
                .push(format!("{} asked", self.name));
            if self.reject {
                return Err(Rejection::new(StatusCode::TOO_MANY_REQUESTS, "NO", "no"));
            }
            Ok(Guard(self.name, self.log.clone()))
        }
    }

    fn probe(name: &'static str, reject: bool, log: &Log) -> Option<AdmitLayer<Probe>> {
        let log = log.clone();
        Some(AdmitLayer::from_policy(Arc::new(Probe {
            name,
            reject,
            log,
        })))
    }

    async fn serve(layer: AdmitLayer<Chain<Probe, Probe>>, times: usize) -> Vec<StatusCode> {
        run(router().layer(layer).with_state(()), times).await
    }

    /// The one route every test serves; finish it with `.layer(…).with_state(())`, as the
    /// app does: each route's service (and its cache) is kept.
    fn router() -> Router {
        Router::new().route("/r/{id}", get(|| async { "ok" }))
    }

    async fn run(app: Router, times: usize) -> Vec<StatusCode> {
        let mut statuses = Vec::new();
        for i in 0..times {
            let req = Request::get(format!("/r/{i}")).body(Body::empty()).unwrap();
            statuses.push(app.clone().oneshot(req).await.unwrap().status());
        }
        statuses
    }

    fn taken(log: &Log) -> Vec<String> {
        std::mem::take(&mut *log.lock().unwrap())
    }

    #[tokio::test]
    async fn both_decide_in_order_resolve_once_per_route_and_see_the_response() {
        let log = Log::default();
        let layer = AdmitLayer::chain(probe("a", false, &log), probe("b", false, &log));
        assert_eq!(serve(layer, 2).await, [StatusCode::OK; 2]);
        let once = [
            "a resolved /r/{id}",
            "b resolved /r/{id}",
            "a asked",
            "b asked",
            "a completed 200",
            "b completed 200",
            "a dropped",
            "b dropped",
        ];
        let again = &once[2..];
        assert_eq!(taken(&log), [&once[..], again].concat());
    }

    #[tokio::test]
    async fn a_rejection_by_the_second_is_told_to_the_first_and_stops_there() {
        let log = Log::default();
        let layer = AdmitLayer::chain(probe("a", false, &log), probe("b", true, &log));
        assert_eq!(serve(layer, 1).await, [StatusCode::TOO_MANY_REQUESTS]);
        assert_eq!(
            taken(&log),
            [
                "a resolved /r/{id}",
                "b resolved /r/{id}",
                "a asked",
                "b asked",
                "a rejected 429",
                "a dropped",
            ]
        );

        let layer = AdmitLayer::chain(probe("a", true, &log), probe("b", false, &log));
        assert_eq!(serve(layer, 1).await, [StatusCode::TOO_MANY_REQUESTS]);
        let log = taken(&log);
        assert_eq!(log[2..], ["a asked"], "b is not asked: {log:?}");
    }

    #[tokio::test]
    async fn a_rejection_at_the_end_of_nested_chains_is_told_to_every_guard_before() {
        let log = Log::default();
        let inner = AdmitLayer::chain(probe("a", false, &log), probe("b", false, &log));
        let layer = AdmitLayer::chain(Some(inner), probe("c", true, &log));
        let app = router().layer(layer).with_state(());
        assert_eq!(run(app, 1).await, [StatusCode::TOO_MANY_REQUESTS]);
        let log = taken(&log);
        assert_eq!(
            log[3..],
            [
                "a asked",
                "b asked",
                "c asked",
                "a rejected 429",
                "b rejected 429",
                "a dropped",
                "b dropped",
            ],
            "{log:?}"
        );
    }

    #[tokio::test]
    async fn absent_policies_admit() {
        let log = Log::default();
        let layer = AdmitLayer::chain(None, probe("b", false, &log));
        assert_eq!(serve(layer, 1).await, [StatusCode::OK]);
        assert_eq!(
            taken(&log),
            [
                "b resolved /r/{id}",
                "b asked",
                "b completed 200",
                "b dropped"
            ]
        );
        assert_eq!(
            serve(AdmitLayer::chain(None, None), 1).await,
            [StatusCode::OK]
        );
    }
}
