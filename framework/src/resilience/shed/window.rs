//! The sliding window of buckets behind the shedder's capacity estimate.

/// Per bucket: requests completed and the sum of their response times.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    count: u64,
    rt_sum_nanos: u64,
}

/// A ring of buckets addressed by epoch (time since start ÷ bucket length).
#[derive(Debug)]
pub(crate) struct Window {
    buckets: Vec<Bucket>,
}

/// What the window says about the service's best recent performance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stats {
    /// Most requests completed in one bucket (at least 1).
    pub(crate) max_pass: u64,
    /// Lowest mean response time of a bucket, in nanoseconds, if any bucket has data.
    pub(crate) min_rt_nanos: Option<f64>,
}

impl Window {
    pub(crate) fn new(buckets: u32) -> Self {
        Self {
            buckets: vec![
                Bucket {
                    epoch: u64::MAX,
                    ..Bucket::default()
                };
                buckets.max(2) as usize
            ],
        }
    }

    /// Records a completion in bucket `epoch`.
    pub(crate) fn add(&mut self, epoch: u64, rt_nanos: u64) {
        let len = self.buckets.len() as u64;
        let bucket = &mut self.buckets[(epoch % len) as usize];
        if bucket.epoch != epoch {
            *bucket = Bucket {
                epoch,
                count: 0,
                rt_sum_nanos: 0,
            };
        }
        bucket.count += 1;
        bucket.rt_sum_nanos = bucket.rt_sum_nanos.saturating_add(rt_nanos);
    }

    /// Stats over the complete buckets of the window ending at `epoch` (which is excluded:
    /// it is still filling).
    pub(crate) fn stats(&self, epoch: u64) -> Stats {
        let len = self.buckets.len() as u64;
        let oldest = epoch.saturating_sub(len - 1);
        let mut max_pass = 0;
        let mut min_rt: Option<f64> = None;
        for b in &self.buckets {
            if b.epoch == u64::MAX || b.epoch < oldest || b.epoch >= epoch || b.count == 0 {
                continue;
            }
            max_pass = max_pass.max(b.count);
            let mean = b.rt_sum_nanos as f64 / b.count as f64;
            min_rt = Some(min_rt.map_or(mean, |m: f64| m.min(mean)));
        }
        Stats {
            max_pass: max_pass.max(1),
            min_rt_nanos: min_rt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_current_and_expired_buckets() {
        let mut w = Window::new(4);
        for _ in 0..5 {
            w.add(1, 2_000);
        }
        w.add(2, 1_000);
        w.add(3, 50); // current: excluded
        let s = w.stats(3);
        assert_eq!(s.max_pass, 5);
        assert_eq!(s.min_rt_nanos, Some(1_000.0));
        // Epoch 1 and 2 fall out of a 4-bucket window ending at 6 (buckets 3..=5 count).
        let s = w.stats(6);
        assert_eq!(s.max_pass, 1);
        assert_eq!(s.min_rt_nanos, Some(50.0));
        // A reused slot forgets its old epoch.
        w.add(5, 7);
        assert_eq!(w.stats(6).min_rt_nanos, Some(7.0));
        assert_eq!(
            Window::new(4).stats(10),
            Stats {
                max_pass: 1,
                min_rt_nanos: None
            }
        );
    }
}
