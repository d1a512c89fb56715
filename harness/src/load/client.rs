//! The HTTP client of the load engine: HTTP/1 over hyper's connection API with our own pool of
//! idle keep-alive connections per host.
//!
//! Our own pool rather than hyper-util's: a load generator only checks a connection out, sends
//! one request, reads the answer and puts it back, so the pool is a stack per host, and a
//! connection the target closed while idle is found (`ready` fails) before anything is sent on it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a new connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per host; more are closed when returned.
const MAX_IDLE_PER_HOST: usize = 4096;

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

type Conn = SendRequest<Full<Bytes>>;

/// A pooled HTTP/1 client for `http://` URLs; cheap to clone (clones share the pool).
#[derive(Clone, Default)]
pub struct HttpClient {
    idle: Arc<Mutex<HashMap<String, Vec<Conn>>>>,
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
    /// A client with an empty pool; connections open on demand and are kept for reuse.
    pub fn new() -> HttpClient {
        HttpClient::default()
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
        uri: Result<Uri, ClientError>,
        bearer: Option<&str>,
        json: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let uri = uri?;
        if uri.scheme_str() != Some("http") {
            return Err(ClientError::BadUrl(format!(
                "{uri}: only http:// is supported"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ClientError::BadUrl(format!("{uri}: no host")))?
            .as_str()
            .to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = Request::builder().method(method).uri(path);
        let headers = req.headers_mut().expect("a fresh builder has headers");
        headers.insert(
            HOST,
            HeaderValue::from_str(&authority).map_err(|e| ClientError::BadUrl(e.to_string()))?,
        );
        if let Some(k) = bearer {
            let v = HeaderValue::from_str(&format!("Bearer {k}"))
                .map_err(|_| ClientError::BadUrl("the API key is not a valid header".into()))?;
            headers.insert(AUTHORIZATION, v);
        }
        let body = match json {
            Some(b) => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Full::new(Bytes::from(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|e| ClientError::BadUrl(e.to_string()))?;
        let mut conn = self.checkout(&authority).await?;
        let resp = conn
            .send_request(req)
            .await
            .map_err(|e| ClientError::Connection(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?
            .to_bytes();
        self.checkin(authority, conn);
        Ok(Answer { status, body })
    }

    /// An idle connection to `authority` that is ready for a request, or a new one.
    async fn checkout(&self, authority: &str) -> Result<Conn, ClientError> {
        loop {
            let idle = self
                .idle
                .lock()
                .expect("pool lock")
                .get_mut(authority)
                .and_then(Vec::pop);
            let Some(mut conn) = idle else { break };
            // A connection the server closed while idle fails here, before anything is sent.
            if conn.ready().await.is_ok() {
                return Ok(conn);
            }
        }
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority))
                .await
                .map_err(|_| ClientError::Connection(format!("connect to {authority}: timed out")))?
                .map_err(|e| ClientError::Connection(format!("connect to {authority}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (conn, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Connection(error_chain(&e)))?;
        // The driver ends when the connection closes; its error reaches the request instead.
        tokio::spawn(async move {
            let _ = driver.await;
        });
        Ok(conn)
    }

    fn checkin(&self, authority: String, conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(authority).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(conn);
        }
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
