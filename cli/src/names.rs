//! Service names: what is accepted, and the forms templates use.

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe",
    "use", "where", "while", "abstract", "become", "box", "do", "final", "macro", "override",
    "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Names that would shadow a crate every service uses.
const RESERVED: &[&str] = &[
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "build",
    "truss",
    "tokio",
    "tonic",
    "prost",
    "serde",
    "axum",
    "tracing",
];

/// Checks that `name` can be a crate, binary and proto package name.
pub fn check(name: &str) -> Result<(), String> {
    let rule = "a service name is lowercase letters, digits, `-` and `_`, starting with a letter \
                (e.g. `user-service`)";
    if name.is_empty() {
        return Err(format!("the service name is empty: {rule}"));
    }
    if name.len() > 64 {
        return Err(format!("`{name}` is longer than 64 characters"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !rest_ok {
        return Err(format!("`{name}` is not a valid crate name: {rule}"));
    }
    if name.ends_with('-') || name.ends_with('_') || name.contains("--") || name.contains("__") {
        return Err(format!(
            "`{name}` is not a valid crate name: {rule}, without doubled or trailing separators"
        ));
    }
    let snake = snake(name);
    if KEYWORDS.contains(&snake.as_str()) {
        return Err(format!(
            "`{name}` is a Rust keyword and cannot name a crate"
        ));
    }
    if RESERVED.contains(&snake.as_str()) {
        return Err(format!(
            "`{name}` would shadow the `{snake}` crate; choose another name"
        ));
    }
    Ok(())
}

/// `user-service` → `user_service`.
pub fn snake(name: &str) -> String {
    name.replace('-', "_")
}

/// `user-service` → `UserService`.
pub fn pascal(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `GetUser` → `get_user` (as tonic names rpc methods).
pub fn method(rpc: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = rpc.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        for ok in ["user", "user-service", "order_v2", "a1"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "1user", "User", "my app", "fn", "test", "truss", "a-", "a--b", "ü",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forms() {
        assert_eq!(snake("user-service"), "user_service");
        assert_eq!(pascal("user-service"), "UserService");
        assert_eq!(pascal("order_v2"), "OrderV2");
        assert_eq!(method("GetUser"), "get_user");
        assert_eq!(method("ListHTTPRoutes"), "list_http_routes");
        assert_eq!(method("GetV2Item"), "get_v2_item");
    }
}
