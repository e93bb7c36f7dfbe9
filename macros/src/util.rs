//! Parsing shared by the macros: durations and route paths, checked at compile time.

use syn::{Error, LitStr};

/// Parses "250ms", "2s", "1m", "1h" (also "1.5s") into nanoseconds.
pub fn duration_nanos(lit: &LitStr) -> syn::Result<u64> {
    let text = lit.value();
    let bad = || {
        Error::new(
            lit.span(),
            format!(
                "invalid duration `{text}`: expected a number and a unit (ms, s, m or h), e.g. \"250ms\" or \"2s\""
            ),
        )
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return Err(bad()),
    };
    let nanos = number * scale;
    if !(1.0..=1e18).contains(&nanos) {
        return Err(Error::new(
            lit.span(),
            format!("invalid duration `{text}`: must be between 1ns and about 30 years"),
        ));
    }
    Ok(nanos as u64)
}

/// A segment of a route path.
pub struct PathParam {
    pub name: String,
    pub wildcard: bool,
}

/// Checks an axum 0.8 route path and returns its `{name}` / `{*name}` parameters in order.
pub fn route_params(lit: &LitStr) -> syn::Result<Vec<PathParam>> {
    let path = lit.value();
    let err = |msg: String| Error::new(lit.span(), msg);
    if !path.starts_with('/') {
        return Err(err(format!("route path `{path}` must start with `/`")));
    }
    let mut params = Vec::new();
    for segment in path.split('/').skip(1) {
        if let Some(rest) = segment.strip_prefix(':') {
            return Err(err(format!(
                "route path `{path}`: write `{{{rest}}}` instead of `:{rest}` (axum 0.8 syntax)"
            )));
        }
        let opens = segment.matches('{').count();
        let closes = segment.matches('}').count();
        if opens == 0 && closes == 0 {
            continue;
        }
        let inner = segment
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .filter(|_| opens == 1 && closes == 1)
            .ok_or_else(|| {
                err(format!(
                    "route path `{path}`: segment `{segment}` must be a whole `{{name}}` parameter"
                ))
            })?;
        let (wildcard, name) = match inner.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, inner),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(err(format!(
                "route path `{path}`: parameter `{{{inner}}}` needs a name made of letters, digits and `_`"
            )));
        }
        if params.iter().any(|p: &PathParam| p.name == name) {
            return Err(err(format!(
                "route path `{path}`: parameter `{name}` appears twice"
            )));
        }
        params.push(PathParam {
            name: name.to_owned(),
            wildcard,
        });
    }
    Ok(params)
}
