//! One downstream connection: served by hyper (HTTP/1, keep-alive) until it ends normally, is
//! ended by a `timeout` or `reset_peer` fault, or the proxy shuts down; `slow_close` delays the
//! final close.

use std::convert::Infallible;
use std::future::Future;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::proxy::body::ProxyBody;
use crate::proxy::effects::{self, Doom};
use crate::proxy::request::{self, Shared};
use crate::proxy::table::{sleep_until_opt, stopping, Snapshot};

/// How long open connections may finish their exchange once the proxy shuts down.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// How a doomed connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// TCP RST (SO_LINGER 0, then close).
    Reset,
    /// An ordinary close (FIN).
    Close,
}

type Handling = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

/// Serves `stream` until it ends; never fails (a broken connection just ends).
pub(crate) async fn serve(stream: TcpStream, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    // Latency must be what is asked: no Nagle delay on small answers.
    let _ = stream.set_nodelay(true);
    // A second descriptor of the socket, kept here while hyper owns the stream, so that a reset
    // can set SO_LINGER 0 on the socket; the socket closes when both are dropped.
    let Ok((stream, twin)) = twin(stream) else {
        return;
    };
    let (doom_tx, doom_rx) = watch::channel(None::<Doom>);
    let doom_tx = Arc::new(doom_tx);
    let svc = {
        let shared = shared.clone();
        service_fn(move |req: Request<Incoming>| -> Handling {
            Box::pin(request::handle(req, shared.clone(), doom_tx.clone()))
        })
    };
    let mut conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), svc);

    let doomed = doomed(doom_rx, shared.faults.subscribe());
    tokio::pin!(doomed);
    let mut shutdown = shutdown;
    let mut grace_until: Option<Instant> = None;
    enum End {
        Served(bool),
        Doomed(Ending),
        Abandoned,
    }
    let end = loop {
        tokio::select! {
            biased;
            how = &mut doomed => break End::Doomed(how),
            r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break End::Served(r.is_ok()),
            _ = stopping(&mut shutdown), if grace_until.is_none() => {
                Pin::new(&mut conn).graceful_shutdown();
                grace_until = Some(Instant::now() + GRACE);
            }
            _ = sleep_until_opt(grace_until) => break End::Abandoned,
        }
    };
    match end {
        End::Doomed(Ending::Reset) => {
            let _ = socket2::SockRef::from(&twin).set_linger(Some(Duration::ZERO));
            drop(conn);
            drop(twin);
        }
        End::Doomed(Ending::Close) | End::Abandoned => {
            let _ = twin.shutdown(Shutdown::Both);
            drop(conn);
        }
        End::Served(ok) => {
            let delay = effects::slow_close(&shared.faults.snapshot(), Instant::now());
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopping(&mut shutdown) => {}
                }
            }
            if ok {
                let mut io = conn.into_parts().io.into_inner();
                let _ = io.shutdown().await;
            } else {
                let _ = twin.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Resolves once a request has doomed the connection and its time has come.
async fn doomed(
    mut doom: watch::Receiver<Option<Doom>>,
    mut faults: watch::Receiver<Snapshot>,
) -> Ending {
    let d = match doom.wait_for(Option::is_some).await {
        Ok(d) => d.clone(),
        // The sender lives as long as the connection's service: nothing can doom it now.
        Err(_) => None,
    };
    let Some(d) = d else {
        return std::future::pending().await;
    };
    let hold = async {
        if d.hold.is_empty() {
            return std::future::pending().await;
        }
        let gone = faults.wait_for(|set| {
            let now = Instant::now();
            !set.iter()
                .any(|a| a.live(now) && d.hold.contains(&a.fault.id))
        });
        tokio::select! {
            _ = gone => {}
            // Expiry ends the hold even if nothing else wakes us.
            _ = sleep_until_opt(d.hold_until) => {}
        }
    };
    tokio::select! {
        biased;
        _ = sleep_until_opt(d.reset_at), if d.reset_at.is_some() => Ending::Reset,
        _ = sleep_until_opt(d.close_at), if d.close_at.is_some() => Ending::Close,
        _ = hold => Ending::Close,
    }
}

/// Splits a stream into itself and a second (std) descriptor of the same socket.
fn twin(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std = stream.into_std()?;
    let twin = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, twin))
}
