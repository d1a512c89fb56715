//! The active faults of one proxy: inject, list, revert, and expiry.
//!
//! The set lives in a `watch` channel of immutable snapshots: a request reads the current
//! snapshot without blocking injections, and whatever waits on a fault ending (a `timeout` of 0,
//! the expiry reaper) is woken by the same channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::api::{FaultList, InjectedFault};
use crate::fault::FaultSpec;
use crate::proxy::FaultRefused;

/// The most faults active at once; more is a runaway script, not a drill.
pub const MAX_ACTIVE_FAULTS: usize = 256;

/// One active fault with its expiry on the monotonic clock.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    pub fault: InjectedFault,
    pub deadline: Instant,
}

impl Active {
    /// Still in force at `now` (the reaper may not have removed an expired one yet).
    pub fn live(&self, now: Instant) -> bool {
        now < self.deadline
    }
}

/// The active faults, oldest injection first.
pub(crate) type Snapshot = Arc<Vec<Active>>;

/// The shared, cloneable fault table of one proxy.
#[derive(Debug, Clone)]
pub(crate) struct FaultTable {
    tx: Arc<watch::Sender<Snapshot>>,
    next_id: Arc<AtomicU64>,
}

impl FaultTable {
    pub fn new() -> FaultTable {
        FaultTable {
            tx: Arc::new(watch::Sender::new(Arc::new(Vec::new()))),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The current set (possibly holding faults expired but not yet reaped: check `live`).
    pub fn snapshot(&self) -> Snapshot {
        self.tx.borrow().clone()
    }

    /// A receiver woken on every change of the set.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }

    /// Validates and activates `spec`; it expires `spec.duration_ms` from now.
    pub fn inject(&self, spec: FaultSpec) -> Result<InjectedFault, FaultRefused> {
        spec.validate().map_err(FaultRefused::Invalid)?;
        if spec.fault.is_server_side() {
            return Err(FaultRefused::Unsupported {
                kind: spec.fault.kind_str(),
            });
        }
        let now = Instant::now();
        let duration = std::time::Duration::from_millis(spec.duration_ms);
        let mut result = Err(FaultRefused::TooMany {
            limit: MAX_ACTIVE_FAULTS,
        });
        self.tx.send_modify(|set| {
            let mut next: Vec<Active> = set.iter().filter(|a| a.live(now)).cloned().collect();
            if next.len() >= MAX_ACTIVE_FAULTS {
                *set = Arc::new(next);
                return;
            }
            let n = self.next_id.fetch_add(1, Ordering::Relaxed);
            let fault = InjectedFault::new(format!("{}-{n}", spec.name), spec, epoch_ms());
            next.push(Active {
                fault: fault.clone(),
                deadline: now + duration,
            });
            *set = Arc::new(next);
            result = Ok(fault);
        });
        result
    }

    /// The faults in force now, oldest first.
    pub fn list(&self) -> FaultList {
        let now = Instant::now();
        FaultList {
            faults: self
                .snapshot()
                .iter()
                .filter(|a| a.live(now))
                .map(|a| a.fault.clone())
                .collect(),
        }
    }

    /// Reverts the fault `id`; the answer lists those still in force.
    pub fn revert(&self, id: &str) -> Result<FaultList, FaultRefused> {
        let now = Instant::now();
        let mut found = false;
        self.tx.send_if_modified(|set| {
            if !set.iter().any(|a| a.fault.id == id && a.live(now)) {
                return false;
            }
            found = true;
            *set = Arc::new(
                set.iter()
                    .filter(|a| a.fault.id != id && a.live(now))
                    .cloned()
                    .collect(),
            );
            true
        });
        if found {
            Ok(self.list())
        } else {
            Err(FaultRefused::NotFound { id: id.to_owned() })
        }
    }

    /// Reverts every fault; the answer lists those still in force (none).
    pub fn revert_all(&self) -> FaultList {
        self.tx.send_if_modified(|set| {
            if set.is_empty() {
                return false;
            }
            *set = Arc::new(Vec::new());
            true
        });
        self.list()
    }

    /// Removes the faults expired at `now`; the earliest deadline left, if any.
    fn reap(&self, now: Instant) -> Option<Instant> {
        self.tx.send_if_modified(|set| {
            if set.iter().all(|a| a.live(now)) {
                return false;
            }
            *set = Arc::new(set.iter().filter(|a| a.live(now)).cloned().collect());
            true
        });
        self.snapshot().iter().map(|a| a.deadline).min()
    }

    /// Reverts faults as they expire, until `shutdown` turns true (or its sender goes).
    pub async fn reaper(self, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.subscribe();
        loop {
            let next = self.reap(Instant::now());
            tokio::select! {
                _ = stopping(&mut shutdown) => return,
                // A new fault may expire before the one we were waiting for.
                r = changes.changed() => if r.is_err() { return },
                _ = sleep_until_opt(next) => {}
            }
        }
    }
}

/// Resolves once the proxy is stopping: `stop` turned true or its sender is gone.
pub(crate) async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across the caller's awaits.
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps until `at`, or forever for `None`.
pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Wall-clock now, in ms since the Unix epoch (what the wire types carry).
fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultKind;

    fn spec(name: &str, fault: FaultKind, duration_ms: u64) -> FaultSpec {
        FaultSpec {
            name: name.into(),
            fault,
            duration_ms,
        }
    }

    #[test]
    fn inject_list_revert() {
        let t = FaultTable::new();
        let a = t
            .inject(spec(
                "slow",
                FaultKind::Latency {
                    ms: 5,
                    jitter_ms: 0,
                },
                60_000,
            ))
            .unwrap();
        let b = t
            .inject(spec("cut", FaultKind::ResetPeer { after_ms: 0 }, 60_000))
            .unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.expires_at_ms, a.injected_at_ms + 60_000);
        assert_eq!(t.list().faults.len(), 2);
        let left = t.revert(&a.id).unwrap();
        assert_eq!(left.faults, vec![b.clone()]);
        assert!(matches!(
            t.revert(&a.id),
            Err(FaultRefused::NotFound { .. })
        ));
        assert!(t.revert_all().is_empty());
    }

    #[test]
    fn refuses_server_side_and_invalid() {
        let t = FaultTable::new();
        let oom = spec(
            "oom",
            FaultKind::GpuOom {
                worker: None,
                fraction: 0.5,
            },
            1000,
        );
        assert!(matches!(
            t.inject(oom),
            Err(FaultRefused::Unsupported { kind: "gpu_oom" })
        ));
        let bad = spec(
            "bad",
            FaultKind::HttpError {
                status: 200,
                probability: 0.5,
            },
            1000,
        );
        match t.inject(bad) {
            Err(FaultRefused::Invalid(e)) => assert_eq!(e.field, "fault.status"),
            other => panic!("expected invalid, got {other:?}"),
        }
        assert!(t.list().is_empty());
    }

    #[test]
    fn caps_the_number_of_faults() {
        let t = FaultTable::new();
        for i in 0..MAX_ACTIVE_FAULTS {
            t.inject(spec(&format!("f{i}"), FaultKind::Timeout { ms: 1 }, 60_000))
                .unwrap();
        }
        assert!(matches!(
            t.inject(spec("one-more", FaultKind::Timeout { ms: 1 }, 60_000)),
            Err(FaultRefused::TooMany { .. })
        ));
    }
}
