//! The one error shape of the HTTP API: `{"error": {"code", "message", ...}}` with a fitting status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};

/// An API error: status, a stable machine code, a human message, and optional details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable code clients switch on (`rate_limited`, `gpu_oom`, ...).
    pub code: &'static str,
    /// What happened, for people.
    pub message: String,
    /// Seconds to wait before retrying (429 and 503), sent as `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// Extra fields merged into the error object (the safety stage and category of a block).
    #[serde(skip)]
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_seconds: None,
            details: None,
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Adds a `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds.max(1));
        self
    }

    /// Adds detail fields.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut obj = json!({"code": self.code, "message": self.message});
        if let Some(s) = self.retry_after_seconds {
            obj["retry_after_seconds"] = json!(s);
        }
        if let Some(Value::Object(extra)) = &self.details {
            for (k, v) in extra {
                obj[k] = v.clone();
            }
        }
        json!({ "error": obj })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after_seconds {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_code_message_and_details() {
        let e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "content_blocked", "no")
            .with_details(json!({"stage": "pre", "category": "nsfw"}));
        let b = e.body();
        assert_eq!(b["error"]["code"], "content_blocked");
        assert_eq!(b["error"]["stage"], "pre");
        assert_eq!(b["error"]["category"], "nsfw");
        let r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
            .retry_after(0)
            .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
