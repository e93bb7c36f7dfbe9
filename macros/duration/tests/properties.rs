//! Property tests: the parser never panics, and printing then parsing is the identity.

use std::time::Duration;

use proptest::prelude::*;
use truss_duration::{UNITS, format, parse};

/// Text made of the grammar's own characters, so most cases get past the first byte.
const DURATION_LIKE: &str = "[0-9.µsmhdnu \t]{0,40}";

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
        (0u64..1_000_000).prop_map(Duration::from_millis),
        (0u64..1_000_000).prop_map(Duration::from_micros),
        Just(Duration::ZERO),
        Just(Duration::MAX),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn never_panics_on_any_string(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn never_panics_on_duration_like_text(text in DURATION_LIKE) {
        let _ = parse(&text);
    }

    #[test]
    fn format_then_parse_is_identity(d in any_duration()) {
        prop_assert_eq!(parse(&format(d)), Ok(d));
    }

    #[test]
    fn parse_then_format_round_trips(text in DURATION_LIKE) {
        if let Ok(d) = parse(&text) {
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }
    }

    /// Whole-number components add up exactly.
    #[test]
    fn compounds_add_up(parts in prop::collection::vec((0u64..10_000_000, 0..UNITS.len()), 1..6)) {
        let text: String = parts.iter().map(|&(n, u)| format!("{n}{}", UNITS[u].0)).collect();
        let expected: u128 = parts.iter().map(|&(n, u)| u128::from(n) * u128::from(UNITS[u].1)).sum();
        prop_assert_eq!(parse(&text).map(|d| d.as_nanos()), Ok(expected));
    }

    /// Decimals are exact, with a sub-nanosecond rest rounded half up.
    #[test]
    fn decimals_round_to_the_nearest_nanosecond(
        whole in 0u64..1_000_000,
        fraction in "[0-9]{0,20}",
        unit in 0..UNITS.len(),
    ) {
        let (name, scale) = UNITS[unit];
        let scale = u128::from(scale);
        let digits: u128 = fraction.parse().unwrap_or(0);
        let denominator = 10u128.pow(u32::try_from(fraction.len()).unwrap());
        let fraction_nanos = (2 * digits * scale + denominator) / (2 * denominator);
        let expected = u128::from(whole) * scale + fraction_nanos;
        let text = format!("{whole}.{fraction}{name}");
        prop_assert_eq!(parse(&text).map(|d| d.as_nanos()), Ok(expected));
    }
}
