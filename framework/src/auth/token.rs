//! This service's own tokens: issued at login, or minted as a client credential for calls to
//! other services; and the client layer that sends them (or forwards the caller's).

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request, header};
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header, encode};
use serde_json::{Map, Value, json};
use tower_layer::Layer;
use tower_service::Service;

use super::Identity;
use super::config::TokenConfig;
use super::keys::{algorithm, key_material};
use crate::section::ValidationError;

/// Signs tokens with `[auth.token]`'s key.
///
/// ```
/// use truss::auth::{TokenConfig, TokenIssuer};
///
/// let config: TokenConfig = serde_json::from_value(serde_json::json!({
///     "alg": "HS256", "secret": "demo-secret", "ttl": "5m"
/// })).unwrap();
/// let issuer = TokenIssuer::new(&config, "user").unwrap();
/// let token = issuer.issue("ada", serde_json::json!({"scope": "users:write"})).unwrap();
/// assert_eq!(token.split('.').count(), 3);
/// ```
pub struct TokenIssuer {
    alg: Algorithm,
    kid: Option<String>,
    key: EncodingKey,
    ttl: Duration,
    issuer: String,
    audience: Vec<String>,
    scope: Option<String>,
    cached: Mutex<Option<(Arc<str>, u64)>>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenIssuer {
    /// An issuer for `[auth.token]`; `service` is the default `iss` and the `sub` of service
    /// tokens. Reads the key file, if any.
    pub fn new(config: &TokenConfig, service: &str) -> Result<Self, ValidationError> {
        let within = |e: ValidationError| e.within("auth.token");
        let alg = algorithm(&config.key.alg).map_err(within)?;
        let bytes = key_material(&config.key).map_err(within)?;
        let key = match alg.family() {
            AlgorithmFamily::Hmac => EncodingKey::from_secret(&bytes),
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&bytes),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&bytes),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&bytes),
        }
        .map_err(|e| {
            ValidationError::new(
                "auth.token.pem_file",
                format!("not a private key for {:?}: {e}", alg),
            )
        })?;
        Ok(Self {
            alg,
            kid: config.key.kid.clone(),
            key,
            ttl: config.ttl,
            issuer: config.issuer.clone().unwrap_or_else(|| service.to_owned()),
            audience: config.audience.clone(),
            scope: config.scope.clone(),
            cached: Mutex::new(None),
        })
    }

    /// A token for `subject` with `extra` claims (an object; `scope`, `roles`, a tenant...),
    /// valid for the configured `ttl`. `iss`, `iat`, `exp` (and `aud` when configured) are
    /// set here.
    pub fn issue(&self, subject: &str, extra: Value) -> Result<String, crate::Error> {
        let mut claims = match extra {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => {
                return Err(crate::Error::internal(
                    "INVALID_CLAIMS",
                    "token claims must be a JSON object",
                ));
            }
        };
        let iat = now();
        claims.insert("sub".into(), json!(subject));
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("iat".into(), json!(iat));
        claims.insert("exp".into(), json!(iat + self.ttl.as_secs().max(1)));
        if !self.audience.is_empty() {
            claims.insert("aud".into(), json!(self.audience));
        }
        let mut header = Header::new(self.alg);
        header.kid.clone_from(&self.kid);
        encode(&header, &claims, &self.key).map_err(|e| {
            crate::Error::internal(
                "TOKEN_SIGNING_FAILED",
                format!("signing a token failed: {e}"),
            )
        })
    }

    /// This service's own token (`sub` = the service), reused until a fifth of its lifetime
    /// is left.
    pub fn service_token(&self) -> Result<Arc<str>, crate::Error> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now();
        if let Some((token, renew_at)) = cached.as_ref()
            && now < *renew_at
        {
            return Ok(token.clone());
        }
        let extra = match &self.scope {
            Some(scope) => json!({ "scope": scope }),
            None => Value::Null,
        };
        let token: Arc<str> = self.issue(&self.issuer, extra)?.into();
        *cached = Some((token.clone(), now + self.ttl.as_secs() * 4 / 5));
        Ok(token)
    }
}

/// What a client sends as `authorization` on its calls.
#[derive(Debug, Clone, Default)]
pub enum ClientAuth {
    /// Nothing (the default).
    #[default]
    None,
    /// The token of the request being served, when there is one.
    Forward,
    /// This service's own token from [`TokenIssuer::service_token`].
    Service(Arc<TokenIssuer>),
    /// The caller's token when serving a request with one, else this service's own.
    ForwardOrService(Arc<TokenIssuer>),
}

impl ClientAuth {
    fn header(&self, identity: Option<&Identity>) -> Option<HeaderValue> {
        let token: Arc<str> = match (self, identity) {
            (Self::None, _) => return None,
            (Self::Forward | Self::ForwardOrService(_), Some(who)) => who.token().into(),
            (Self::Forward, None) => return None,
            (Self::Service(issuer) | Self::ForwardOrService(issuer), _) => {
                match issuer.service_token() {
                    Ok(token) => token,
                    Err(e) => {
                        tracing::warn!(error = %e, "no service token for an outgoing call");
                        return None;
                    }
                }
            }
        };
        HeaderValue::try_from(format!("Bearer {token}"))
            .ok()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
    }
}

/// Client side: sets `authorization` per [`ClientAuth`] on calls that have none.
#[derive(Debug, Clone, Default)]
pub struct ClientAuthLayer {
    auth: ClientAuth,
}

impl ClientAuthLayer {
    /// A layer sending what `auth` says.
    pub fn new(auth: ClientAuth) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for ClientAuthLayer {
    type Service = ClientAuthService<S>;

    fn layer(&self, inner: S) -> ClientAuthService<S> {
        ClientAuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service built by [`ClientAuthLayer`].
#[derive(Debug, Clone)]
pub struct ClientAuthService<S> {
    inner: S,
    auth: ClientAuth,
}

impl<S, B> Service<Request<B>> for ClientAuthService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !matches!(self.auth, ClientAuth::None)
            && !req.headers().contains_key(header::AUTHORIZATION)
        {
            let from_request = req.extensions().get::<Arc<Identity>>().cloned();
            let identity = from_request.or_else(Identity::current);
            if let Some(value) = self.auth.header(identity.as_deref()) {
                req.headers_mut().insert(header::AUTHORIZATION, value);
            }
        }
        self.inner.call(req)
    }
}
