//! Per-label state created on first use, with a bound on how many labels exist.
//!
//! Metric handles and breakers are keyed by route labels, gRPC method paths or target
//! methods. A client can send made-up gRPC method names, so every such map is bounded: past
//! [`MAX_LABELS`] distinct labels, new ones share the value of `other`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

/// Distinct labels a [`BoundedMap`] holds before new ones fall into `other`.
pub(crate) const MAX_LABELS: usize = 1024;

/// Values by label, made on first use; at most [`MAX_LABELS`] of them plus `other`.
pub(crate) struct BoundedMap<V> {
    map: RwLock<HashMap<String, V>>,
}

impl<V> Default for BoundedMap<V> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<V> BoundedMap<V> {
    /// Runs `f` on the value for `label`, first making it with `make(label)` (where `label` is
    /// `other` once the map is full). The common case, an existing label, takes a read lock
    /// and allocates nothing.
    pub(crate) fn with<R>(
        &self,
        label: &str,
        make: impl FnOnce(&str) -> V,
        f: impl FnOnce(&V) -> R,
    ) -> R {
        if let Some(v) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(label)
        {
            return f(v);
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let key = if map.len() >= MAX_LABELS && !map.contains_key(label) {
            "other"
        } else {
            label
        };
        let value = map.entry(key.to_owned()).or_insert_with(|| make(key));
        f(value)
    }
}

/// The value for the first label one service instance sees. axum applies a layer to each
/// route separately, so an instance almost always sees one label: a string comparison then
/// replaces the map's lock and hash. Clones share the slot.
pub(crate) struct FirstLabel<V>(Arc<OnceLock<(Box<str>, V)>>);

impl<V> Clone for FirstLabel<V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<V> Default for FirstLabel<V> {
    fn default() -> Self {
        Self(Arc::new(OnceLock::new()))
    }
}

impl<V> std::fmt::Debug for FirstLabel<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FirstLabel")
            .field(&self.0.get().map(|(l, _)| l))
            .finish()
    }
}

impl<V: Clone> FirstLabel<V> {
    /// The value for `label`: the remembered one when it is the first label seen, else
    /// `make()` (remembered when nothing was yet).
    #[inline]
    pub(crate) fn get_or(&self, label: &str, make: impl FnOnce() -> V) -> V {
        if let Some((first, value)) = self.0.get()
            && **first == *label
        {
            return value.clone();
        }
        let value = make();
        let _ = self.0.set((label.into(), value.clone()));
        value
    }
}

impl<V> FirstLabel<V> {
    /// Calls `f` with the value for `label`: the remembered one when `label` is the first
    /// label, else one made now (and remembered when it is the first).
    #[inline]
    pub(crate) fn with<R>(
        &self,
        label: &str,
        make: impl FnOnce() -> V,
        f: impl FnOnce(&V) -> R,
    ) -> R {
        if let Some((first, value)) = self.0.get()
            && **first == *label
        {
            return f(value);
        }
        let value = make();
        let out = f(&value);
        let _ = self.0.set((label.into(), value));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_past_the_bound_share_other() {
        let map = BoundedMap::<String>::default();
        for i in 0..MAX_LABELS {
            let got = map.with(&format!("l{i}"), str::to_owned, Clone::clone);
            assert_eq!(got, format!("l{i}"));
        }
        assert_eq!(map.with("new", str::to_owned, Clone::clone), "other");
        assert_eq!(map.with("l7", str::to_owned, Clone::clone), "l7");
    }

    #[test]
    fn first_label_is_remembered_and_others_are_made() {
        let cache = FirstLabel::<String>::default();
        assert_eq!(cache.get_or("/a", || "made a".to_owned()), "made a");
        assert_eq!(cache.get_or("/a", || unreachable!()), "made a");
        assert_eq!(cache.get_or("/b", || "made b".to_owned()), "made b");
        assert_eq!(cache.clone().get_or("/a", || unreachable!()), "made a");
    }
}
