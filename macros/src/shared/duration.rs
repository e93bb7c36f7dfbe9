//! `timeout = "2s"`: durations in the grammar of `truss-duration`, checked at compile time.

use syn::{Error, LitStr};

/// The longest duration a macro takes, in nanoseconds: about 30 years.
const MAX_NANOS: u64 = 1_000_000_000_000_000_000;

/// Parses "250ms", "2s", "1m30s", "1.5h" (the `truss-duration` grammar) into nanoseconds,
/// from 1ns to about 30 years.
pub fn duration_nanos(lit: &LitStr) -> syn::Result<u64> {
    let text = lit.value();
    let duration = truss_duration::parse(&text).map_err(|_| {
        Error::new(
            lit.span(),
            format!(
                "invalid duration `{text}`: expected a number and a unit (ms, s, m or h), e.g. \"250ms\" or \"2s\""
            ),
        )
    })?;
    match u64::try_from(duration.as_nanos()) {
        Ok(nanos) if (1..=MAX_NANOS).contains(&nanos) => Ok(nanos),
        _ => Err(Error::new(
            lit.span(),
            format!("invalid duration `{text}`: must be between 1ns and about 30 years"),
        )),
    }
}
