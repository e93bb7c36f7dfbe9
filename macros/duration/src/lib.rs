//! The one duration grammar of truss, shared by the config loader
//! (`truss::config::duration`) and the macros (`#[truss::route(timeout = "2s")]`).
//!
//! ```
//! use std::time::Duration;
//!
//! assert_eq!(truss_duration::parse("1m30s"), Ok(Duration::from_secs(90)));
//! assert_eq!(truss_duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
//! assert_eq!(truss_duration::format(Duration::from_millis(1500)), "1500ms");
//! assert!(truss_duration::parse("3 sec").is_err());
//! ```
//!
//! # Grammar
//!
//! ```text
//! duration  = ws* ( "0" | component+ ) ws*
//! component = number ws* unit
//! number    = digit+ ( "." digit* )? | "." digit+
//! unit      = "ns" | "us" | "µs" | "ms" | "s" | "m" | "h" | "d"
//! ```
//!
//! `ws` is any Unicode white space. A bare number needs a unit, except `0`. Components
//! add up (`1h30m`, `1m30s`, `1s500ms`); there is no white space between them. Numbers
//! are decimal and read exactly (no floating point): a fraction finer than a nanosecond
//! is rounded to the nearest nanosecond, halves up, per component. A total beyond
//! [`Duration::MAX`] is [`ParseError::Overflow`]. [`parse`] never panics.
//!
//! [`format()`] prints the shortest exact form in one unit (`0`, `3s`, `250ms`, `7us`,
//! `9ns`), which [`parse`] reads back to the same value for every [`Duration`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::time::Duration;

