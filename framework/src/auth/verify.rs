//! Token verification: the key decides the algorithm, the token only has to agree.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde_json::Value;

use super::Identity;
use super::config::AuthConfig;
use super::jwks::Jwks;
use super::keys::{self, KeySet};
use crate::section::ValidationError;

/// Longest token accepted; longer ones are rejected before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No bearer token where one is needed: 401 `TOKEN_MISSING`.
    Missing,
    /// Past its `exp` (beyond the leeway): 401 `TOKEN_EXPIRED`.
    Expired,
    /// Anything else wrong with it: 401 `TOKEN_INVALID`, with what was wrong.
    Invalid(&'static str),
    /// A valid token without the route's scope: 403 `INSUFFICIENT_SCOPE`.
    InsufficientScope,
    /// No key to verify with yet (the JWKS was never fetched): 503 `AUTH_UNAVAILABLE`.
    Unavailable,
}

impl AuthError {
    /// The error model's reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "TOKEN_MISSING",
            Self::Expired => "TOKEN_EXPIRED",
            Self::Invalid(_) => "TOKEN_INVALID",
            Self::InsufficientScope => "INSUFFICIENT_SCOPE",
            Self::Unavailable => "AUTH_UNAVAILABLE",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Self::InsufficientScope => 403,
            Self::Unavailable => 503,
            _ => 401,
        }
    }

    /// A message safe to return: it never echoes the token.
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "this route needs a bearer token",
            Self::Expired => "the token has expired",
            Self::Invalid(why) => why,
            Self::InsufficientScope => "the token lacks the scope this route needs",
            Self::Unavailable => "no verification keys are available yet",
        }
    }

    /// The `result` label of `truss_auth_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Expired => "expired",
            Self::Invalid(_) => "invalid",
            Self::InsufficientScope => "forbidden",
            Self::Unavailable => "unavailable",
        }
    }
}

impl From<AuthError> for crate::Error {
    fn from(e: AuthError) -> Self {
        crate::Error::new(e.status(), e.reason(), e.message())
    }
}

/// Verifies bearer tokens against the configured keys and the JWKS, if any.
pub struct Verifier {
    static_keys: KeySet,
    /// The JWKS's keys as last fetched, apart from the static ones (a reload's new verifier
    /// starts from them).
    fetched: RwLock<Arc<KeySet>>,
    keys: RwLock<Arc<KeySet>>,
    validations: Vec<(Algorithm, Validation)>,
    required: Vec<String>,
    pub(crate) jwks: Option<Jwks>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

const SPEC_CLAIMS: &[&str] = &["exp", "nbf", "aud", "iss", "sub"];

impl Verifier {
    /// A verifier for `[auth]`, with its static keys read (files included). The JWKS, if
    /// configured, is not fetched yet: see [`Verifier::start`].
    pub fn new(config: &AuthConfig) -> Result<Self, ValidationError> {
        let mut static_keys = Vec::new();
        for (i, key) in config.keys.iter().enumerate() {
            static_keys.push(keys::from_config(key).map_err(|e| e.within(&format!("keys[{i}]")))?);
        }
        let static_keys = KeySet::new(static_keys);
        let jwks = config
            .jwks
            .url
            .as_ref()
            .map(|url| Jwks::new(url, &config.jwks))
            .transpose()?;
        Ok(Self {
            fetched: RwLock::new(Arc::new(KeySet::new(Vec::new()))),
            keys: RwLock::new(Arc::new(static_keys.clone())),
            static_keys,
            validations: validations(config),
            required: config
                .required_claims
                .iter()
                .filter(|c| !SPEC_CLAIMS.contains(&c.as_str()))
                .cloned()
                .collect(),
            jwks,
        })
    }

