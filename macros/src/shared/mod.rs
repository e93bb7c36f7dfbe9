//! What more than one macro needs: HTTP methods and route paths, the `Result` return
//! check, and compile-time durations.

pub mod duration;
pub mod path;
pub mod signature;
