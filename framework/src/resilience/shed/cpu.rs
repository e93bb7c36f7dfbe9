//! CPU usage: what the shedder compares with its threshold.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A CPU usage figure: `0.0` idle, `1.0` the whole quota in use.
///
/// Tests and benchmarks use a fixed figure from [`SystemCpu::manual`]; production uses
/// [`SystemCpu::spawn`].
pub trait CpuSource: Send + Sync + 'static {
    /// The current usage.
    fn usage(&self) -> f64;
}

/// Smoothed CPU usage of this process's container, sampled in the background.
///
/// It reads, in order of preference: cgroup v2 (`cpu.stat` `usage_usec` against `cpu.max`),
/// cgroup v1 (`cpuacct.usage` against `cpu.cfs_quota_us` / `cpu.cfs_period_us`), and the
/// host's `/proc/stat`. Without a quota the host's core count (or the process's affinity) is
/// the capacity. Samples are smoothed with an exponential moving average whose time constant
/// is `admission.shed.cpu_smoothing` (default `1s`; go-zero's β = 0.95 per 250 ms sample is
/// about 5 s).
#[derive(Debug, Default)]
pub struct SystemCpu {
    usage_bits: AtomicU64,
}

impl CpuSource for SystemCpu {
    fn usage(&self) -> f64 {
        f64::from_bits(self.usage_bits.load(Ordering::Relaxed))
    }
}

impl SystemCpu {
    /// A source whose value is set by hand, for tests and benchmarks.
    pub fn manual(usage: f64) -> Arc<Self> {
        let cpu = Arc::new(Self::default());
        cpu.set(usage);
        cpu
    }

    /// Sets the value (for [`manual`](Self::manual) sources).
    pub fn set(&self, usage: f64) {
        self.usage_bits.store(usage.to_bits(), Ordering::Relaxed);
    }

    /// Starts sampling every `interval` on the current tokio runtime, smoothing with time
    /// constant `smoothing`. The sampler stops when the last `Arc` is dropped.
    pub fn spawn(interval: Duration, smoothing: Duration) -> Arc<Self> {
        let cpu = Arc::new(Self::default());
        let weak = Arc::downgrade(&cpu);
        let probe = Probe::detect();
        tracing::debug!(?probe, "cpu sampler");
        let beta = (-interval.as_secs_f64() / smoothing.as_secs_f64().max(1e-9)).exp();
        tokio::spawn(sample_loop(weak, probe, interval, beta));
        cpu
    }
}

async fn sample_loop(cpu: Weak<SystemCpu>, probe: Probe, interval: Duration, beta: f64) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prev = probe.read();
    loop {
        ticker.tick().await;
        let Some(cpu) = cpu.upgrade() else { return };
        let cur = probe.read();
        if let (Some(a), Some(b)) = (&prev, &cur)
            && let Some(now) = usage_between(a, b)
        {
            let smoothed = cpu.usage() * beta + now * (1.0 - beta);
            cpu.set(smoothed);
            metrics::gauge!("truss_cpu_usage_ratio").set(smoothed);
        }
        prev = cur;
    }
}

#[derive(Debug)]
enum Probe {
    CgroupV2(PathBuf),
    CgroupV1 { cpuacct: PathBuf, cpu: PathBuf },
    Host,
}

#[derive(Debug)]
enum Sample {
    Cgroup {
        used: Duration,
        cores: f64,
        at: Instant,
    },
    Host {
        busy: u64,
        total: u64,
    },
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn host_cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

impl Probe {
    fn detect() -> Probe {
        let root = Path::new("/sys/fs/cgroup");
        if let Some(rel) = read(Path::new("/proc/self/cgroup")).and_then(|t| cgroup_v2_path(&t)) {
            let dir = root.join(rel.trim_start_matches('/'));
            if dir.join("cpu.stat").is_file() {
                return Probe::CgroupV2(dir);
            }
            if root.join("cpu.stat").is_file() {
                return Probe::CgroupV2(root.to_path_buf());
            }
        }
        let own = read(Path::new("/proc/self/cgroup"))
            .map(|t| cgroup_v1_paths(&t))
            .unwrap_or_default();
        for (cpuacct, cpu) in [
            ("cpuacct", "cpu"),
            ("cpu,cpuacct", "cpu,cpuacct"),
            ("cpuacct,cpu", "cpuacct,cpu"),
        ] {
            // The process's own group under the hierarchy, else the hierarchy's root.
            let rel = |c: &str| {
                own.iter()
                    .find(|(controllers, _)| controllers.split(',').any(|x| x == c))
                    .map(|(_, p)| p.trim_start_matches('/').to_owned())
                    .unwrap_or_default()
            };
            for cpuacct in [root.join(cpuacct).join(rel("cpuacct")), root.join(cpuacct)] {
                if cpuacct.join("cpuacct.usage").is_file() {
                    let cpu = root.join(cpu);
                    let own_cpu = cpu.join(rel("cpu"));
                    let cpu = if own_cpu.join("cpu.cfs_quota_us").is_file() {
                        own_cpu
                    } else {
                        cpu
                    };
                    return Probe::CgroupV1 { cpuacct, cpu };
                }
            }
        }
        Probe::Host
    }

