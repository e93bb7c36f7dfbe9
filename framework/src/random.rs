//! Per-thread pseudo-random numbers for ids, sampling, jitter and load spreading (never for
//! secrets): splitmix64 over a per-thread counter, seeded from the process's random hash
//! keys and the clock, so threads and instances draw different sequences.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS per process and differs per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish() | 1
}

/// A random `u64`.
pub(crate) fn next_u64() -> u64 {
    STATE.with(|state| {
        let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// A number in `[0, 1)`.
pub(crate) fn unit() -> f64 {
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A number in `0..n` (`0` when `n` is 0).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn below(n: u32) -> u32 {
    (((next_u64() >> 32) * u64::from(n)) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_spread_over_their_range() {
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            counts[below(4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (700..1300).contains(&n)),
            "{counts:?}"
        );
        let units: Vec<f64> = (0..1000).map(|_| unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(units.iter().any(|&u| u < 0.1) && units.iter().any(|&u| u > 0.9));
        assert_ne!(next_u64(), next_u64());
    }
}
