//! The fault proxy: a reverse proxy that injects network and HTTP faults in front of any HTTP/1
//! target, with toxiproxy's names and semantics.
//!
//! Requests (any method, path, headers, streamed body; keep-alive) are forwarded to the upstream
//! and answers streamed back. The proxy-side [`FaultKind`](crate::FaultKind)s act on them:
//!
//! | kind | effect |
//! |---|---|
//! | `latency` | each response (its head, then each body chunk) is held `ms ± jitter_ms` after it arrives from the upstream |
//! | `bandwidth` | each response body is paced to `kbps` × 1000 bytes/s (headers are not counted) |
//! | `timeout` | the request is forwarded but no answer comes; the connection is closed after `ms` (0: when the fault ends) |
//! | `reset_peer` | the request is forwarded but no answer comes; the connection is reset (TCP RST) after `after_ms` |
//! | `slow_close` | closing the connection is put off by `delay_ms` |
//! | `http_error` | with `probability`, the request is answered `status` without being forwarded |
//!
//! Faults are drawn per request when it arrives (`bandwidth` is looked up again for every
//! chunk, `slow_close` when the connection closes). Several may be active together; they compose
//! as a chain of toxics: latencies and slow closes add, the narrowest bandwidth wins, the first
//! `http_error` drawn answers. Every fault expires on its own after its `duration_ms`.
//!
//! Faults are managed in-process through [`ProxyHandle`], or over HTTP through the control API
//! (the reference server's admin API, on its own loopback listener), which
//! [`AdminClient`](crate::AdminClient) speaks.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use chaos::proxy::Proxy;
//! use chaos::{FaultKind, FaultSpec};
//!
//! let proxy = Proxy::new("http://127.0.0.1:8080", "token").start().await?;
//! proxy.inject(FaultSpec {
//!     name: "slow".into(),
//!     fault: FaultKind::Latency { ms: 200, jitter_ms: 20 },
//!     duration_ms: 30_000,
//! })?;
//! // ... send traffic to proxy.url() ...
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod auth;
mod body;
mod conn;
mod control;
mod effects;
mod reply;
mod request;
mod signal;
mod table;
mod upstream;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::api::{FaultList, InjectedFault};
use crate::error::FaultError;
use crate::fault::FaultSpec;
use table::stopping;

pub use signal::run_until_signal;
pub use table::MAX_ACTIVE_FAULTS;

/// The configuration of a fault proxy; [`start`](Proxy::start) runs it.
#[derive(Clone)]
pub struct Proxy {
    upstream: String,
    token: String,
    listen: SocketAddr,
    control_listen: SocketAddr,
    allow_remote_control: bool,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.upstream)
            .field("token", &"<redacted>")
            .field("listen", &self.listen)
            .field("control_listen", &self.control_listen)
            .field("allow_remote_control", &self.allow_remote_control)
            .finish()
    }
}

impl Proxy {
    /// A proxy in front of `upstream` (`http://host:port`, optionally with a path prefix) whose
    /// control API requires the bearer `token`. It listens on 127.0.0.1 with a free port, and its
    /// control API too.
    pub fn new(upstream: impl Into<String>, token: impl Into<String>) -> Proxy {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Proxy {
            upstream: upstream.into(),
            token: token.into(),
            listen: loopback,
            control_listen: loopback,
            allow_remote_control: false,
        }
    }

    /// Where the proxy accepts traffic (default `127.0.0.1:0`, a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Proxy {
        self.listen = addr;
        self
    }

    /// Where the control API listens (default `127.0.0.1:0`). A non-loopback address is
    /// refused by [`start`](Proxy::start) unless [`allow_remote_control`](Proxy::allow_remote_control).
    pub fn control_listen(mut self, addr: SocketAddr) -> Proxy {
        self.control_listen = addr;
        self
    }

    /// Allows a control address that is not loopback (anyone who reaches it and holds the
    /// token can break the traffic).
    pub fn allow_remote_control(mut self, allow: bool) -> Proxy {
        self.allow_remote_control = allow;
        self
    }

    /// Binds both listeners and starts serving; the handle manages faults and stops the proxy.
    /// Must be called within a Tokio runtime.
    pub async fn start(self) -> Result<ProxyHandle, ProxyError> {
        let upstream = upstream::Upstream::parse(&self.upstream).map_err(ProxyError::Upstream)?;
        if self.token.trim().is_empty() {
            return Err(ProxyError::Token("the admin token is empty".into()));
        }
        if hyper::header::HeaderValue::from_str(&format!("Bearer {}", self.token)).is_err() {
            return Err(ProxyError::Token(
                "the admin token must be printable ASCII (it travels in a header)".into(),
            ));
        }
        if !self.control_listen.ip().is_loopback() && !self.allow_remote_control {
            return Err(ProxyError::RemoteControl(self.control_listen));
        }
        let bind = |what: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind { what, addr, source })
        };
        let listener = bind("proxy", self.listen).await?;
        let control = bind("control API", self.control_listen).await?;
        let local = |l: &TcpListener, what, addr| {
            l.local_addr()
                .map_err(|source| ProxyError::Bind { what, addr, source })
        };
        let addr = local(&listener, "proxy", self.listen)?;
        let control_addr = local(&control, "control API", self.control_listen)?;

        let faults = table::FaultTable::new();
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(request::Shared {
            upstream,
            faults: faults.clone(),
        });
        let token: Arc<[u8]> = Arc::from(self.token.trim().as_bytes());
        let tasks = vec![
            tokio::spawn(accept(listener, shared, stopped.clone())),
            tokio::spawn(control::serve(
                control,
                faults.clone(),
                token,
                stopped.clone(),
            )),
            tokio::spawn(faults.clone().reaper(stopped)),
        ];
        Ok(ProxyHandle {
            addr,
            control_addr,
            faults,
            stop,
            tasks,
        })
    }
}

