//! One downstream request: draw its faults, forward it or answer for the upstream, and apply
//! the downstream faults to the answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;

use crate::proxy::body::{self, ProxyBody};
use crate::proxy::effects::{self, Doom};
use crate::proxy::reply;
use crate::proxy::table::FaultTable;
use crate::proxy::upstream::Upstream;

/// Half of the timer's 1 ms resolution.
const HALF_TICK: Duration = Duration::from_micros(500);

/// What every connection of one proxy shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub upstream: Upstream,
    pub faults: FaultTable,
}

/// Answers one request. A request under `timeout` or `reset_peer` is still forwarded (the
/// faults act downstream, as toxiproxy's default stream does) but its answer never comes: the
/// connection is told how to end through `doom`, and this future stays pending until the
/// connection drops it, which also drops the upstream exchange.
pub(crate) async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    doom: Arc<watch::Sender<Option<Doom>>>,
) -> Result<Response<ProxyBody>, Infallible> {
    let faults = effects::for_request(&shared.faults.snapshot(), Instant::now(), &mut rand::rng());
    if let Some(d) = faults.doom {
        doom.send_if_modified(|cur| {
            if cur.is_some() {
                return false;
            }
            *cur = Some(d);
            true
        });
        let _held = shared.upstream.forward(req).await;
        return std::future::pending().await;
    }
    let resp = match faults.error {
        Some(status) => injected(status),
        None if req.method() == Method::CONNECT => boxed(reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the fault proxy is a reverse proxy: CONNECT is not supported",
        )),
        None => match shared.upstream.forward(req).await {
            Ok(resp) => resp.map(|b| b.map_err(Into::into).boxed()),
            Err(e) => boxed(reply::error(StatusCode::BAD_GATEWAY, "bad_gateway", &e)),
        },
    };
    let resp = if faults.latency.is_zero() {
        resp
    } else {
        // The head waits `latency` from its arrival, and each body chunk from its own.
        let release = Instant::now() + faults.latency;
        let resp = resp.map(|b| body::delayed(b, faults.latency));
        // Tokio's timer rounds a deadline up to the next whole millisecond and then wakes late
        // by some more; aiming half a tick early centres that error on the asked time (never
        // more than 0.5 ms early) instead of adding ~1.5 ms to every response.
        let aim = release.checked_sub(HALF_TICK).unwrap_or(release);
        tokio::time::sleep_until(aim.into()).await;
        resp
    };
    let faults = shared.faults.subscribe();
    Ok(resp.map(|b| body::paced(b, faults)))
}

/// The answer of an `http_error` fault.
fn injected(status: u16) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    boxed(reply::error(
        status,
        "injected_fault",
        &format!(
            "the fault proxy answered {status} (http_error fault); the request was not forwarded"
        ),
    ))
}

fn boxed(resp: Response<bytes::Bytes>) -> Response<ProxyBody> {
    resp.map(|b| Full::new(b).map_err(|never| match never {}).boxed())
}
