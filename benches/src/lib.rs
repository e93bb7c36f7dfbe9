//! Shared pieces of truss's benchmarks: a counting allocator and a pass-through baseline.
//!
//! * `cargo bench -p truss-benches` runs the criterion micro-benchmarks (each layer against a
//!   pass-through router, ns per request), token verification per algorithm, one indexed
//!   SQL read through the governed pool and by plain sqlx, a rate-limit decision in Redis
//!   against the local limiter and a cache hit in Redis against one in the L1, and prints
//!   allocations per request.
//! * `cargo run --release -p truss-benches --bin overload` runs the overload experiment.

pub mod auth;
pub mod redis;
pub mod sql;
pub mod variants;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// A global allocator that counts allocations. Install it in a bench binary with
/// `#[global_allocator] static A: CountingAlloc = CountingAlloc;`.
pub struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made so far by this process (when [`CountingAlloc`] is installed).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Keeps the calling thread, and the threads and processes it starts from now on, on one
/// CPU: the first it may run on.
///
/// * SQL rows (instruction counts): with the calling thread and SQLite's worker thread on
///   two CPUs, how often the caller parks while the worker runs depends on timing, and a
///   row's count moves by up to a third from run to run; on one CPU, by about 1 %.
/// * Redis rows (times): with the benchmark and `redis-server` on two CPUs, each round trip
///   waits for the other CPU to wake up, and the time of one moves between about 10 and
///   90 µs from run to run in a VM; on one CPU it stays within a few percent.
pub fn pin_to_one_cpu() {
    #[cfg(target_os = "linux")]
    // SAFETY: `cpu_set_t` is plain data, passed with its own size for this process.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut set) != 0 {
            return;
        }
        let Some(cpu) = (0..libc::CPU_SETSIZE as usize).find(|&cpu| libc::CPU_ISSET(cpu, &set))
        else {
            return;
        };
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size, &set);
    }
}
