//! Process metrics, read from `/proc/self` on each scrape (Linux; elsewhere they are absent).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static START: OnceLock<f64> = OnceLock::new();

pub(super) fn describe() {
    let start = *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    });
    metrics::describe_counter!(
        "process_cpu_seconds_total",
        metrics::Unit::Seconds,
        "Total user and system CPU time spent in seconds."
    );
    metrics::describe_gauge!(
        "process_resident_memory_bytes",
        metrics::Unit::Bytes,
        "Resident memory size in bytes."
    );
    metrics::describe_gauge!("process_open_fds", "Number of open file descriptors.");
    metrics::describe_gauge!(
        "process_start_time_seconds",
        metrics::Unit::Seconds,
        "Start time of the process since unix epoch in seconds."
    );
    metrics::gauge!("process_start_time_seconds").set(start);
}

/// Clock ticks per second for `/proc/self/stat` (100 on every mainstream Linux).
const TICKS: f64 = 100.0;

pub(super) fn refresh() {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            if let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) {
                let secs = (utime + stime) as f64 / TICKS;
                // Counters are whole numbers in the `metrics` facade: whole seconds.
                metrics::counter!("process_cpu_seconds_total").absolute(secs as u64);
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
    {
        metrics::gauge!("process_resident_memory_bytes").set(kb * 1024.0);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(dir.count() as f64);
    }
}
