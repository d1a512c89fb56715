//! What the active faults do to one request or connection.
//!
//! Several faults of one kind compose as a chain of toxiproxy toxics would: latencies and slow
//! closes add up, the narrowest bandwidth wins, `http_error`s are drawn in injection order (the
//! first hit answers), and the earliest reset or timeout ends the connection.

use std::time::{Duration, Instant};

use rand::RngExt;

use crate::fault::FaultKind;
use crate::proxy::table::Active;

/// How a connection doomed by `timeout` or `reset_peer` ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Doom {
    /// `reset_peer`: reset (RST) at this instant.
    pub reset_at: Option<Instant>,
    /// `timeout` with `ms > 0`: close (FIN) at this instant.
    pub close_at: Option<Instant>,
    /// `timeout` with `ms = 0`: hold until these faults have all ended, then close.
    pub hold: Vec<String>,
    /// The latest expiry among `hold`: a backstop in case no revert wakes us.
    pub hold_until: Option<Instant>,
}

/// The faults applied to one request, drawn when it arrives.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RequestFaults {
    /// Answer this status instead of forwarding.
    pub error: Option<u16>,
    /// Added to the response (its head and each body chunk).
    pub latency: Duration,
    /// No answer: the connection ends as this says.
    pub doom: Option<Doom>,
}

/// Draws the faults for a request arriving at `now` under `active`.
pub(crate) fn for_request<R: rand::Rng + ?Sized>(
    active: &[Active],
    now: Instant,
    rng: &mut R,
) -> RequestFaults {
    let mut out = RequestFaults::default();
    let mut doom = Doom::default();
    for a in active.iter().filter(|a| a.live(now)) {
        match &a.fault.spec.fault {
            FaultKind::Latency { ms, jitter_ms } => {
                out.latency += Duration::from_millis(jittered(*ms, *jitter_ms, rng));
            }
            // Drawn only while no earlier one has hit, as a chain of toxics would.
            FaultKind::HttpError {
                status,
                probability,
            } if out.error.is_none() && rng.random_bool(probability.clamp(0.0, 1.0)) => {
                out.error = Some(*status);
            }
            FaultKind::ResetPeer { after_ms } => {
                let at = now + Duration::from_millis(*after_ms);
                doom.reset_at = Some(doom.reset_at.map_or(at, |t| t.min(at)));
            }
            FaultKind::Timeout { ms: 0 } => {
                doom.hold.push(a.fault.id.clone());
                doom.hold_until = Some(doom.hold_until.map_or(a.deadline, |t| t.max(a.deadline)));
            }
            FaultKind::Timeout { ms } => {
                let at = now + Duration::from_millis(*ms);
                doom.close_at = Some(doom.close_at.map_or(at, |t| t.min(at)));
            }
            _ => {}
        }
    }
    if doom != Doom::default() {
        out.doom = Some(doom);
    }
    out
}

/// `ms ± jitter_ms`, uniform over whole milliseconds, never below 0.
fn jittered<R: rand::Rng + ?Sized>(ms: u64, jitter_ms: u64, rng: &mut R) -> u64 {
    if jitter_ms == 0 {
        return ms;
    }
    let lo = ms.saturating_sub(jitter_ms);
    let hi = ms.saturating_add(jitter_ms);
    rng.random_range(lo..=hi)
}

/// The response rate limit in force at `now`, in bytes per second (toxiproxy's KB is 1000 B).
pub(crate) fn bandwidth(active: &[Active], now: Instant) -> Option<u64> {
    active
        .iter()
        .filter(|a| a.live(now))
        .filter_map(|a| match a.fault.spec.fault {
            FaultKind::Bandwidth { kbps } => Some(kbps.saturating_mul(1000)),
            _ => None,
        })
        .min()
}

/// How long closing a connection is put off at `now` (`slow_close`).
pub(crate) fn slow_close(active: &[Active], now: Instant) -> Duration {
    active
        .iter()
        .filter(|a| a.live(now))
        .map(|a| match a.fault.spec.fault {
            FaultKind::SlowClose { delay_ms } => Duration::from_millis(delay_ms),
            _ => Duration::ZERO,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InjectedFault;
    use crate::fault::FaultSpec;

    fn active(fault: FaultKind, now: Instant) -> Active {
        Active {
            fault: InjectedFault::new(
                "x",
                FaultSpec {
                    name: "x".into(),
                    fault,
                    duration_ms: 1000,
                },
                0,
            ),
            deadline: now + Duration::from_secs(1),
        }
    }

    #[test]
    fn composes_like_a_toxic_chain() {
        let now = Instant::now();
        let set = vec![
            active(
                FaultKind::Latency {
                    ms: 30,
                    jitter_ms: 0,
                },
                now,
            ),
            active(
                FaultKind::Latency {
                    ms: 20,
                    jitter_ms: 0,
                },
                now,
            ),
            active(FaultKind::Bandwidth { kbps: 50 }, now),
            active(FaultKind::Bandwidth { kbps: 10 }, now),
            active(FaultKind::SlowClose { delay_ms: 5 }, now),
            active(FaultKind::SlowClose { delay_ms: 7 }, now),
            active(FaultKind::ResetPeer { after_ms: 300 }, now),
            active(FaultKind::ResetPeer { after_ms: 100 }, now),
            active(FaultKind::Timeout { ms: 200 }, now),
            active(
                FaultKind::HttpError {
                    status: 503,
                    probability: 1.0,
                },
                now,
            ),
            active(
                FaultKind::HttpError {
                    status: 500,
                    probability: 1.0,
                },
                now,
            ),
        ];
        let f = for_request(&set, now, &mut rand::rng());
        assert_eq!(f.latency, Duration::from_millis(50));
        assert_eq!(f.error, Some(503));
        let doom = f.doom.unwrap();
        assert_eq!(doom.reset_at, Some(now + Duration::from_millis(100)));
        assert_eq!(doom.close_at, Some(now + Duration::from_millis(200)));
        assert!(doom.hold.is_empty());
        assert_eq!(bandwidth(&set, now), Some(10_000));
        assert_eq!(slow_close(&set, now), Duration::from_millis(12));
    }

    #[test]
    fn expired_faults_do_nothing() {
        let now = Instant::now();
        let set = vec![active(
            FaultKind::Latency {
                ms: 30,
                jitter_ms: 0,
            },
            now,
        )];
        let later = now + Duration::from_secs(2);
        assert_eq!(
            for_request(&set, later, &mut rand::rng()),
            RequestFaults::default()
        );
        assert_eq!(bandwidth(&set, later), None);
    }

    #[test]
    fn jitter_stays_in_range_and_never_goes_negative() {
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let d = jittered(10, 30, &mut rng);
            assert!(d <= 40);
            let d = jittered(100, 20, &mut rng);
            assert!((80..=120).contains(&d));
        }
    }
}
