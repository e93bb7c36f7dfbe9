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
    let mut fields = Map::new();
    if with_body {
        match read_object(body).await {
            Ok(object) => fields = object,
            Err(e) => return e.into_response(),
        }
    } else if let Some(query) = parts.uri.query() {
        match serde_urlencoded::from_str::<Vec<(String, String)>>(query) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    fields.insert(k, Value::String(v));
                }
            }
            Err(e) => {
                return Error::bad_request("INVALID_QUERY", format!("malformed query string: {e}"))
                    .into_response();
            }
        }
    }
    for (k, v) in path {
        fields.insert(k, Value::String(v));
    }
    let message = match decode::<M>(fields) {
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

/// Decodes a message; path and query values are strings, so a failure is retried with those
/// that look like numbers or booleans as such.
fn decode<M: DeserializeOwned>(fields: Map<String, Value>) -> Result<M, Error> {
    let typed: Map<String, Value> = fields.iter().map(|(k, v)| (k.clone(), coerce(v))).collect();
    let first = match serde_json::from_value::<M>(Value::Object(fields)) {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    serde_json::from_value::<M>(Value::Object(typed))
        .map_err(|_| Error::bad_request("INVALID_ARGUMENT", format!("invalid request: {first}")))
}

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
