//! The upstream: its base URL and the forwarding of one request to it.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, CONNECTION, HOST, TRANSFER_ENCODING, UPGRADE};
use hyper::http::uri::Authority;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// How long connecting to the upstream may take before the request is answered 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle upstream connections are kept this long for reuse.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1): never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Where requests go, and the pooled client that takes them there.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    authority: Authority,
    /// Path prefix of the base URL, without its trailing `/` (often empty).
    prefix: String,
    client: Client<HttpConnector, Incoming>,
}

impl Upstream {
    /// Parses `http://host:port[/prefix]`; the error says what is wrong with it.
    pub fn parse(base: &str) -> Result<Upstream, String> {
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("{base:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "{base:?}: scheme {other:?} is not supported (only http)"
                ))
            }
            None => return Err(format!("{base:?}: expected http://host:port")),
        }
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .cloned()
            .ok_or_else(|| format!("{base:?}: no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "{base:?}: credentials in the URL are not supported"
            ));
        }
        if uri.query().is_some() {
            return Err(format!("{base:?}: a base URL takes no query"));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let mut connector = HttpConnector::new();
        // Nagle's algorithm would add tens of ms to small writes: latency must be what is asked.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Upstream {
            authority,
            prefix,
            client,
        })
    }

    /// The base URL, normalized.
    pub fn base(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }

    /// Sends `req` upstream (same method, path, query, headers and streamed body, hop-by-hop
    /// headers dropped, `Host` set to the upstream's) and answers the upstream's response with
    /// its hop-by-hop headers dropped; the error says why there is none.
    pub async fn forward(&self, req: Request<Incoming>) -> Result<Response<Incoming>, String> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("http://{}{}{}", self.authority, self.prefix, path);
        parts.uri = uri
            .parse()
            .map_err(|e| format!("cannot build the upstream URL {uri:?}: {e}"))?;
        strip_hop_by_hop(&mut parts.headers);
        // The client sets Host from the URL; the client's Host named the proxy.
        parts.headers.remove(HOST);
        let mut resp = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(|e| format!("upstream {}: {}", self.base(), chain(&e)))?;
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp)
    }
}

/// Removes the hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    // hyper frames the body itself on each side.
    headers.remove(TRANSFER_ENCODING);
    headers.remove(UPGRADE);
}

/// An error with its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[tokio::test]
    async fn parses_base_urls() {
        let u = Upstream::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(u.base(), "http://127.0.0.1:8080");
        let u = Upstream::parse("http://localhost:9/api/").unwrap();
        assert_eq!(u.base(), "http://localhost:9/api");
        for bad in [
            "127.0.0.1:8080",
            "https://x:1",
            "http://",
            "not a url",
            "http://x:1/?a=b",
            "http://u:p@x:1",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn drops_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
