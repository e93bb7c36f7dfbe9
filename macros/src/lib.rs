//! Procedural macros for [truss](https://docs.rs/truss).
//!
//! This crate is re-exported by `truss`; depend on `truss` alone. The handler and error macros
//! land here as the framework grows; for now the crate only reserves its place in the
//! workspace.
