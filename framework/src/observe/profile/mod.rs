//! CPU profiles of the running process, served on the admin listener: pprof's protobuf
//! format for `go tool pprof` (or Google's standalone `pprof`), and a flamegraph SVG.
//!
//! Off twice by default: build with the crate feature `profiling`, and set
//! `admin.profiling = true` (a config asking for it without the feature is an error).
//!
//! ```toml
//! [admin]
//! addr = "127.0.0.1:9091"
//! profiling = true
//! ```
//!
//! # Usage
//!
//! ```sh
//! # A 30 s CPU profile of the whole process, then the top functions or the web UI:
//! curl -o cpu.pb 'http://127.0.0.1:9091/debug/pprof/profile?seconds=30'
//! go tool pprof -top ./target/release/my-service cpu.pb
//! go tool pprof -http=:8000 cpu.pb
//!
//! # Or let pprof fetch it (it adds ?seconds=):
//! go tool pprof -seconds 30 http://127.0.0.1:9091/debug/pprof/profile
//!
//! # The same sampling drawn as a flamegraph, to open in a browser:
//! curl -o cpu.svg 'http://127.0.0.1:9091/debug/pprof/flamegraph?seconds=10'
//! ```
//!
//! The profile carries its own symbols (resolved in the process), so naming the binary is
//! optional; `pprof` from <https://github.com/google/pprof> reads it the same way. The body is
//! uncompressed protobuf, which both readers accept; `gzip` it to keep it small.
//!
//! | endpoint | response |
//! | --- | --- |
//! | `GET /debug/pprof/profile` | `application/octet-stream`: a `perftools.profiles.Profile` ([`proto`]) with sample types `samples`/`count` and `cpu`/`nanoseconds` |
//! | `GET /debug/pprof/flamegraph` | `image/svg+xml`: an interactive flamegraph, one tower per thread |
//!
//! Both take `seconds` (whole seconds, 1 to 300, default 30) and `frequency` (samples per
//! second of CPU time, 1 to 1000, default 99). The response comes when the time is up. A
//! bad or unknown parameter is a 400 naming it; a second profile while one runs is a 409
//! (the profiler is process-global); a profiler failure is a 500. Errors are plain text with
//! `X-Go-Pprof: 1`, so `go tool pprof` prints them.
//!
//! # What is measured
//!
//! The [`pprof`](https://docs.rs/pprof) crate: a `setitimer(ITIMER_PROF)` timer sends SIGPROF
//! in proportion to the CPU time of all threads, and the signal handler records the
//! interrupted thread's stack. Threads waiting (on I/O, a lock, a timer) cost nothing and do
//! not appear: this is a CPU profile, not wall-clock. Samples whose innermost frame is in
//! libc, libgcc, libpthread or the vDSO are dropped, because unwinding from there can
//! deadlock; time spent inside `memcpy` or `malloc` is therefore missing. Nothing runs
//! between profiles; while one runs, the process pays for one unwind per sample (about 1 %
//! at 99 Hz) and syscalls may be interrupted (SIGPROF is installed with `SA_RESTART`).
//!
//! Function names come from the binary's symbol table and file/line from its debug info: a
//! stripped binary gives `Unknown` frames. `debug = "line-tables-only"` in the release
//! profile adds lines at little cost.
//!
//! The admin listener binds to loopback by default. A profile reveals function names and
//! costs CPU while it runs: keep `profiling` off on an admin address others can reach.
//!
//! # Heap profiles
//!
//! With the feature `heap-profiling` (which implies `profiling`), `GET /debug/pprof/heap`
//! returns jemalloc's sampled live allocations as a pprof profile (uncompressed, like the
//! CPU profile), symbolized in the process, with sample type `inuse_space`/`bytes`.
//! jemalloc must be the binary's global allocator and start with profiling on; a binary
//! declares both, at its root:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: truss::observe::profile::Jemalloc = truss::observe::profile::Jemalloc;
//!
//! /// Read by jemalloc before `main`: sample about one allocation per 512 KiB (2^19 bytes)
//! /// from the start. The `_rjem_` prefix is the one truss's jemalloc build uses.
//! #[unsafe(export_name = "_rjem_malloc_conf")]
//! static MALLOC_CONF: &[u8; 45] = b"prof:true,prof_active:true,lg_prof_sample:19\0";
//! ```
//!
//! (Or leave out the static and start the process with
//! `_RJEM_MALLOC_CONF=prof:true,prof_active:true,lg_prof_sample:19`.) Then:
//!
//! ```sh
//! curl -o heap.pb http://127.0.0.1:9091/debug/pprof/heap
//! go tool pprof -top heap.pb
//! go tool pprof -http=:8000 heap.pb
//! ```
//!
//! The endpoint answers 501 with what is missing when the process was not started that way
//! (or truss was built without the feature). Sampling costs little at 512 KiB; each sampled
//! allocation records its stack. The jemalloc C library builds with the feature, which adds
//! about a minute to a clean build.

mod encode;
mod flame;
mod handler;
mod heap;
mod params;
pub mod proto;
mod session;

#[cfg(feature = "heap-profiling")]
#[cfg_attr(docsrs, doc(cfg(feature = "heap-profiling")))]
pub use heap::Jemalloc;

use axum::Router;
use axum::routing::get;

/// The profiling routes, merged into the admin router when `admin.profiling` is true:
/// `GET /debug/pprof/profile`, `GET /debug/pprof/flamegraph` and `GET /debug/pprof/heap`
/// (a 501 without the `heap-profiling` feature).
pub(crate) fn router() -> Router {
    Router::new()
        .route("/debug/pprof/profile", get(handler::profile))
        .route("/debug/pprof/flamegraph", get(handler::flamegraph))
        .route("/debug/pprof/heap", get(heap::heap))
}

#[cfg(test)]
mod tests;
