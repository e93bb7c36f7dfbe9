//! Per-route decision counters, registered once per route and remembered by each route's
//! service, so counting a decision costs a string comparison rather than building a metric
//! key per request.

use std::sync::Arc;

use metrics::Counter;

use crate::labels::{BoundedMap, FirstLabel};

/// The admitted and rejected counters of one route.
pub(crate) struct Pair {
    admitted: Counter,
    rejected: Counter,
}

impl Pair {
    /// Counts one decision.
    #[inline]
    pub(crate) fn record(&self, admitted: bool) {
        if admitted {
            self.admitted.increment(1);
        } else {
            self.rejected.increment(1);
        }
    }
}

/// `truss_admission_total{layer, route, decision}` handles for one layer.
pub(crate) struct DecisionCounters {
    layer: &'static str,
    routes: BoundedMap<Arc<Pair>>,
}

impl std::fmt::Debug for DecisionCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCounters")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl DecisionCounters {
    pub(crate) fn new(layer: &'static str) -> Self {
        Self {
            layer,
            routes: BoundedMap::default(),
        }
    }

    /// The counters of `route`, to count a decision made later (an asynchronous one);
    /// `cache` is the calling service instance's slot.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn pair_for(&self, cache: &FirstLabel<Arc<Pair>>, route: &str) -> Arc<Pair> {
        cache.get_or(route, || self.pair(route))
    }

    /// The counters of `route`.
    pub(crate) fn pair(&self, route: &str) -> Arc<Pair> {
        let layer = self.layer;
        let make = |key: &str| {
            let counter = |decision: &'static str| {
                metrics::counter!(
                    "truss_admission_total",
                    "layer" => layer,
                    "route" => key.to_owned(),
                    "decision" => decision
                )
            };
            Arc::new(Pair {
                admitted: counter("admitted"),
                rejected: counter("rejected"),
            })
        };
        self.routes.with(route, make, Arc::clone)
    }
}
