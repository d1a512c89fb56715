//! JSON answers in the admin API's error shape, `{"error": {"code", "message"}}`.

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// A JSON document answered with `status`.
pub(crate) fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Bytes> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Bytes::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An error answer: `{"error": {"code": code, "message": message}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response<Bytes> {
    json(
        status,
        &serde_json::json!({ "error": { "code": code, "message": message } }),
    )
}