    fn read(&self) -> Option<Sample> {
        match self {
            Probe::CgroupV2(dir) => {
                let usec = parse_cpu_stat_usage(&read(&dir.join("cpu.stat"))?)?;
                let cores = read(&dir.join("cpu.max"))
                    .and_then(|t| parse_cpu_max(&t))
                    .unwrap_or_else(host_cores);
                Some(Sample::Cgroup {
                    used: Duration::from_micros(usec),
                    cores: cores.min(host_cores()),
                    at: Instant::now(),
                })
            }
            Probe::CgroupV1 { cpuacct, cpu } => {
                let nanos: u64 = read(&cpuacct.join("cpuacct.usage"))?.trim().parse().ok()?;
                let quota = read(&cpu.join("cpu.cfs_quota_us"));
                let period = read(&cpu.join("cpu.cfs_period_us"));
                let cores = match (quota, period) {
                    (Some(q), Some(p)) => parse_v1_quota(&q, &p),
                    _ => None,
                }
                .unwrap_or_else(host_cores);
                Some(Sample::Cgroup {
                    used: Duration::from_nanos(nanos),
                    cores: cores.min(host_cores()),
                    at: Instant::now(),
                })
            }
            Probe::Host => {
                let (busy, total) = parse_proc_stat(&read(Path::new("/proc/stat"))?)?;
                Some(Sample::Host { busy, total })
            }
        }
    }
}

fn usage_between(a: &Sample, b: &Sample) -> Option<f64> {
    let usage = match (a, b) {
        (
            Sample::Cgroup {
                used: u0, at: t0, ..
            },
            Sample::Cgroup {
                used: u1,
                at: t1,
                cores,
            },
        ) => {
            let wall = t1.checked_duration_since(*t0)?.as_secs_f64();
            if wall <= 0.0 || *cores <= 0.0 {
                return None;
            }
            u1.checked_sub(*u0)?.as_secs_f64() / (wall * cores)
        }
        (
            Sample::Host {
                busy: b0,
                total: t0,
            },
            Sample::Host {
                busy: b1,
                total: t1,
            },
        ) => {
            let total = t1.checked_sub(*t0)?;
            if total == 0 {
                return None;
            }
            b1.checked_sub(*b0)? as f64 / total as f64
        }
        _ => return None,
    };
    Some(usage.clamp(0.0, 1.0))
}

/// The cgroup v2 path from `/proc/self/cgroup` (the `0::/path` line).
fn cgroup_v2_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// (controllers, path) pairs of the cgroup v1 lines of `/proc/self/cgroup`.
fn cgroup_v1_paths(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            (!controllers.is_empty()).then(|| (controllers.to_owned(), path.to_owned()))
        })
        .collect()
}

/// `usage_usec` from a cgroup v2 `cpu.stat`.
fn parse_cpu_stat_usage(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// Cores allowed by a cgroup v2 `cpu.max` (`"200000 100000"` → 2.0; `"max 100000"` → none).
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then_some(quota / period)
}

/// Cores allowed by cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 = no quota).
fn parse_v1_quota(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: i64 = period.trim().parse().ok()?;
    (quota > 0 && period > 0).then_some(quota as f64 / period as f64)
}

/// (busy, total) jiffies from the `cpu` line of `/proc/stat`.
fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_files() {
        assert_eq!(
            cgroup_v2_path("0::/system.slice/x.service\n"),
            Some("/system.slice/x.service".into())
        );
        assert_eq!(cgroup_v2_path("12:cpu,cpuacct:/docker/abc\n"), None);
        assert_eq!(
            cgroup_v1_paths("12:cpu,cpuacct:/docker/abc\n0::/\n"),
            vec![("cpu,cpuacct".to_owned(), "/docker/abc".to_owned())]
        );
        assert_eq!(
            parse_cpu_stat_usage("usage_usec 123456\nuser_usec 1\nsystem_usec 2\n"),
            Some(123_456)
        );
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_v1_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_v1_quota("50000\n", "100000\n"), Some(0.5));
        assert_eq!(
            parse_proc_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n"),
            Some((200, 1000))
        );
    }

    #[test]
    fn usage_is_relative_to_the_quota() {
        let t0 = Instant::now();
        let a = Sample::Cgroup {
            used: Duration::ZERO,
            cores: 0.5,
            at: t0,
        };
        let b = Sample::Cgroup {
            used: Duration::from_millis(250),
            cores: 0.5,
            at: t0 + Duration::from_secs(1),
        };
        // 0.25 s of CPU in 1 s against a half-core quota is 50 %.
        assert!((usage_between(&a, &b).unwrap() - 0.5).abs() < 1e-9);
        let h0 = Sample::Host {
            busy: 100,
            total: 1000,
        };
        let h1 = Sample::Host {
            busy: 400,
            total: 2000,
        };
        assert!((usage_between(&h0, &h1).unwrap() - 0.3).abs() < 1e-9);
    }

    #[tokio::test]
    async fn system_sampler_reads_something_on_this_machine() {
        let probe = Probe::detect();
        assert!(probe.read().is_some(), "{probe:?} could not be read");
    }
}
