//! The `grpc-timeout` header: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).

use std::time::Duration;

use http::HeaderValue;

/// Why a `grpc-timeout` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTimeout(pub String);

impl std::fmt::Display for InvalidTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "malformed grpc-timeout {:?}: expected 1 to 8 digits and a unit (H, M, S, m, u, n)",
            self.0
        )
    }
}

impl std::error::Error for InvalidTimeout {}

/// Parses a `grpc-timeout` value such as `250m` (250 ms).
///
/// ```
/// use std::time::Duration;
/// use truss::resilience::deadline::grpc_timeout;
/// assert_eq!(grpc_timeout::parse(b"250m"), Ok(Duration::from_millis(250)));
/// assert!(grpc_timeout::parse(b"123456789S").is_err());
/// ```
pub fn parse(value: &[u8]) -> Result<Duration, InvalidTimeout> {
    let bad = || InvalidTimeout(String::from_utf8_lossy(value).into_owned());
    let (digits, unit) = match value {
        [digits @ .., unit] if (1..=8).contains(&digits.len()) => (digits, *unit),
        _ => return Err(bad()),
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let n: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)?;
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(bad()),
    })
}

/// Formats a duration as a `grpc-timeout` value, in the finest unit that fits in 8 digits.
///
/// ```
/// use std::time::Duration;
/// use truss::resilience::deadline::grpc_timeout;
/// assert_eq!(grpc_timeout::format(Duration::from_millis(295)), "295000u");
/// ```
pub fn format(d: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    let (n, unit) = if nanos <= MAX {
        (nanos, 'n')
    } else if nanos / 1_000 <= MAX {
        (nanos / 1_000, 'u')
    } else if nanos / 1_000_000 <= MAX {
        (nanos / 1_000_000, 'm')
    } else if nanos / 1_000_000_000 <= MAX {
        (nanos / 1_000_000_000, 'S')
    } else if nanos / 60_000_000_000 <= MAX {
        (nanos / 60_000_000_000, 'M')
    } else {
        ((nanos / 3_600_000_000_000).min(MAX), 'H')
    };
    // Digits and an ASCII letter: always a valid header value.
    HeaderValue::from_str(&format!("{n}{unit}")).unwrap_or(HeaderValue::from_static("0n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse(b"1H"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse(b"2M"), Ok(Duration::from_secs(120)));
        assert_eq!(parse(b"3S"), Ok(Duration::from_secs(3)));
        assert_eq!(parse(b"250m"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(b"7u"), Ok(Duration::from_micros(7)));
        assert_eq!(parse(b"99999999n"), Ok(Duration::from_nanos(99_999_999)));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"m",
            b"10",
            b"10x",
            b"-1S",
            b"1.5S",
            b"123456789m",
            b" 1S",
            b"1 S",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn format_round_trips_within_unit_precision() {
        for d in [
            Duration::from_nanos(5),
            Duration::from_millis(295),
            Duration::from_secs(30),
            Duration::from_secs(86_400 * 400),
        ] {
            let v = format(d);
            let back = parse(v.as_bytes()).unwrap();
            assert!(
                back <= d && d - back < d / 1000 + Duration::from_nanos(1),
                "{d:?} -> {v:?}"
            );
        }
    }
}
