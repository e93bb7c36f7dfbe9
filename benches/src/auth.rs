//! Authentication in the benchmarks: for each measured algorithm a verifier (`[auth]` with
//! one key, issuer and audience checked) and a valid token for it, signed with the test-only
//! keys of `tests/fixtures/auth/`.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Request, header};
use truss::auth::{AuthConfig, KeyConfig, TokenConfig, TokenIssuer, Verifier};

/// The algorithms whose verification is measured: one per family.
pub const ALGORITHMS: &[&str] = &["HS256", "RS256", "ES256", "EdDSA"];

/// The HMAC secret (32 bytes).
const SECRET: &str = "bench-secret-0123456789abcdef012";
/// `iss` of the tokens, and the only issuer the verifiers accept.
const ISSUER: &str = "bench";
/// `aud` of the tokens, and the only audience the verifiers accept.
const AUDIENCE: &str = "user";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/auth")
        .join(name)
}

/// The key of `alg`: the public half to verify, the private half to sign.
fn key(alg: &str, private: bool) -> KeyConfig {
    let file = match alg {
        a if a.starts_with("HS") => None,
        a if a.starts_with("RS") || a.starts_with("PS") => Some("rsa"),
        "ES256" => Some("ec256"),
        "ES384" => Some("ec384"),
        _ => Some("ed25519"),
    };
    let ext = if private { "key" } else { "pub" };
    KeyConfig {
        kid: None,
        alg: alg.to_owned(),
        secret: file.is_none().then(|| SECRET.to_owned()),
        secret_file: None,
        pem_file: file.map(|f| fixture(&format!("{f}.{ext}"))),
    }
}

/// `[auth]` verifying `alg` tokens with one key, issuer and audience checked.
pub fn auth_config(alg: &str) -> AuthConfig {
    AuthConfig {
        keys: vec![key(alg, false)],
        issuer: vec![ISSUER.to_owned()],
        audience: vec![AUDIENCE.to_owned()],
        ..AuthConfig::default()
    }
}

/// The verifier of [`auth_config`].
pub fn verifier(alg: &str) -> Verifier {
    Verifier::new(&auth_config(alg)).expect("verifier")
}

/// A valid `alg` token, good for a day: `sub`, `iss`, `aud`, `iat`, `exp` and a `scope`.
pub fn token(alg: &str) -> String {
    let config = TokenConfig {
        key: key(alg, true),
        ttl: Duration::from_secs(86_400),
        issuer: Some(ISSUER.to_owned()),
        audience: vec![AUDIENCE.to_owned()],
        scope: Some("users:read".to_owned()),
    };
    let issuer = TokenIssuer::new(&config, ISSUER).expect("token issuer");
    issuer.service_token().expect("token").to_string()
}

/// `Bearer <a valid HS256 token>`, made once; cloning it allocates nothing.
fn bearer() -> HeaderValue {
    static BEARER: OnceLock<HeaderValue> = OnceLock::new();
    BEARER
        .get_or_init(|| {
            let value: &'static str = format!("Bearer {}", token("HS256")).leak();
            HeaderValue::from_static(value)
        })
        .clone()
}

/// [`crate::variants::request`] with `Authorization: Bearer <a valid HS256 token>`.
pub fn request_with_token() -> Request<Body> {
    let mut req = crate::variants::request();
    req.headers_mut().insert(header::AUTHORIZATION, bearer());
    req
}
