//! The error model in the document: the body every error has, and the statuses the
//! framework's own layers answer with.

use serde_json::{Map, Value, json};

/// `components.schemas.Error`: the JSON body of every error response.
pub(super) fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "Every error: an HTTP-style code, a machine-readable reason, a message \
                        for people and string metadata.",
        "properties": {
            "code": {"type": "integer", "description": "The HTTP status."},
            "reason": {"type": "string", "description": "Machine-readable, e.g. RATE_LIMITED."},
            "message": {"type": "string"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["code", "reason", "message"],
    })
}

/// The statuses any route may answer with besides its success, by who sends them.
const FRAMEWORK: &[(&str, &str)] = &[
    (
        "400",
        "INVALID_TIMEOUT (a malformed grpc-timeout), INVALID_ARGUMENT, INVALID_BODY, \
         INVALID_QUERY, INVALID_PATH: the request cannot be read.",
    ),
    ("413", "The body is larger than the server accepts."),
    (
        "429",
        "RATE_LIMITED: a rate limit; Retry-After says when to try again.",
    ),
    (
        "500",
        "INTERNAL: the handler failed or panicked (the process lives on).",
    ),
    (
        "503",
        "OVERLOADED (in-flight limit or load shedding) or CIRCUIT_OPEN (the route's breaker).",
    ),
    (
        "504",
        "DEADLINE_EXCEEDED: the route's timeout or the caller's deadline passed.",
    ),
];

/// Statuses of a protected route when `[auth]` is on.
const AUTH: &[(&str, &str)] = &[
    (
        "401",
        "TOKEN_MISSING, TOKEN_EXPIRED or TOKEN_INVALID (WWW-Authenticate says which).",
    ),
    (
        "403",
        "INSUFFICIENT_SCOPE: the token lacks the route's scope.",
    ),
];

/// The error responses of one operation, `default` included (the handler's own errors).
pub(super) fn responses(protected: bool) -> Map<String, Value> {
    let mut out = Map::new();
    let auth = if protected { AUTH } else { &[] };
    for (status, description) in FRAMEWORK.iter().chain(auth) {
        out.insert((*status).to_owned(), error(description));
    }
    out.insert(
        "default".to_owned(),
        error("An error the handler returned (NOT_FOUND, ALREADY_EXISTS, ...)."),
    );
    out
}

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    })
}