/// The units [`parse`] accepts, with their length in nanoseconds.
pub const UNITS: &[(&str, u64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("d", 86_400 * NANOS_PER_SEC),
];

/// Nanoseconds in a second.
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// [`Duration::MAX`] in nanoseconds.
const MAX_NANOS: u128 = u64::MAX as u128 * NANOS_PER_SEC as u128 + (NANOS_PER_SEC as u128 - 1);

/// Why a text is not a duration. Positions are byte offsets into the text given to [`parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseError {
    /// The text is empty or only white space.
    Empty,
    /// A number was expected at `at`, such as the `x` in `1sx` or the `-` in `-1s`.
    ExpectedNumber {
        /// Where the number should start.
        at: usize,
    },
    /// The number at `at` has no digits (`.`) or a second `.` (`1.2.3s`).
    InvalidNumber {
        /// Where the number starts.
        at: usize,
    },
    /// The number ending at `at` is not followed by a unit (`3`, `1m30`).
    MissingUnit {
        /// Where the unit should start.
        at: usize,
    },
    /// The unit at `start..end` is not one of [`UNITS`] (`3sec`, `2 fortnights`).
    UnknownUnit {
        /// Where the unit starts.
        start: usize,
        /// Where the unit ends.
        end: usize,
    },
    /// The duration is longer than [`Duration::MAX`].
    Overflow,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty duration"),
            Self::ExpectedNumber { at } => write!(f, "expected a number at byte {at}"),
            Self::InvalidNumber { at } => write!(f, "malformed number at byte {at}"),
            Self::MissingUnit { at } => {
                write!(f, "missing unit at byte {at} (ns, us, ms, s, m, h or d)")
            }
            Self::UnknownUnit { start, end } => write!(
                f,
                "unknown unit at bytes {start}..{end} (expected ns, us, ms, s, m, h or d)"
            ),
            Self::Overflow => f.write_str("duration too long"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses a duration such as `"250ms"`, `"1.5s"`, `"1m30s"`, `"2 h"` or `"0"`.
///
/// See the [crate documentation](crate) for the grammar.
///
/// ```
/// use std::time::Duration;
/// use truss_duration::{parse, ParseError};
///
/// assert_eq!(parse(" 2h "), Ok(Duration::from_secs(7200)));
/// assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
/// assert_eq!(parse("3"), Err(ParseError::MissingUnit { at: 1 }));
/// assert_eq!(parse("99999999999999999999999h"), Err(ParseError::Overflow));
/// ```
pub fn parse(text: &str) -> Result<Duration, ParseError> {
    let offset = text.len() - text.trim_start().len();
    let body = text.trim();
    if body.is_empty() {
        return Err(ParseError::Empty);
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    let mut cursor = Cursor {
        text: body,
        pos: 0,
        offset,
    };
    // `None` once the total is past `Duration::MAX`; reported only if the syntax is valid.
    let mut total = Some(0u128);
    while !cursor.at_end() {
        let nanos = component(&mut cursor)?;
        total = total
            .zip(nanos)
            .and_then(|(t, n)| t.checked_add(n))
            .filter(|&t| t <= MAX_NANOS);
    }
    let total = total.ok_or(ParseError::Overflow)?;
    let per_sec = u128::from(NANOS_PER_SEC);
    let secs = u64::try_from(total / per_sec).map_err(|_| ParseError::Overflow)?;
    let nanos = u32::try_from(total % per_sec).map_err(|_| ParseError::Overflow)?;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration the way [`parse`] reads it: `"0"`, or a whole number of the largest
/// of s, ms, us and ns that is exact (`"3s"`, `"1500ms"`, `"7us"`, `"9ns"`).
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(truss_duration::format(Duration::from_secs(90)), "90s");
/// assert_eq!(truss_duration::format(Duration::from_micros(1500)), "1500us");
/// ```
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        "0".to_owned()
    } else if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else if d.as_nanos().is_multiple_of(1_000) {
        format!("{}us", d.as_micros())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// A position in the trimmed text; `offset` turns it back into one in the original.
struct Cursor<'a> {
    /// The text, trimmed.
    text: &'a str,
    /// The next byte to read in `text`.
    pos: usize,
    /// Bytes trimmed off the start of the original text.
    offset: usize,
}

impl<'a> Cursor<'a> {
    /// Whether everything has been read.
    fn at_end(&self) -> bool {
        self.pos == self.text.len()
    }

    /// What is left to read.
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    /// The position in the text given to [`parse`].
    fn here(&self) -> usize {
        self.offset + self.pos
    }

    /// Consumes the longest prefix whose chars match `keep`.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }
}

/// One `number ws* unit`, in nanoseconds (`None` when too large to matter).
fn component(cursor: &mut Cursor<'_>) -> Result<Option<u128>, ParseError> {
    let start = cursor.here();
    let number = cursor.take_while(|c| c.is_ascii_digit() || c == '.');
    if number.is_empty() {
        return Err(ParseError::ExpectedNumber { at: start });
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(ParseError::InvalidNumber { at: start });
    }
    cursor.take_while(char::is_whitespace);
    let unit_start = cursor.here();
    let unit = cursor.take_while(char::is_alphabetic);
    if unit.is_empty() {
        return Err(ParseError::MissingUnit { at: unit_start });
    }
    let &(_, scale) =
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or(ParseError::UnknownUnit {
                start: unit_start,
                end: cursor.here(),
            })?;
    let nanos = whole_number(whole)
        .and_then(|w| w.checked_mul(u128::from(scale)))
        .and_then(|n| n.checked_add(u128::from(fraction_nanos(fraction, scale))));
    Ok(nanos)
}

/// The value of a run of ASCII digits (`0` when empty), or `None` past [`MAX_NANOS`].
fn whole_number(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |value, digit| {
        value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(digit - b'0')))
            .filter(|&v| v <= MAX_NANOS)
    })
}

