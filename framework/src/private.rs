//! Support for the code the macros generate. Not a public API: names and signatures change
//! without notice.

use std::future::Future;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, RawPathParams, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use crate::auth::{Declared, DeclaredRoute, StaticPolicy};
pub use crate::openapi::{
    Handler as DocHandler, RouteDoc, SchemaFn, Source as DocSource, mount as doc_mount,
    schema as doc_schema,
};
pub use inventory;

use crate::Error;
use crate::grpc::Context;
use crate::validate::Validate;

/// Largest HTTP/JSON body `http_routes` reads.
const BODY_LIMIT: usize = 4 << 20;

/// Autoref specialisation: validates `T` when it implements [`Validate`], else does nothing.
pub struct Probe<'a, T>(pub &'a T);

/// Chosen when `T: Validate`.
pub trait ViaValidate {
    /// Validates.
    fn __truss_validate(&self) -> Result<(), Error>;
}

impl<T: Validate> ViaValidate for Probe<'_, T> {
    fn __truss_validate(&self) -> Result<(), Error> {
        self.0.validate().map_err(Error::invalid)
    }
}

/// The fallback for types without [`Validate`].
pub trait ViaNothing {
    /// Does nothing.
    fn __truss_validate(&self) -> Result<(), Error>;
}

impl<T> ViaNothing for &Probe<'_, T> {
    fn __truss_validate(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// A malformed path parameter.
pub fn path_rejection(e: PathRejection) -> Response {
    Error::new(e.status().as_u16(), "INVALID_PATH", e.body_text()).into_response()
}

/// A malformed query string.
pub fn query_rejection(e: QueryRejection) -> Response {
    Error::new(e.status().as_u16(), "INVALID_QUERY", e.body_text()).into_response()
}

/// A missing, unreadable or malformed JSON body.
pub fn json_rejection(e: JsonRejection) -> Response {
    Error::new(e.status().as_u16(), "INVALID_BODY", e.body_text()).into_response()
}

/// An error as a response.
pub fn error_response(e: Error) -> Response {
    e.into_response()
}

/// Any error type the handlers may return, as an [`Error`](struct@Error).
pub fn into_error<E: Into<Error>>(e: E) -> Error {
    e.into()
}

/// Any error type the rpc methods may return, as a gRPC status.
pub fn to_status<E: Into<Error>>(e: E) -> tonic::Status {
    e.into().to_status()
}

/// A handler's result as a response: JSON with `status`, or the error.
pub fn reply<T: Serialize, E: Into<Error>>(status: u16, result: Result<T, E>) -> Response {
    let value = match result {
        Ok(v) => v,
        Err(e) => return e.into().into_response(),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    match serde_json::to_vec(&value) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => Error::internal("ENCODE_FAILED", format!("could not encode the reply: {e}"))
            .into_response(),
    }
}

/// Serves one rpc over HTTP/JSON: the message from path parameters, the query (without a
/// body) and the JSON body, then `call`, then the reply as JSON.
pub async fn bridge<M, T, F, Fut>(request: Request, with_body: bool, call: F) -> Response
where
    M: DeserializeOwned + Send,
    T: Serialize,
    F: FnOnce(M, Context) -> Fut + Send,
    Fut: Future<Output = Result<T, Error>> + Send,
{
    let (mut parts, body) = request.into_parts();
    let path: Vec<(String, String)> = match RawPathParams::from_request_parts(&mut parts, &()).await
    {
        Ok(params) => params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        Err(e) => {
            return Error::new(e.status().as_u16(), "INVALID_PATH", e.body_text()).into_response();
        }
    };
    let decoded = if with_body {
        match read_object(body).await {
            Ok(object) => decode_json::<M>(object, path),
            Err(e) => Err(e),
        }
    } else {
        decode_query::<M>(parts.uri.query().unwrap_or_default(), path)
    };
    let message = match decoded {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let ctx = Context::from_http(parts);
    reply(200, call(message, ctx).await)
}

async fn read_object(body: Body) -> Result<Map<String, Value>, Error> {
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|e| Error::new(413, "INVALID_BODY", format!("could not read the body: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Error::bad_request(
            "INVALID_BODY",
            "the body must be a JSON object",
        )),
        Err(e) => Err(Error::bad_request(
            "INVALID_BODY",
            format!("malformed JSON body: {e}"),
        )),
    }
}

/// Decodes a message from the query string and path parameters (path wins), each field
/// parsed as the type it has.
fn decode_query<M: DeserializeOwned>(query: &str, path: Vec<(String, String)>) -> Result<M, Error> {
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| Error::bad_request("INVALID_QUERY", format!("malformed query string: {e}")))?;
    pairs.retain(|(k, _)| !path.iter().any(|(p, _)| p == k));
    pairs.extend(path);
    let encoded = serde_urlencoded::to_string(&pairs)
        .map_err(|e| Error::bad_request("INVALID_QUERY", e.to_string()))?;
    serde_urlencoded::from_str::<M>(&encoded).map_err(|e| {
        // Name the field: the first pair that fails on its own.
        let field = pairs.iter().find(|pair| {
            serde_urlencoded::to_string([pair])
                .is_ok_and(|one| serde_urlencoded::from_str::<M>(&one).is_err())
        });
        match field {
            Some((k, v)) => Error::bad_request(
                "INVALID_ARGUMENT",
                format!("invalid request: {k}={v:?}: {e}"),
            )
            .with_metadata(k.clone(), e.to_string()),
            None => Error::bad_request("INVALID_ARGUMENT", format!("invalid request: {e}")),
        }
    })
}

