//! What more than one macro needs: HTTP methods and route paths, the `Result` return
//! check, compile-time durations, and route authorization policies.

pub mod auth;
pub mod duration;
pub mod path;
pub mod signature;
