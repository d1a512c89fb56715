//! A client of the admin fault API (`/admin/faults`), spoken by the reference server and by the
//! fault proxy alike: inject, list, revert one, revert all, with a bearer admin token.
//!
//! One connection per call: faults are injected a few times per run, so there is nothing to pool,
//! and a fresh connection never trips over one the target closed.

use crate::api::{FaultList, InjectRequest, InjectedFault};
use crate::fault::FaultSpec;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::time::Duration;

/// How long one admin call may take, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminError {
    /// The admin endpoint could not be reached or did not answer in time.
    Unreachable(String),
    /// It answered with an error status; `code` and `message` come from its
    /// `{"error": {"code", "message"}}` body.
    Refused {
        /// HTTP status.
        status: u16,
        /// Machine-readable code (`unauthorized`, `invalid_fault`, `unsupported_fault`, ...).
        code: String,
        /// What the target said.
        message: String,
    },
    /// It answered 2xx with a body that is not the expected document.
    BadAnswer(String),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Unreachable(m) => write!(f, "admin API unreachable: {m}"),
            AdminError::Refused {
                status,
                code,
                message,
            } => write!(f, "admin API refused ({status} {code}): {message}"),
            AdminError::BadAnswer(m) => write!(f, "admin API answered unexpectedly: {m}"),
        }
    }
}

impl std::error::Error for AdminError {}

/// A client of one admin endpoint.
#[derive(Clone)]
pub struct AdminClient {
    base: String,
    token: String,
}

impl fmt::Debug for AdminClient {
    // The token must not reach a log through a `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl AdminClient {
    /// A client of the admin API at `base` (`http://127.0.0.1:9091`, no trailing slash) that
    /// sends `token` as a bearer token.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> AdminClient {
        AdminClient {
            base: base.into().trim_end_matches('/').to_owned(),
            token: token.into(),
        }
    }

    /// The endpoint's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Injects `spec`; the answer carries the fault's id and expiry.
    pub async fn inject(&self, spec: &FaultSpec) -> Result<InjectedFault, AdminError> {
        let body = serde_json::to_vec(&InjectRequest {
            fault: spec.clone(),
        })
        .map_err(|e| AdminError::BadAnswer(e.to_string()))?;
        self.call(Method::POST, "/admin/faults", Some(body)).await
    }

    /// The active faults.
    pub async fn list(&self) -> Result<FaultList, AdminError> {
        self.call(Method::GET, "/admin/faults", None).await
    }

    /// Reverts the fault `id`; the answer lists the faults still active.
    pub async fn revert(&self, id: &str) -> Result<FaultList, AdminError> {
        self.call(Method::DELETE, &format!("/admin/faults/{id}"), None)
            .await
    }

    /// Reverts every fault; the answer lists the faults still active (none, normally).
    pub async fn revert_all(&self) -> Result<FaultList, AdminError> {
        self.call(Method::DELETE, "/admin/faults", None).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, AdminError> {
        let url = format!("{}{path}", self.base);
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, self.exchange(method, &url, body))
            .await
            .map_err(|_| {
                AdminError::Unreachable(format!("{url}: no answer in {CALL_TIMEOUT:?}"))
            })??;
        if !(200..300).contains(&status) {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let text = |k: &str| v["error"][k].as_str().map(str::to_owned);
            return Err(AdminError::Refused {
                status,
                code: text("code").unwrap_or_else(|| "unknown".into()),
                message: text("message")
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect()),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| AdminError::BadAnswer(format!("{url}: {e}")))
    }

    async fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), AdminError> {
        let bad = |m: String| AdminError::Unreachable(format!("{url}: {m}"));
        let uri: Uri = url.parse().map_err(|e| bad(format!("bad URL: {e}")))?;
        let authority = uri
            .authority()
            .ok_or_else(|| bad("no host".into()))?
            .as_str()
            .to_owned();
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| bad(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &authority);
        let token = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|_| bad("the admin token is not a valid header value".into()))?;
        req = req.header(AUTHORIZATION, token);
        let body = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| bad(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| bad(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }
}
