//! Verification keys: from config (secrets, PEM files) and from a JWKS document. Each key
//! carries its algorithm; a token's `alg` only has to agree with it.

use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use super::config::KeyConfig;
use crate::section::ValidationError;

/// One verification key and the one algorithm it verifies.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

/// The keys in force; a few at most, searched in order.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub(crate) fn new(keys: Vec<Key>) -> Self {
        Self { keys }
    }

    /// The keys a token may be signed with: those with its `kid`, or every key for a token
    /// without one (the caller then keeps those of the token's algorithm).
    pub(crate) fn candidates<'a>(&'a self, kid: Option<&'a str>) -> impl Iterator<Item = &'a Key> {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.as_deref() == kid)
    }

    pub(crate) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// These keys followed by `other`'s.
    pub(crate) fn merged(&self, other: &KeySet) -> KeySet {
        let mut keys = self.keys.clone();
        keys.extend(other.keys.iter().cloned());
        KeySet { keys }
    }
}

/// The algorithm named in config.
pub(crate) fn algorithm(name: &str) -> Result<Algorithm, ValidationError> {
    Algorithm::from_str(name)
        .map_err(|_| ValidationError::new("alg", format!("unknown algorithm `{name}`")))
}

/// The bytes of a key's secret or PEM file.
pub(crate) fn key_material(config: &KeyConfig) -> Result<Vec<u8>, ValidationError> {
    if let Some(secret) = &config.secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let (field, path) = match (&config.secret_file, &config.pem_file) {
        (Some(path), _) => ("secret_file", path),
        (None, Some(path)) => ("pem_file", path),
        (None, None) => return Err(ValidationError::new("secret", "no key material")),
    };
    let mut bytes = std::fs::read(path)
        .map_err(|e| ValidationError::new(field, format!("cannot read {}: {e}", path.display())))?;
    if field == "secret_file" {
        while bytes.last().is_some_and(u8::is_ascii_whitespace) {
            bytes.pop();
        }
    }
    Ok(bytes)
}

/// A verification key from config.
pub(crate) fn from_config(config: &KeyConfig) -> Result<Key, ValidationError> {
    let alg = algorithm(&config.alg)?;
    let bytes = key_material(config)?;
    let parsed = match alg.family() {
        AlgorithmFamily::Hmac => DecodingKey::from_secret(&bytes),
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&bytes),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&bytes),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&bytes),
    };
    let key = parsed.map_err(|e| {
        let field = if config.pem_file.is_some() {
            "pem_file"
        } else {
            "secret"
        };
        ValidationError::new(field, format!("not a {:?} key: {e}", alg.family()))
    })?;
    Ok(Key {
        kid: config.kid.clone(),
        alg,
        key,
    })
}

/// The usable keys of a JWKS document, and how many were skipped. Symmetric (`oct`) keys
/// are skipped: a published secret is no secret. A key without `alg` gets the one its type
/// implies (RSA: RS256, P-256: ES256, P-384: ES384, Ed25519: EdDSA).
pub(crate) fn from_jwks(body: &[u8]) -> Result<(KeySet, usize), String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err("no `keys` array".to_owned());
    };
    let mut keys = Vec::new();
    let mut skipped = 0;
    for entry in entries {
        match serde_json::from_value::<Jwk>(entry.clone())
            .ok()
            .and_then(|jwk| from_jwk(&jwk))
        {
            Some(key) => keys.push(key),
            None => skipped += 1,
        }
    }
    Ok((KeySet::new(keys), skipped))
}

fn from_jwk(jwk: &Jwk) -> Option<Key> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(named) => Algorithm::try_from(named).ok()?,
        None => implied,
    };
    if alg.family() != implied.family() {
        return None;
    }
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}