    /// Fetches the JWKS once (when configured) and keeps it fresh on its schedule until the
    /// returned task is aborted. A failed fetch is logged; cached keys stay in force.
    pub async fn start(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.jwks.as_ref()?;
        self.refresh().await;
        let this = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            loop {
                let Some(period) = this
                    .upgrade()
                    .and_then(|v| v.jwks.as_ref().map(Jwks::period))
                else {
                    return;
                };
                tokio::time::sleep(period).await;
                match this.upgrade() {
                    Some(v) => v.refresh().await,
                    None => return,
                }
            }
        }))
    }

    /// Fetches the JWKS now; on success its keys replace the previous JWKS keys.
    pub(crate) async fn refresh(&self) {
        let Some(jwks) = &self.jwks else { return };
        jwks.fetch(|fetched| self.install(fetched)).await;
    }

    /// Puts `fetched` (the JWKS's keys) in force next to the static keys.
    fn install(&self, fetched: KeySet) {
        let merged = self.static_keys.merged(&fetched);
        *self.fetched.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fetched);
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(merged);
    }

    /// Starts from the JWKS keys `previous` last fetched, when both fetch the same JWKS URL:
    /// a verifier built for a reloaded `[auth]` (a new route policy, say) then keeps
    /// verifying tokens of those keys even if its own first fetch fails. Call it before
    /// [`start`](Self::start), whose fetch replaces them when it succeeds.
    ///
    /// ```
    /// use truss::auth::{AuthConfig, Verifier};
    ///
    /// let config = AuthConfig::default();
    /// let before = Verifier::new(&config).unwrap();
    /// let after = Verifier::new(&config).unwrap();
    /// after.keep_jwks_keys_of(&before);
    /// ```
    pub fn keep_jwks_keys_of(&self, previous: &Verifier) {
        let (Some(jwks), Some(before)) = (&self.jwks, &previous.jwks) else {
            return;
        };
        if !jwks.same_source(before) {
            return;
        }
        let fetched = previous
            .fetched
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if !fetched.is_empty() {
            self.install(KeySet::clone(&fetched));
        }
    }

    fn keys(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Verifies `token` (the text after `Bearer `), refreshing the JWKS first when the token
    /// names a key id nobody knows and the last refresh is older than `jwks.min_refresh`.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if let Ok(result) = self.verify_now(token) {
            return result;
        }
        self.refresh_early().await;
        match self.verify_now(token) {
            Ok(result) => result,
            Err(NeedsRefresh) if self.keys().is_empty() => Err(AuthError::Unavailable),
            Err(NeedsRefresh) => Err(AuthError::Invalid("unknown key id")),
        }
    }

    /// Refreshes the JWKS unless it was refreshed less than `min_refresh` ago (one fetch
    /// however many requests name the unknown key at once).
    async fn refresh_early(&self) {
        let Some(jwks) = &self.jwks else { return };
        jwks.fetch_early(|fetched| self.install(fetched)).await;
    }

    /// Verifies with the keys in force; `Err(NeedsRefresh)` when the token's `kid` is
    /// unknown and a JWKS could know it.
    pub(crate) fn verify_now(
        &self,
        token: &str,
    ) -> Result<Result<Identity, AuthError>, NeedsRefresh> {
        if token.len() > MAX_TOKEN_BYTES {
            return Ok(Err(AuthError::Invalid("the token is too large")));
        }
        let header = match decode_header(token) {
            Ok(h) => h,
            Err(_) => return Ok(Err(AuthError::Invalid("the token is malformed"))),
        };
        let keys = self.keys();
        if keys.is_empty() {
            // Nothing loaded yet (the JWKS was down at start): try it, rate-limited.
            return match self.jwks {
                Some(_) => Err(NeedsRefresh),
                None => Ok(Err(AuthError::Unavailable)),
            };
        }
        if let Some(kid) = header.kid.as_deref()
            && !keys.has_kid(kid)
        {
            return match self.jwks {
                Some(_) => Err(NeedsRefresh),
                None => Ok(Err(AuthError::Invalid("unknown key id"))),
            };
        }
        Ok(self.check(token, header.alg, header.kid.as_deref(), &keys))
    }

    fn check(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
        keys: &KeySet,
    ) -> Result<Identity, AuthError> {
        let mut outcome = AuthError::Invalid("the token's algorithm does not match the key");
        for key in keys.candidates(kid).filter(|k| k.alg == alg) {
            let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == key.alg) else {
                continue;
            };
            match decode::<Value>(token, &key.key, validation) {
                Ok(data) => return self.identity(data.claims, token),
                Err(e) => {
                    outcome = classify(e.kind());
                    // Another key with the same algorithm may have signed it (rotation
                    // without key ids); any other failure is final.
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        return Err(outcome);
                    }
                }
            }
        }
        Err(outcome)
    }

    fn identity(&self, claims: Value, token: &str) -> Result<Identity, AuthError> {
        if self.required.iter().any(|c| claims.get(c).is_none()) {
            return Err(AuthError::Invalid("the token lacks a required claim"));
        }
        Ok(Identity::new(claims, token.into()))
    }
}

/// The token names a key id the JWKS may have gained.
#[derive(Debug)]
pub(crate) struct NeedsRefresh;

fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::Invalid("the token is not valid yet"),
        ErrorKind::InvalidIssuer => AuthError::Invalid("the token's issuer is not accepted"),
        ErrorKind::InvalidAudience => AuthError::Invalid("the token's audience is not accepted"),
        ErrorKind::MissingRequiredClaim(_) => {
            AuthError::Invalid("the token lacks a required claim")
        }
        ErrorKind::InvalidSignature => AuthError::Invalid("the token's signature does not verify"),
        ErrorKind::InvalidAlgorithm => {
            AuthError::Invalid("the token's algorithm does not match the key")
        }
        _ => AuthError::Invalid("the token is malformed"),
    }
}

fn validations(config: &AuthConfig) -> Vec<(Algorithm, Validation)> {
    use Algorithm::*;
    let mut required: HashSet<String> = config
        .required_claims
        .iter()
        .filter(|c| SPEC_CLAIMS.contains(&c.as_str()))
        .cloned()
        .collect();
    required.insert("exp".to_owned());
    [
        HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
    .into_iter()
    .map(|alg| {
        let mut v = Validation::new(alg);
        v.leeway = config.leeway.as_secs();
        v.validate_nbf = true;
        v.required_spec_claims = required.clone();
        if config.issuer.is_empty() {
            v.iss = None;
        } else {
            v.set_issuer(&config.issuer);
            v.required_spec_claims.insert("iss".to_owned());
        }
        if config.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&config.audience);
            v.required_spec_claims.insert("aud".to_owned());
        }
        (alg, v)
    })
    .collect()
}
