//! Route paths (axum 0.8 syntax), checked at compile time.

use syn::{Error, LitStr};

/// A `{name}` or `{*name}` parameter of a route path.
pub struct PathParam {
    /// The parameter's name.
    pub name: String,
    /// `{*name}`: it matches the rest of the path.
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
