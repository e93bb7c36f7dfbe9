//! Per-route decision counters, registered once per route and cached, so counting a decision
//! costs a read-locked map lookup rather than building a metric key per request.

use metrics::Counter;

use crate::labels::BoundedMap;

struct Pair {
    admitted: Counter,
    rejected: Counter,
}

/// `truss_admission_total{layer, route, decision}` handles for one layer.
pub(crate) struct DecisionCounters {
    layer: &'static str,
    routes: BoundedMap<Pair>,
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

    /// Counts one decision for `route`.
    #[inline]
    pub(crate) fn record(&self, route: &str, admitted: bool) {
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
            Pair {
                admitted: counter("admitted"),
                rejected: counter("rejected"),
            }
        };
        self.routes.with(route, make, |p| {
            if admitted {
                p.admitted.increment(1)
            } else {
                p.rejected.increment(1)
            }
        });
    }
}
