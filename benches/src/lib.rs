//! Benchmarks for truss.
