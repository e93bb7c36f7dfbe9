//! Secrets out of what `/config` shows.

use serde_json::Value;

/// Shown in place of a secret.
const HIDDEN: &str = "<redacted>";

/// Replaces secrets in place: the values of keys that name one (`password`, `secret`,
/// `token`, `private_key`, ...) and the password in URLs (`redis://:pw@host`,
/// `postgres://user:pw@host/db`).
pub(crate) fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if is_secret(key) && !child.is_null() && !child.is_object() {
                    *child = Value::String(HIDDEN.to_owned());
                } else {
                    redact(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(text) => {
            if let Some(hidden) = without_password(text) {
                *text = hidden;
            }
        }
        _ => {}
    }
}

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "private_key",
        "api_key",
        "credentials",
        "passphrase",
        "pem",
        "oauthbearer.config",
    ]
    .iter()
    .any(|word| {
        key == *word || key.ends_with(&format!("_{word}")) || key.ends_with(&format!(".{word}"))
    })
}

/// `scheme://user:password@host...` with the password hidden; `None` for anything else.
fn without_password(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:{HIDDEN}@{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_url_passwords_are_hidden() {
        let mut value = serde_json::json!({
            "registry": {"etcd": {"user": "root", "password": "hunter2"}},
            "auth": {"keys": [{"secret": "abc", "kid": "k1"}], "token": {"issuer": "me"}},
            "database": {"url": "postgres://app:s3cret@db:5432/app?sslmode=disable"},
            "redis": {"url": "redis://:pw@cache:6379/0"},
            "consumers": {"orders": {"kafka": {
                "sasl.password": "kpw", "sasl.username": "u", "ssl.key.pem": "PRIVATE",
                "ssl.key.passphrase": "kpass", "sasl.oauthbearer.config": "clientSecret=cs",
            }}},
            "plain": "http://host/path",
        });
        redact(&mut value);
        let text = value.to_string();
        for secret in [
            "hunter2",
            "abc",
            "s3cret",
            ":pw@",
            "kpw",
            "PRIVATE",
            "kpass",
            "clientSecret",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(value["registry"]["etcd"]["user"], "root");
        assert_eq!(value["auth"]["keys"][0]["kid"], "k1");
        assert_eq!(
            value["auth"]["token"]["issuer"], "me",
            "a section named token is walked"
        );
        assert_eq!(
            value["database"]["url"],
            "postgres://app:<redacted>@db:5432/app?sslmode=disable"
        );
        assert_eq!(value["plain"], "http://host/path");
    }
}
