//! `[auth]`: token verification keys, route policies and this service's own tokens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::RoutePolicy;
use crate::config::duration;
use crate::section::{Section, ValidationError};

/// `[auth]`: who may call this service. Auth is on once a key source (`keys` or `jwks.url`)
/// is configured; routes are then protected unless `default = "public"`.
///
/// ```toml
/// [auth]
/// default = "protected"            # or "public"; the policy of routes nobody names
/// issuer = ["https://id.example"]  # accepted `iss`; empty: any
/// audience = ["user"]              # accepted `aud`; empty: `aud` not checked
/// leeway = "30s"                   # clock skew allowed on `exp` / `nbf`
/// required_claims = ["sub"]        # must be present (besides `exp`)
///
/// [[auth.keys]]                    # several at once: rotation, chosen by `kid`
/// kid = "2026-12"
/// alg = "HS256"                    # the key decides the algorithm, never the token
/// secret = "change-me"             # or secret_file = "...", or pem_file = "public.pem"
///
/// [auth.jwks]
/// url = "https://id.example/.well-known/jwks.json"
/// ca_file = "private-ca.pem"       # trusted besides the system's CAs (optional)
/// refresh = "5m"                   # scheduled refresh
/// min_refresh = "60s"              # an unknown kid refreshes early, at most this often
///
/// [auth.routes."POST /v1/users"]   # overrides the route's attribute
/// scope = "users:write"            # or: public = true
///
/// [auth.token]                     # this service's own tokens (login, service calls)
/// kid = "2026-12"
/// alg = "HS256"
/// secret = "change-me"             # or pem_file = "private.pem"
/// ttl = "5m"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `false` turns auth off even with keys configured. Default `true`.
    pub enabled: bool,
    /// The policy of routes that neither config nor an attribute names. Default `protected`.
    pub default: DefaultPolicy,
    /// Accepted issuers (`iss`); empty accepts any. Default empty.
    pub issuer: Vec<String>,
    /// Accepted audiences (`aud`); empty skips the check. Default empty.
    pub audience: Vec<String>,
    /// Clock skew allowed when checking `exp` and `nbf`. Default `30s`.
    #[serde(with = "duration")]
    pub leeway: Duration,
    /// Claims every token must carry, besides `exp`. Default none.
    pub required_claims: Vec<String>,
    /// Verification keys from config.
    pub keys: Vec<KeyConfig>,
    /// Verification keys from a JWKS URL.
    pub jwks: JwksConfig,
    /// Policies by route (`"POST /v1/users"`, `"/user.v1.Users/CreateUser"`); above the
    /// routes' attributes.
    pub routes: BTreeMap<String, RouteConfig>,
    /// The key this service signs its own tokens with.
    pub token: Option<TokenConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default: DefaultPolicy::Protected,
            issuer: Vec::new(),
            audience: Vec::new(),
            leeway: Duration::from_secs(30),
            required_claims: Vec::new(),
            keys: Vec::new(),
            jwks: JwksConfig::default(),
            routes: BTreeMap::new(),
            token: None,
        }
    }
}

impl AuthConfig {
    /// Whether requests are authenticated: enabled and a key source configured.
    pub fn is_on(&self) -> bool {
        self.enabled && (!self.keys.is_empty() || self.jwks.url.is_some())
    }
}

/// The policy of routes nobody names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    /// A valid token is needed.
    Protected,
    /// Anyone may call.
    Public,
}

/// One verification key: `alg` and one of `secret`, `secret_file` or `pem_file`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id tokens name in their header; without one, the key is tried for tokens
    /// without a `kid` whose `alg` matches.
    #[serde(default)]
    pub kid: Option<String>,
    /// `HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`,
    /// `ES256`, `ES384` or `EdDSA`.
    pub alg: String,
    /// An HMAC secret, as written.
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the HMAC secret (trailing newline ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// A PEM file: the public key to verify with (for `[auth.token]`, the private key).
    #[serde(default)]
    pub pem_file: Option<PathBuf>,
}