/// Decodes a message from a JSON body and path parameters (path wins). Path values are
/// strings; those that look like numbers or booleans may be meant as such. Each combination
/// of "as typed" and "as string" for those is tried, all typed first (at most
/// [`MAX_AMBIGUOUS_PATH`] of them vary; past that, all typed or all strings).
fn decode_json<M: DeserializeOwned>(
    fields: Map<String, Value>,
    path: Vec<(String, String)>,
) -> Result<M, Error> {
    let ambiguous: Vec<bool> = path
        .iter()
        .map(|(_, v)| !coerce(&Value::String(v.clone())).is_string())
        .collect();
    let n = ambiguous.iter().filter(|a| **a).count();
    // Bit i of an attempt: the i-th ambiguous value is passed typed. All ones come first.
    let attempts: Vec<u32> = if n <= MAX_AMBIGUOUS_PATH {
        (0..1u32 << n).rev().collect()
    } else {
        vec![u32::MAX, 0]
    };
    let mut first = None;
    for attempt in attempts {
        let mut message = fields.clone();
        let mut bit = 0;
        for ((k, v), &ambiguous) in path.iter().zip(&ambiguous) {
            let value = Value::String(v.clone());
            let typed = ambiguous && (attempt >> bit.min(31)) & 1 == 1;
            bit += usize::from(ambiguous);
            message.insert(k.clone(), if typed { coerce(&value) } else { value });
        }
        match serde_json::from_value::<M>(Value::Object(message)) {
            Ok(m) => return Ok(m),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    let first = first.map_or_else(String::new, |e| e.to_string());
    let error = Error::bad_request("INVALID_ARGUMENT", format!("invalid request: {first}"));
    // serde names an unknown field (the proto3 mapping rejects them): say which.
    let unknown = first
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field.to_owned());
    Err(match unknown {
        Some(field) => error.with_metadata(field, "unknown field"),
        None => error,
    })
}

/// How many ambiguous path values [`decode_json`] tries both ways (2^N decodes at most, and
/// only for a request that does not decode at once).
const MAX_AMBIGUOUS_PATH: usize = 4;

fn coerce(v: &Value) -> Value {
    let Value::String(s) = v else {
        return v.clone();
    };
    if let Ok(i) = s.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(u) = s.parse::<u64>() {
        return Value::from(u);
    }
    match s.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map_or_else(|| v.clone(), Value::from),
    }
}
