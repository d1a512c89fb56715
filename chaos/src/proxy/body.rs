//! Response bodies that carry the downstream faults: `latency` shifts every chunk in time,
//! `bandwidth` paces the bytes.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;

use crate::proxy::effects;
use crate::proxy::table::Snapshot;

/// The error type of a proxied body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body the proxy sends downstream.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// Tokio's timers fire on whole milliseconds.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// Frames read ahead of a delayed body (the backpressure bound).
const DELAY_QUEUE: usize = 64;

/// Delays each chunk of `body` by `delay` after it arrives, as toxiproxy's `latency` does to
/// each chunk: the stream is shifted, not stretched. A task reads the body ahead so that each
/// chunk is stamped when it really arrives.
pub(crate) fn delayed(body: ProxyBody, delay: Duration) -> ProxyBody {
    let hint = body.size_hint();
    let (tx, rx) = mpsc::channel(DELAY_QUEUE);
    tokio::spawn(async move {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let stop = frame.is_err();
            if tx.send((Instant::now() + delay, frame)).await.is_err() || stop {
                break;
            }
        }
    });
    BoxBody::new(Delayed {
        rx,
        held: None,
        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        hint,
    })
}

type Stamped = (Instant, Result<Frame<Bytes>, BoxError>);

struct Delayed {
    rx: mpsc::Receiver<Stamped>,
    held: Option<Result<Frame<Bytes>, BoxError>>,
    sleep: Pin<Box<Sleep>>,
    hint: SizeHint,
}

impl Body for Delayed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.held.is_none() {
            match ready!(self.rx.poll_recv(cx)) {
                Some((at, frame)) => {
                    // Within the timer's 1 ms resolution the frame is due now: a chunk that came
                    // with the head leaves with it instead of waiting for another tick.
                    if at <= Instant::now() + TIMER_RESOLUTION {
                        return Poll::Ready(Some(frame));
                    }
                    self.held = Some(frame);
                    self.sleep.as_mut().reset(at.into());
                }
                None => return Poll::Ready(None),
            }
        }
        ready!(self.sleep.as_mut().poll(cx));
        Poll::Ready(self.held.take())
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// Paces the data of `body` to the `bandwidth` fault in force, looked up again for every piece
/// so that a fault injected or reverted mid-stream takes effect at once. Like toxiproxy, data is
/// cut into pieces of at most 100 ms worth, each released when its time at the rate has passed.
pub(crate) fn paced(body: ProxyBody, faults: watch::Receiver<Snapshot>) -> ProxyBody {
    let hint = body.size_hint();
    BoxBody::new(Paced {
        inner: body,
        faults,
        pending: Bytes::new(),
        held: None,
        next: Instant::now(),
        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        hint,
    })
}

struct Paced {
    inner: ProxyBody,
    faults: watch::Receiver<Snapshot>,
    /// Data read from `inner` and not yet released.
    pending: Bytes,
    /// The piece waiting for `sleep`.
    held: Option<Bytes>,
    /// When the line is free again: the end of the last released piece's time.
    next: Instant,
    sleep: Pin<Box<Sleep>>,
    hint: SizeHint,
}

impl Body for Paced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.held.is_some() {
                ready!(self.sleep.as_mut().poll(cx));
                return Poll::Ready(self.held.take().map(|b| Ok(Frame::data(b))));
            }
            if !self.pending.is_empty() {
                let now = Instant::now();
                let rate = effects::bandwidth(&self.faults.borrow(), now);
                let Some(rate) = rate else {
                    let all = std::mem::take(&mut self.pending);
                    return Poll::Ready(Some(Ok(Frame::data(all))));
                };
                let n = self.pending.len().min(piece_len(rate));
                let piece = self.pending.split_to(n);
                // No credit is saved up while idle: a burst after a pause is paced too.
                let start = self.next.max(now);
                self.next = start + Duration::from_secs_f64(n as f64 / rate as f64);
                let at = self.next;
                self.sleep.as_mut().reset(at.into());
                self.held = Some(piece);
                continue;
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.pending = data,
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// 100 ms worth of bytes at `rate` bytes per second, at least one byte.
fn piece_len(rate: u64) -> usize {
    usize::try_from(rate / 10).unwrap_or(usize::MAX).max(1)
}