/// `[auth.jwks]`: keys fetched from a JSON Web Key Set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwksConfig {
    /// `https://` (or `http://`) URL of the key set. Default none.
    pub url: Option<String>,
    /// A PEM file of CA certificates trusted for the JWKS URL besides the system's (a private
    /// PKI). Default none.
    pub ca_file: Option<PathBuf>,
    /// Scheduled refresh. Default `5m`.
    #[serde(with = "duration")]
    pub refresh: Duration,
    /// An unknown `kid` refreshes early, at most once per this. Default `60s`.
    #[serde(with = "duration")]
    pub min_refresh: Duration,
    /// Timeout of one fetch. Default `2s`.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            url: None,
            ca_file: None,
            refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
        }
    }
}

/// `[auth.routes."<route>"]`: `public = true`, or `scope = "..."`, or neither (a valid
/// token).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Anyone may call.
    pub public: bool,
    /// The scope a token needs.
    pub scope: Option<String>,
}

impl RouteConfig {
    /// The policy this names.
    pub fn policy(&self) -> RoutePolicy {
        match (&self.scope, self.public) {
            (_, true) => RoutePolicy::Public,
            (Some(scope), false) => RoutePolicy::Scope(scope.clone()),
            (None, false) => RoutePolicy::Authenticated,
        }
    }
}

/// `[auth.token]`: the key this service signs tokens with, and their lifetime.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The signing key (`pem_file`: the private key).
    #[serde(flatten)]
    pub key: KeyConfig,
    /// Lifetime of a token. Default `5m`.
    #[serde(with = "duration", default = "default_ttl")]
    pub ttl: Duration,
    /// `iss` of the tokens; default the service's name.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `aud` of service tokens. Default none.
    #[serde(default)]
    pub audience: Vec<String>,
    /// `scope` of service tokens (space-separated). Default none.
    #[serde(default)]
    pub scope: Option<String>,
}

fn default_ttl() -> Duration {
    Duration::from_secs(300)
}

const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

impl KeyConfig {
    fn check(&self) -> Result<(), ValidationError> {
        if !ALGORITHMS.contains(&self.alg.as_str()) {
            return Err(ValidationError::new(
                "alg",
                format!("`{}` is not one of {}", self.alg, ALGORITHMS.join(", ")),
            ));
        }
        let hmac = self.alg.starts_with("HS");
        let sources = [
            self.secret.is_some(),
            self.secret_file.is_some(),
            self.pem_file.is_some(),
        ];
        match (sources.iter().filter(|s| **s).count(), hmac) {
            (1, true) if self.pem_file.is_none() => Ok(()),
            (1, false) if self.pem_file.is_some() => Ok(()),
            (_, true) => Err(ValidationError::new(
                "secret",
                "an HMAC key needs exactly one of `secret` or `secret_file`",
            )),
            (_, false) => Err(ValidationError::new(
                "pem_file",
                "an RSA, EC or EdDSA key needs `pem_file` (and no secret)",
            )),
        }
    }
}

impl Section for AuthConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        for (i, key) in self.keys.iter().enumerate() {
            key.check().map_err(|e| e.within(&format!("keys[{i}]")))?;
        }
        if let Some(url) = &self.jwks.url
            && !url.starts_with("https://")
            && !url.starts_with("http://")
        {
            return Err(ValidationError::new(
                "jwks.url",
                "must be an https:// or http:// URL",
            ));
        }
        if self.jwks.min_refresh.is_zero() || self.jwks.refresh < self.jwks.min_refresh {
            return Err(ValidationError::new(
                "jwks.refresh",
                "must be at least `jwks.min_refresh`, which must be above zero",
            ));
        }
        for (route, policy) in &self.routes {
            if policy.public && policy.scope.is_some() {
                return Err(ValidationError::new(
                    format!("routes.\"{route}\""),
                    "`public = true` and `scope` exclude each other",
                ));
            }
        }
        if let Some(token) = &self.token {
            token.key.check().map_err(|e| e.within("token"))?;
        }
        if cfg!(not(feature = "auth")) && (self.is_on() || self.token.is_some()) {
            return Err(ValidationError::new(
                "keys",
                "auth is configured but truss was built without its `auth` feature",
            ));
        }
        Ok(())
    }
}
