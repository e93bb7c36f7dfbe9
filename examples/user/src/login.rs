//! `POST /v1/login`: demo credentials in, a signed token out.
//!
//! Demo only: every seeded user (`ada@example.com`, `grace@example.com`, `alan@example.com`)
//! logs in with the password `demo` and gets `users:read users:write`. A real service checks
//! a password hash or delegates to an identity provider; the token side stays the same.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use truss::auth::TokenIssuer;
use truss::{Error, JsonSchema};

use crate::DEMO_USERS;

/// The demo password of every seeded user.
pub const DEMO_PASSWORD: &str = "demo";

/// The login request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The user's email.
    pub email: String,
    /// The password.
    pub password: String,
}

/// The token, OAuth 2 style.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenReply {
    /// The bearer token.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
}

/// Checks the demo credentials and issues a token for the user.
#[truss::route(post, "/v1/login", auth = "public", rate_limit = 20)]
pub async fn login(
    #[state] issuer: Arc<TokenIssuer>,
    #[body] req: Login,
) -> Result<TokenReply, Error> {
    let known = DEMO_USERS.iter().any(|(_, email)| *email == req.email);
    if !known || req.password != DEMO_PASSWORD {
        return Err(Error::new(
            401,
            "BAD_CREDENTIALS",
            "unknown email or wrong password",
        ));
    }
    let token = issuer.issue(&req.email, json!({ "scope": "users:read users:write" }))?;
    Ok(TokenReply {
        token,
        token_type: "Bearer",
    })
}
