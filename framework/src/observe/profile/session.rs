//! Taking one CPU profile: at most one at a time in the process, sampling while the request
//! waits on a timer, symbolizing on the blocking pool once sampling has stopped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use pprof::{Frames, ProfilerGuard, ProfilerGuardBuilder, Report};

use super::params::Params;

/// Shared objects whose frames are not unwound from the signal handler: unwinding through
/// them can deadlock inside `_Unwind_Backtrace`, and the vDSO's unwind tables are wrong on
/// some distributions (pprof's advice).
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

/// Why no profile came out.
#[derive(Debug)]
pub(super) enum ProfileError {
    /// Another profile is being taken: the profiler (SIGPROF, one sample table) is
    /// process-global.
    Busy,
    /// pprof failed, or the blocking task did not finish; the message says which.
    Failed(String),
}

/// Whether a profile is being taken; set by [`Slot::take`], cleared when the slot drops.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The right to run the process's profiler; released on drop, also when the request is
/// cancelled (the client went away, the app is shutting down).
pub(super) struct Slot(());

impl Slot {
    /// The slot, or `None` while another profile runs.
    pub(super) fn take() -> Option<Self> {
        TAKEN
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Self(()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        TAKEN.store(false, Ordering::Release);
    }
}

/// Samples the whole process for `params.duration` at `params.frequency` and returns the
/// symbolized stacks.
///
/// No tokio worker blocks: starting the profiler (which resolves a first backtrace) and
/// symbolizing run on the blocking pool, and the wait is a `tokio::time::sleep`. If the
/// future is dropped while sampling, the profiler stops with it.
pub(super) async fn record(params: Params) -> Result<Report, ProfileError> {
    let slot = Slot::take().ok_or(ProfileError::Busy)?;
    let frequency = params.frequency;
    let guard = blocking(move || start(frequency)).await?;
    tokio::time::sleep(params.duration).await;
    blocking(move || {
        let _slot = slot;
        finish(guard)
    })
    .await
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProfileError> + Send + 'static,
) -> Result<T, ProfileError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProfileError::Failed(format!("the profiling task did not finish: {e}")))?
}

fn start(frequency: i32) -> Result<ProfilerGuard<'static>, ProfileError> {
    ProfilerGuardBuilder::default()
        .frequency(frequency)
        .blocklist(BLOCKLIST)
        .build()
        .map_err(|e| match e {
            // Someone else in the process runs pprof's profiler directly.
            pprof::Error::Running => ProfileError::Busy,
            e => ProfileError::Failed(format!("starting the CPU profiler: {e}")),
        })
}

/// Takes the raw samples, stops the profiler, then symbolizes: the symbolizer's own work
/// (loading debug info) stays out of the profile.
fn finish(guard: ProfilerGuard<'static>) -> Result<Report, ProfileError> {
    let unresolved = guard
        .report()
        .build_unresolved()
        .map_err(|e| ProfileError::Failed(format!("reading the CPU samples: {e}")))?;
    drop(guard);
    let mut data: HashMap<Frames, isize> = HashMap::with_capacity(unresolved.data.len());
    for (frames, count) in unresolved.data {
        let mut frames = Frames::from(frames);
        drop_sampler_frames(&mut frames);
        *data.entry(frames).or_insert(0) += count;
    }
    Ok(Report {
        data,
        timing: unresolved.timing,
    })
}

/// Removes the sampler's own frames from the top of a stack.
///
/// pprof drops its signal handler and the signal trampoline, but not what the handler
/// called to unwind (`backtrace::trace_unsynchronized`, `pprof::backtrace::...::trace`),
/// which an optimized build inlines and a debug build does not: without this, every sample
/// of a debug build would have the unwinder as its leaf.
///
/// A frame is judged by its last symbol, the function the others were inlined into, which
/// carries its full path (from the symbol table, or the linkage name in debug info). Only
/// dependencies built with `debug = "line-tables-only"` name generic functions without a
/// path; `trace_unsynchronized` is caught by its short name, pprof's own `trace` is not.
fn drop_sampler_frames(frames: &mut Frames) {
    let sampler = |symbols: &Vec<pprof::Symbol>| {
        symbols.last().is_some_and(|symbol| {
            let name = symbol.name();
            name.starts_with("backtrace::")
                || name.starts_with("trace_unsynchronized")
                || name.starts_with("pprof::")
                || name.starts_with("<pprof::")
        })
    };
    let n = frames.frames.iter().take_while(|s| sampler(s)).count();
    frames.frames.drain(..n);
}
