//! The JSON form of an [`Error`](struct@super::Error) on HTTP.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::Error;

#[derive(Serialize, Deserialize)]
struct Body<'a> {
    code: u16,
    #[serde(default, borrow)]
    reason: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    message: std::borrow::Cow<'a, str>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

impl Error {
    /// The JSON body sent on HTTP.
    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            code: self.http_status().as_u16(),
            reason: self.reason.as_str().into(),
            message: self.message.as_str().into(),
            metadata: self.metadata.clone(),
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Reads an error back from an HTTP response: the JSON body truss sends, or — from a
    /// server that sends something else — the status with the body as the message.
    ///
    /// ```
    /// use http::StatusCode;
    ///
    /// let body = br#"{"code":404,"reason":"USER_NOT_FOUND","message":"no user 7","metadata":{}}"#;
    /// let err = truss::Error::from_http(StatusCode::NOT_FOUND, body);
    /// assert!(err.is("USER_NOT_FOUND"));
    ///
    /// let err = truss::Error::from_http(StatusCode::BAD_GATEWAY, b"upstream went away");
    /// assert_eq!((err.code(), err.message()), (502, "upstream went away"));
    /// ```
    pub fn from_http(status: StatusCode, body: &[u8]) -> Self {
        match serde_json::from_slice::<Body<'_>>(body) {
            Ok(b) => Self {
                code: status.as_u16(),
                reason: b.reason.into_owned(),
                message: b.message.into_owned(),
                metadata: b.metadata,
            },
            Err(_) => Self::new(
                status.as_u16(),
                "",
                String::from_utf8_lossy(body).trim().to_owned(),
            ),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut response = (self.http_status(), self.to_json()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let err = Error::not_found("USER_NOT_FOUND", "no user 7").with_metadata("id", "7");
        let back = Error::from_http(err.http_status(), &err.to_json());
        assert_eq!(back, err);
    }

    #[test]
    fn response_is_json_with_the_status() {
        let response = Error::too_many_requests("SLOW_DOWN", "later").into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