/// `0.<digits>` of a unit `scale` nanoseconds long, in nanoseconds rounded half up.
///
/// Exact for any number of digits: Horner's rule from the last digit, where each step
/// divides by ten, keeping the whole nanoseconds and the last remainder.
fn fraction_nanos(digits: &str, scale: u64) -> u64 {
    let mut whole = 0u64; // always < scale, so `digit * scale + whole` < 10 * scale
    let mut remainder = 0u64;
    for digit in digits.bytes().rev() {
        let n = u64::from(digit - b'0') * scale + whole;
        whole = n / 10;
        remainder = n % 10;
    }
    // The fraction of a nanosecond left over is (remainder + f) / 10 with 0 <= f < 1.
    whole + u64::from(remainder >= 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_compounds() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("  0\t", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("7ns", Duration::from_nanos(7)),
            ("10us", Duration::from_micros(10)),
            ("5µs", Duration::from_micros(5)),
            ("250ms", Duration::from_millis(250)),
            ("3s", Duration::from_secs(3)),
            ("1m", Duration::from_secs(60)),
            ("2h", Duration::from_secs(7200)),
            ("1d", Duration::from_secs(86_400)),
            ("1m30s", Duration::from_secs(90)),
            ("1h1m1s1ms1us1ns", Duration::new(3661, 1_001_001)),
            ("1s1s", Duration::from_secs(2)),
            ("2 s", Duration::from_secs(2)),
            ("2s ", Duration::from_secs(2)),
            (" 2s", Duration::from_secs(2)),
            ("1 m30 s", Duration::from_secs(90)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(*expected), "{text:?}");
        }
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5.s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("0.3s"), Ok(Duration::from_millis(300)));
        assert_eq!(parse("1.7ms"), Ok(Duration::from_micros(1700)));
        assert_eq!(parse("0.000001m"), Ok(Duration::from_micros(60)));
        assert_eq!(parse("0.5ns"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse("0.4999999999999999999999ns"), Ok(Duration::ZERO));
        assert_eq!(parse("1.5ns"), Ok(Duration::from_nanos(2)));
        assert_eq!(parse("0.1ns"), Ok(Duration::ZERO));
        assert_eq!(parse("18446744073709551615.999999999s"), Ok(Duration::MAX),);
        assert_eq!(
            parse("1.00000000000000000000000000000000000000001s"),
            Ok(Duration::from_secs(1))
        );
    }

    #[test]
    fn errors_say_where() {
        use ParseError::*;
        let cases: &[(&str, ParseError)] = &[
            ("", Empty),
            (" \n ", Empty),
            ("3", MissingUnit { at: 1 }),
            (" 3 ", MissingUnit { at: 2 }),
            ("1m30", MissingUnit { at: 4 }),
            ("3!", MissingUnit { at: 1 }),
            ("s", ExpectedNumber { at: 0 }),
            ("-1s", ExpectedNumber { at: 0 }),
            ("ms500", ExpectedNumber { at: 0 }),
            ("1m 30s", ExpectedNumber { at: 2 }),
            ("1s-", ExpectedNumber { at: 2 }),
            (".", InvalidNumber { at: 0 }),
            ("1.2.3s", InvalidNumber { at: 0 }),
            ("1s.s", InvalidNumber { at: 2 }),
            ("3sec", UnknownUnit { start: 1, end: 4 }),
            ("3 sec", UnknownUnit { start: 2, end: 5 }),
            ("1e3s", UnknownUnit { start: 1, end: 2 }),
            ("2 fortnights", UnknownUnit { start: 2, end: 12 }),
            ("5μs", UnknownUnit { start: 1, end: 4 }), // Greek mu, not the micro sign
            ("18446744073709551616s", Overflow),
            ("18446744073709551615.9999999995s", Overflow),
            ("213503982334602d", Overflow),
            (
                "99999999999999999999999999999999999999999999999ns",
                Overflow,
            ),
            // A syntax error wins over an overflow earlier in the text.
            (
                "18446744073709551616s1x",
                UnknownUnit { start: 22, end: 23 },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).as_ref(), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn errors_display() {
        assert_eq!(ParseError::Empty.to_string(), "empty duration");
        assert_eq!(
            ParseError::UnknownUnit { start: 1, end: 4 }.to_string(),
            "unknown unit at bytes 1..4 (expected ns, us, ms, s, m, h or d)"
        );
    }

    #[test]
    fn format_picks_the_largest_exact_unit() {
        assert_eq!(format(Duration::ZERO), "0");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_micros(7)), "7us");
        assert_eq!(format(Duration::from_nanos(9)), "9ns");
        assert_eq!(format(Duration::MAX), "18446744073709551615999999999ns");
        assert_eq!(parse(&format(Duration::MAX)), Ok(Duration::MAX));
    }
}
