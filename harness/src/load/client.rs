//! The HTTP client of the load engine: hyper over a pooled HTTP/1 connector.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Why no HTTP answer arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The URL could not be used.
    BadUrl(String),
    /// Connecting, sending or reading failed.
    Connection(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::BadUrl(m) => write!(f, "bad URL: {m}"),
            ClientError::Connection(m) => write!(f, "connection: {m}"),
        }
    }
}

/// A pooled HTTP/1 client; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Bytes,
}

impl HttpClient {
    /// A client keeping idle connections for reuse (open-model bursts reuse them).
    pub fn new() -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4096)
            .build(connector);
        HttpClient { inner }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        bearer: Option<&str>,
        json: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let uri = url
            .parse()
            .map_err(|e| ClientError::BadUrl(format!("{url}: {e}")));
        self.send_uri(method, uri, bearer, json).await
    }

    /// Sends one request to an already parsed URI and reads the whole answer.
    pub async fn send_uri(
        &self,
        method: Method,
        uri: Result<hyper::Uri, ClientError>,
        bearer: Option<&str>,
        json: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let mut req = Request::builder().method(method).uri(uri?);
        if let Some(k) = bearer {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let body = match json {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|e| ClientError::BadUrl(e.to_string()))?;
        let resp = self
            .inner
            .request(req)
            .await
            .map_err(|e| ClientError::Connection(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