/// Accepts downstream connections until shutdown, then gives them [`conn::GRACE`] to finish.
async fn accept(
    listener: TcpListener,
    shared: Arc<request::Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let for_conns = stop.clone();
    loop {
        tokio::select! {
            _ = stopping(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(conn::serve(stream, shared.clone(), for_conns.clone()));
                }
                // Out of descriptors, most likely: give the others a moment to close.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    // Connections see the same signal and finish within GRACE; this bound is a backstop.
    let grace = conn::GRACE + std::time::Duration::from_millis(500);
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

/// A running fault proxy. Dropping it stops the proxy too (without waiting);
/// [`shutdown`](ProxyHandle::shutdown) reverts every fault and waits for the proxy to stop.
#[derive(Debug)]
pub struct ProxyHandle {
    addr: SocketAddr,
    control_addr: SocketAddr,
    faults: table::FaultTable,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ProxyHandle {
    /// The address the proxy accepts traffic on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's base URL, `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address of the control API.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The control API's base URL, `http://ADDR` (what [`AdminClient::new`](crate::AdminClient::new) takes).
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// Injects `spec` (as `POST /admin/faults` would): it is in force at once and expires after
    /// its `duration_ms`.
    pub fn inject(&self, spec: FaultSpec) -> Result<InjectedFault, FaultRefused> {
        self.faults.inject(spec)
    }

    /// The faults in force, oldest first.
    pub fn list(&self) -> FaultList {
        self.faults.list()
    }

    /// Reverts the fault `id`; the answer lists those still in force.
    pub fn revert(&self, id: &str) -> Result<FaultList, FaultRefused> {
        self.faults.revert(id)
    }

    /// Reverts every fault; the answer lists those still in force (none).
    pub fn revert_all(&self) -> FaultList {
        self.faults.revert_all()
    }

    /// Reverts every fault, stops accepting, lets open exchanges finish for up to 2 s, and
    /// returns once every task of the proxy has ended.
    pub async fn shutdown(mut self) {
        self.faults.revert_all();
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.faults.revert_all();
        let _ = self.stop.send(true);
    }
}

/// Why a proxy could not start.
#[derive(Debug)]
pub enum ProxyError {
    /// The upstream base URL is not `http://host:port[/prefix]`.
    Upstream(String),
    /// The admin token is empty or cannot travel in a header.
    Token(String),
    /// The control address is not loopback and remote control was not allowed.
    RemoteControl(SocketAddr),
    /// A listener could not be bound.
    Bind {
        /// Which listener: `proxy` or `control API`.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl ProxyError {
    /// True when the configuration is at fault (exit code 2), false when the machine is
    /// (a port taken: exit code 3).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ProxyError::Bind { .. })
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Upstream(m) => write!(f, "upstream: {m}"),
            ProxyError::Token(m) => write!(f, "admin token: {m}"),
            ProxyError::RemoteControl(a) => write!(
                f,
                "control address {a} is not loopback: anyone reaching it could break the traffic \
                 (listen on 127.0.0.1, or allow it with Proxy::allow_remote_control)"
            ),
            ProxyError::Bind { what, addr, source } => {
                write!(f, "cannot listen for the {what} on {addr}: {source}")
            }
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Bind { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a fault was not injected or reverted.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultRefused {
    /// The spec is invalid; the error names the field (HTTP 422 `invalid_fault`).
    Invalid(FaultError),
    /// A server-side kind, which only the reference server implements (HTTP 422
    /// `unsupported_fault`).
    Unsupported {
        /// The kind's wire name.
        kind: &'static str,
    },
    /// Too many faults are active (HTTP 422 `too_many_faults`).
    TooMany {
        /// The most faults active at once.
        limit: usize,
    },
    /// No active fault has this id (HTTP 404 `not_found`).
    NotFound {
        /// The id asked for.
        id: String,
    },
}

impl FaultRefused {
    /// The HTTP status the control API answers.
    pub fn status(&self) -> u16 {
        match self {
            FaultRefused::NotFound { .. } => 404,
            _ => 422,
        }
    }

    /// The machine-readable code in the control API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            FaultRefused::Invalid(_) => "invalid_fault",
            FaultRefused::Unsupported { .. } => "unsupported_fault",
            FaultRefused::TooMany { .. } => "too_many_faults",
            FaultRefused::NotFound { .. } => "not_found",
        }
    }
}

impl fmt::Display for FaultRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultRefused::Invalid(e) => write!(f, "{e}"),
            FaultRefused::Unsupported { kind } => write!(
                f,
                "`{kind}` is a server-side fault: the reference server's admin API injects it, \
                 the fault proxy cannot"
            ),
            FaultRefused::TooMany { limit } => {
                write!(f, "{limit} faults are already active; revert some first")
            }
            FaultRefused::NotFound { id } => write!(f, "no active fault has id {id:?}"),
        }
    }
}

impl std::error::Error for FaultRefused {}
