//! Per-route decision counters, registered once per route and cached, so counting a decision
//! costs a read-locked map lookup rather than building a metric key per request.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use metrics::Counter;

/// Past this many distinct route labels, new ones are counted under `other`, so a client
/// sending made-up gRPC method names cannot grow the label set without bound.
const MAX_ROUTES: usize = 1024;

#[derive(Clone)]
struct Pair {
    admitted: Counter,
    rejected: Counter,
}

/// `truss_admission_total{layer, route, decision}` handles for one layer.
pub(crate) struct DecisionCounters {
    layer: &'static str,
    routes: RwLock<HashMap<String, Pair>>,
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
            routes: RwLock::new(HashMap::new()),
        }
    }

    /// Counts one decision for `route`.
    #[inline]
    pub(crate) fn record(&self, route: &str, admitted: bool) {
        let pick = |p: &Pair| {
            if admitted {
                p.admitted.increment(1)
            } else {
                p.rejected.increment(1)
            }
        };
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(pair) = routes.get(route) {
                return pick(pair);
            }
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let key = if routes.len() >= MAX_ROUTES {
            "other"
        } else {
            route
        };
        let layer = self.layer;
        let pair = routes.entry(key.to_owned()).or_insert_with(|| {
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
        });
        pick(pair);
    }
}
