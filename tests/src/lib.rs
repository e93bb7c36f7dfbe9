//! Cross-crate integration tests for truss.
