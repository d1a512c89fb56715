//! Server-side fault injection: the registry of active faults and the decisions the pipeline's
//! hooks take from it.
//!
//! The registry is pure: every method takes the time (ms since the Unix epoch) as an argument and
//! every random decision takes its uniform draw as an argument, so the policy is tested without
//! sleeping or seeding. A fault past its expiry is inert at once, at every hook, even before the
//! engine's ticker removes it (and logs the expiry): if the harness that injected it dies, nothing
//! stays injected for longer than the fault's `duration_ms`.
//!
//! Effects are derived from the active set whenever a hook asks (the VRAM hog, stalled tiers, the
//! throttle, the Xid gauge), so reverting a fault restores the state by construction; the only
//! state kept outside the registry is what a revert must undo explicitly (a real CUDA allocation,
//! a crashed worker waiting out its backoff), which the engine handles.

use chaos::{FaultError, FaultKind, FaultList, FaultSpec, InjectedFault, SafetyStage, Stage};
use std::time::Duration;

use crate::types::Tier;

/// The most a throttle slows compute down, whatever factor was asked for: a factor of 1e9 would
/// otherwise park a worker for years on its next step.
pub const MAX_THROTTLE_FACTOR: f64 = 100.0;

/// Current time in ms since the Unix epoch (the registry's clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the server's pipeline consists of, to check a fault's scope against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    /// Worker ids, by index.
    pub workers: Vec<String>,
    /// Model names.
    pub models: Vec<String>,
}

/// Why a fault was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The spec is wrong (bad value, unknown worker, model or tier): `invalid_fault`.
    Invalid(FaultError),
    /// A kind the fault proxy implements, not the server: `unsupported_fault`.
    Unsupported(&'static str),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Invalid(e) => write!(f, "{e}"),
            Rejection::Unsupported(kind) => write!(
                f,
                "fault kind `{kind}` is implemented by the fault proxy, not by the reference \
                 server; server-side kinds: {}",
                FaultKind::KINDS[..9].join(", ")
            ),
        }
    }
}

/// An active fault: what the admin API reports, and the worker the server resolved it to.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    /// Id, spec and expiry, as listed.
    pub injected: InjectedFault,
    /// The worker index it acts on, for kinds aimed at one worker (`gpu_oom`, `worker_crash`,
    /// `xid`, a named `gpu_throttle`); `None`: every worker, or not worker-scoped.
    pub worker: Option<usize>,
}

impl Active {
    /// The server-assigned id.
    pub fn id(&self) -> &str {
        &self.injected.id
    }

    /// The fault kind.
    pub fn kind(&self) -> &FaultKind {
        &self.injected.spec.fault
    }

    fn live(&self, now_ms: u64) -> bool {
        !self.injected.is_expired(now_ms)
    }
}

/// The active faults, oldest injection first.
#[derive(Debug, Default)]
pub struct Registry {
    faults: Vec<Active>,
    next_id: u64,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Validates `spec` against the vocabulary and `topo`, resolves its worker (`chosen` when
    /// the spec leaves the choice to the server), and records it as injected at `now_ms`.
    pub fn inject(
        &mut self,
        spec: FaultSpec,
        now_ms: u64,
        topo: &Topology,
        chosen: usize,
    ) -> Result<Active, Rejection> {
        if spec.fault.is_proxy_side() {
            return Err(Rejection::Unsupported(spec.fault.kind_str()));
        }
        spec.validate().map_err(Rejection::Invalid)?;
        let worker = resolve_scope(&spec, topo, chosen).map_err(Rejection::Invalid)?;
        self.next_id += 1;
        let active = Active {
            injected: InjectedFault::new(format!("f-{}", self.next_id), spec, now_ms),
            worker,
        };
        self.faults.push(active.clone());
        Ok(active)
    }

    /// Removes and returns the faults expired at `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Active> {
        let (gone, kept) = std::mem::take(&mut self.faults)
            .into_iter()
            .partition(|f| !f.live(now_ms));
        self.faults = kept;
        gone
    }

    /// Removes the fault `id`; `None` when no such fault is active at `now_ms` (an expired one is
    /// removed too, but counts as already gone).
    pub fn revert(&mut self, id: &str, now_ms: u64) -> Option<Active> {
        let i = self.faults.iter().position(|f| f.id() == id)?;
        let f = self.faults.remove(i);
        f.live(now_ms).then_some(f)
    }

    /// Removes every fault, returning the ones still active at `now_ms`.
    pub fn revert_all(&mut self, now_ms: u64) -> Vec<Active> {
        std::mem::take(&mut self.faults)
            .into_iter()
            .filter(|f| f.live(now_ms))
            .collect()
    }

    /// The faults active at `now_ms`.
    pub fn active(&self, now_ms: u64) -> impl Iterator<Item = &Active> {
        self.faults.iter().filter(move |f| f.live(now_ms))
    }

    /// The admin API's list at `now_ms`.
    pub fn list(&self, now_ms: u64) -> FaultList {
        FaultList {
            faults: self.active(now_ms).map(|f| f.injected.clone()).collect(),
        }
    }

    /// Whether the fault `id` is active at `now_ms`.
    pub fn is_active(&self, id: &str, now_ms: u64) -> bool {
        self.active(now_ms).any(|f| f.id() == id)
    }

    /// Active faults of each server-side kind (every kind listed, zeros included).
    pub fn count_by_kind(&self, now_ms: u64) -> Vec<(&'static str, usize)> {
        FaultKind::KINDS[..9]
            .iter()
            .map(|k| {
                (
                    *k,
                    self.active(now_ms)
                        .filter(|f| f.kind().kind_str() == *k)
                        .count(),
                )
            })
            .collect()
    }

    /// Share (0-1) of `worker`'s VRAM taken by `gpu_oom` hogs.
    pub fn hog_fraction(&self, worker: usize, now_ms: u64) -> f64 {
        let sum: f64 = self
            .active(now_ms)
            .filter(|f| f.worker == Some(worker))
            .filter_map(|f| match f.kind() {
                FaultKind::GpuOom { fraction, .. } => Some(*fraction),
                _ => None,
            })
            .sum();
        sum.clamp(0.0, 1.0)
    }

    /// Extra time added to each weight read of `model` (slow storage of `cold_start`), never past
    /// the expiry of the fault that adds it.
    pub fn slow_storage(&self, model: &str, now_ms: u64) -> Duration {
        let ms = self
            .active(now_ms)
            .filter_map(|f| match f.kind() {
                FaultKind::ColdStart {
                    models,
                    slow_storage_ms,
                } if models.is_empty() || models.iter().any(|m| m == model) => {
                    // Never past the fault's own expiry.
                    Some((*slow_storage_ms).min(f.injected.remaining_ms(now_ms)))
                }
                _ => None,
            })
            .fold(0u64, u64::saturating_add);
        Duration::from_millis(ms)
    }

    /// Probability (0-1) that a load of `model` fails: independent faults combine as
    /// `1 - Π(1 - p)`.
    pub fn load_failure_probability(&self, model: &str, now_ms: u64) -> f64 {
        combine(self.active(now_ms).filter_map(|f| match f.kind() {
            FaultKind::ModelLoadFailure {
                model: m,
                probability,
            } if m.as_deref().is_none_or(|m| m == model) => Some(*probability),
            _ => None,
        }))
    }

    /// Extra share (0-1) of otherwise passing requests the `stage` classifier blocks.
    pub fn extra_block_fraction(&self, stage: SafetyStage, now_ms: u64) -> f64 {
        combine(self.active(now_ms).filter_map(|f| match f.kind() {
            FaultKind::SafetySpike {
                stage: s,
                extra_block_fraction,
            } if *s == stage => Some(*extra_block_fraction),
            _ => None,
        }))
    }

    /// Time to add to one pass through `stage`: the sum over the stage's latency faults, each
    /// `added_ms ± jitter_ms` from one uniform draw of `draw`, and never past the fault's own
    /// expiry (the latency ends with the fault).
    pub fn stage_delay(
        &self,
        stage: Stage,
        now_ms: u64,
        mut draw: impl FnMut() -> f64,
    ) -> Duration {
        self.active(now_ms)
            .filter_map(|f| match f.kind() {
                FaultKind::StageLatency {
                    stage: s,
                    added_ms,
                    jitter_ms,
                } if *s == stage => {
                    let d = jittered(*added_ms, *jitter_ms, draw());
                    Some(d.min(Duration::from_millis(f.injected.remaining_ms(now_ms))))
                }
                _ => None,
            })
            .sum()
    }

    /// Slowdown factor of `worker`'s compute (1 = nominal): the product of its throttles, capped
    /// at [`MAX_THROTTLE_FACTOR`].
    pub fn throttle_factor(&self, worker: usize, now_ms: u64) -> f64 {
        self.active(now_ms)
            .filter(|f| f.worker.is_none_or(|w| w == worker))
            .filter_map(|f| match f.kind() {
                FaultKind::GpuThrottle { factor, .. } => Some(*factor),
                _ => None,
            })
            .product::<f64>()
            .clamp(1.0, MAX_THROTTLE_FACTOR)
    }

    /// The Xid code `worker`'s GPU reports (the latest injected), if any.
    pub fn xid(&self, worker: usize, now_ms: u64) -> Option<u32> {
        self.active(now_ms)
            .filter(|f| f.worker == Some(worker))
            .filter_map(|f| match f.kind() {
                FaultKind::Xid { code, .. } => Some(*code),
                _ => None,
            })
            .last()
    }

    /// Which tiers' queues are stalled (indexed by [`Tier::rank`]).
    pub fn stalled_tiers(&self, now_ms: u64) -> [bool; 3] {
        let mut out = [false; 3];
        for f in self.active(now_ms) {
            if let FaultKind::QueueStall { tier } = f.kind() {
                for t in Tier::ALL {
                    if tier.as_deref().is_none_or(|name| name == t.as_str()) {
                        out[t.rank()] = true;
                    }
                }
            }
        }
        out
    }
}

/// `added ± jitter` from a uniform draw `u` in [0, 1) (0 maps to `added - jitter`), never below 0.
pub fn jittered(added_ms: u64, jitter_ms: u64, u: f64) -> Duration {
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let ms = added_ms as f64 + (2.0 * u - 1.0) * jitter_ms as f64;
    Duration::from_secs_f64(ms.max(0.0) / 1e3)
}

/// The heat multiplier of the modelled GPU's temperature for a throttle `factor`: a throttled GPU
/// runs hot (that is why it throttles), a quarter more heat per unit of slowdown, at most 1.5.
pub fn throttle_heat(factor: f64) -> f64 {
    (1.0 + 0.25 * (factor - 1.0)).clamp(1.0, 1.5)
}

/// Extra wall time a throttled computation takes, given what it took unthrottled.
pub fn throttle_extra(took: Duration, factor: f64) -> Duration {
    let factor = factor.clamp(1.0, MAX_THROTTLE_FACTOR);
    took.mul_f64(factor - 1.0)
}

/// Whether a decision with probability `p` fires for the uniform draw `u` in [0, 1).
pub fn fires(p: f64, u: f64) -> bool {
    p > 0.0 && u < p
}

/// The category a false positive of `safety_spike` is filed under, spread over the non-CSAM
/// categories by a hash of `key` (a false CSAM detection would page, which is another drill).
pub fn false_positive_category(key: &str) -> &'static str {
    const CATEGORIES: [&str; 4] = ["nsfw", "violence", "hate", "self_harm"];
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    CATEGORIES[(h % CATEGORIES.len() as u64) as usize]
}

/// Independent probabilities combined: `1 - Π(1 - p)`.
fn combine(ps: impl Iterator<Item = f64>) -> f64 {
    1.0 - ps.fold(1.0, |keep, p| keep * (1.0 - p.clamp(0.0, 1.0)))
}

/// Checks the spec's scope fields against the topology and picks the worker it acts on.
fn resolve_scope(
    spec: &FaultSpec,
    topo: &Topology,
    chosen: usize,
) -> Result<Option<usize>, FaultError> {
    let err = |field: &str, message: String| FaultError::new(spec.name.as_str(), field, message);
    let worker = |w: &Option<String>| -> Result<usize, FaultError> {
        match w {
            None => Ok(chosen.min(topo.workers.len().saturating_sub(1))),
            Some(w) => topo.workers.iter().position(|x| x == w).ok_or_else(|| {
                err(
                    "fault.worker",
                    format!("unknown worker {w:?}; workers: {}", topo.workers.join(", ")),
                )
            }),
        }
    };
    let model = |field: &str, m: &str| -> Result<(), FaultError> {
        if topo.models.iter().any(|x| x == m) {
            Ok(())
        } else {
            Err(err(
                field,
                format!("unknown model {m:?}; models: {}", topo.models.join(", ")),
            ))
        }
    };
    match &spec.fault {
        FaultKind::GpuOom { worker: w, .. }
        | FaultKind::WorkerCrash { worker: w, .. }
        | FaultKind::Xid { worker: w, .. } => worker(w).map(Some),
        FaultKind::GpuThrottle { worker: w, .. } => match w {
            None => Ok(None),
            Some(_) => worker(w).map(Some),
        },
        FaultKind::ColdStart { models, .. } => {
            for (i, m) in models.iter().enumerate() {
                model(&format!("fault.models[{i}]"), m)?;
            }
            Ok(None)
        }
        FaultKind::ModelLoadFailure { model: m, .. } => {
            if let Some(m) = m {
                model("fault.model", m)?;
            }
            Ok(None)
        }
        FaultKind::QueueStall { tier: Some(t) } if Tier::parse(t).is_none() => Err(err(
            "fault.tier",
            format!("unknown tier {t:?}; tiers: turbo, fast, relax"),
        )),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology {
            workers: vec!["worker-0".into(), "worker-1".into()],
            models: vec!["sdxl-mini".into(), "flux-mini".into()],
        }
    }

    fn spec(json: &str, duration_ms: u64) -> FaultSpec {
        FaultSpec {
            name: "f".into(),
            fault: serde_json::from_str(json).unwrap(),
            duration_ms,
        }
    }

    fn inject(r: &mut Registry, json: &str, at: u64, dur: u64) -> Active {
        r.inject(spec(json, dur), at, &topo(), 1).unwrap()
    }

    #[test]
    fn ids_expiry_list_and_revert() {
        let mut r = Registry::new();
        let a = inject(&mut r, r#"{"kind":"queue_stall"}"#, 1_000, 500);
        let b = inject(&mut r, r#"{"kind":"xid","code":79}"#, 1_100, 1_000);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.injected.expires_at_ms, 1_500);
        assert_eq!(r.list(1_200).faults.len(), 2);
        // Expired faults vanish from the list and stop acting at once, before any sweep.
        assert_eq!(r.list(1_500).faults.len(), 1);
        assert_eq!(r.stalled_tiers(1_499), [true; 3]);
        assert_eq!(r.stalled_tiers(1_500), [false; 3]);
        // Reverting an expired fault reports it gone; the sweep finds nothing left then.
        assert!(r.revert(a.id(), 1_600).is_none());
        assert!(r.expire(1_600).is_empty());
        assert!(r.revert("f-99", 1_600).is_none());
        assert_eq!(r.revert(b.id(), 1_600).unwrap().id(), b.id());
        assert!(r.list(1_600).is_empty());
    }

    #[test]
    fn expire_removes_only_expired() {
        let mut r = Registry::new();
        inject(&mut r, r#"{"kind":"queue_stall","tier":"fast"}"#, 0, 100);
        let long = inject(&mut r, r#"{"kind":"queue_stall","tier":"relax"}"#, 0, 1_000);
        let gone = r.expire(100);
        assert_eq!(gone.len(), 1);
        assert_eq!(r.stalled_tiers(100), [false, false, true]);
        assert!(r.is_active(long.id(), 999));
        assert!(!r.is_active(long.id(), 1_000));
        assert_eq!(r.revert_all(500).len(), 1);
        assert!(r.list(0).is_empty());
    }

    #[test]
    fn scope_is_checked_and_resolved() {
        let mut r = Registry::new();
        let t = topo();
        let bad = |r: &mut Registry, json: &str| match r.inject(spec(json, 10), 0, &t, 0) {
            Err(Rejection::Invalid(e)) => e.field,
            other => panic!("{json}: {other:?}"),
        };
        assert_eq!(
            bad(&mut r, r#"{"kind":"gpu_oom","worker":"w9","fraction":0.5}"#),
            "fault.worker"
        );
        assert_eq!(
            bad(&mut r, r#"{"kind":"gpu_oom","fraction":1.5}"#),
            "fault.fraction"
        );
        assert_eq!(
            bad(
                &mut r,
                r#"{"kind":"cold_start","models":["sdxl-mini","x"]}"#
            ),
            "fault.models[1]"
        );
        assert_eq!(
            bad(
                &mut r,
                r#"{"kind":"model_load_failure","model":"x","probability":1}"#
            ),
            "fault.model"
        );
        assert_eq!(
            bad(&mut r, r#"{"kind":"queue_stall","tier":"gold"}"#),
            "fault.tier"
        );
        assert!(matches!(
            r.inject(spec(r#"{"kind":"latency","ms":5}"#, 10), 0, &t, 0),
            Err(Rejection::Unsupported("latency"))
        ));
        assert!(r.list(0).is_empty(), "refused faults are not recorded");
        // Named workers resolve to their index; unnamed ones to the server's choice.
        let a = r
            .inject(
                spec(r#"{"kind":"xid","worker":"worker-1","code":13}"#, 10),
                0,
                &t,
                0,
            )
            .unwrap();
        assert_eq!(a.worker, Some(1));
        let b = r
            .inject(spec(r#"{"kind":"xid","code":13}"#, 10), 0, &t, 0)
            .unwrap();
        assert_eq!(b.worker, Some(0));
        let c = r
            .inject(spec(r#"{"kind":"gpu_throttle","factor":2}"#, 10), 0, &t, 0)
            .unwrap();
        assert_eq!(c.worker, None, "an unnamed throttle slows every worker");
    }

    #[test]
    fn effects_combine_and_scope() {
        let mut r = Registry::new();
        inject(
            &mut r,
            r#"{"kind":"gpu_oom","worker":"worker-0","fraction":0.7}"#,
            0,
            100,
        );
        inject(
            &mut r,
            r#"{"kind":"gpu_oom","worker":"worker-0","fraction":0.7}"#,
            0,
            100,
        );
        assert_eq!(r.hog_fraction(0, 50), 1.0);
        assert_eq!(r.hog_fraction(1, 50), 0.0);
        inject(
            &mut r,
            r#"{"kind":"cold_start","models":["flux-mini"],"slow_storage_ms":40}"#,
            0,
            100,
        );
        inject(
            &mut r,
            r#"{"kind":"cold_start","slow_storage_ms":10}"#,
            0,
            100,
        );
        assert_eq!(r.slow_storage("flux-mini", 50), Duration::from_millis(50));
        assert_eq!(r.slow_storage("sdxl-mini", 50), Duration::from_millis(10));
        inject(
            &mut r,
            r#"{"kind":"model_load_failure","model":"sdxl-mini","probability":0.5}"#,
            0,
            100,
        );
        inject(
            &mut r,
            r#"{"kind":"model_load_failure","probability":0.5}"#,
            0,
            100,
        );
        assert_eq!(r.load_failure_probability("sdxl-mini", 50), 0.75);
        assert_eq!(r.load_failure_probability("flux-mini", 50), 0.5);
        assert_eq!(r.load_failure_probability("flux-mini", 100), 0.0);
        inject(
            &mut r,
            r#"{"kind":"safety_spike","stage":"post","extra_block_fraction":1}"#,
            0,
            100,
        );
        assert_eq!(r.extra_block_fraction(SafetyStage::Post, 50), 1.0);
        assert_eq!(r.extra_block_fraction(SafetyStage::Pre, 50), 0.0);
        inject(&mut r, r#"{"kind":"gpu_throttle","factor":2}"#, 0, 100);
        inject(
            &mut r,
            r#"{"kind":"gpu_throttle","worker":"worker-1","factor":3}"#,
            0,
            100,
        );
        assert_eq!(r.throttle_factor(0, 50), 2.0);
        assert_eq!(r.throttle_factor(1, 50), 6.0);
        inject(&mut r, r#"{"kind":"gpu_throttle","factor":1e300}"#, 0, 100);
        assert_eq!(r.throttle_factor(0, 50), MAX_THROTTLE_FACTOR);
        inject(
            &mut r,
            r#"{"kind":"xid","worker":"worker-1","code":48}"#,
            0,
            100,
        );
        inject(
            &mut r,
            r#"{"kind":"xid","worker":"worker-1","code":79}"#,
            0,
            100,
        );
        assert_eq!(r.xid(1, 50), Some(79));
        assert_eq!(r.xid(0, 50), None);
        let counts = r.count_by_kind(50);
        assert_eq!(counts.len(), 9);
        assert!(counts.contains(&("gpu_oom", 2)) && counts.contains(&("queue_stall", 0)));
        assert!(r.count_by_kind(100).iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn stage_delay_jitters_and_ends_with_the_fault() {
        let mut r = Registry::new();
        inject(
            &mut r,
            r#"{"kind":"stage_latency","stage":"vae_decode","added_ms":100,"jitter_ms":40}"#,
            0,
            1_000,
        );
        assert_eq!(
            r.stage_delay(Stage::VaeDecode, 0, || 0.0),
            Duration::from_millis(60)
        );
        assert_eq!(
            r.stage_delay(Stage::VaeDecode, 0, || 0.5),
            Duration::from_millis(100)
        );
        assert_eq!(r.stage_delay(Stage::Upload, 0, || 0.5), Duration::ZERO);
        // 30 ms before expiry, only 30 ms are left to add.
        assert_eq!(
            r.stage_delay(Stage::VaeDecode, 970, || 1.0),
            Duration::from_millis(30)
        );
        assert_eq!(jittered(10, 50, 0.0), Duration::ZERO, "never below zero");
        assert_eq!(jittered(10, 0, f64::NAN), Duration::from_millis(10));
    }

    #[test]
    fn false_positives_spread_over_non_csam_categories() {
        let seen: std::collections::HashSet<&str> = (0..64)
            .map(|i| false_positive_category(&format!("gen-{i}")))
            .collect();
        assert!(seen.len() >= 3, "{seen:?}");
        assert!(!seen.contains("csam"));
        assert_eq!(
            false_positive_category("gen-1"),
            false_positive_category("gen-1")
        );
    }

    #[test]
    fn metric_kinds_are_the_server_side_kinds() {
        // The vocabulary lists server-side kinds first; `latency` opens the proxy's.
        assert_eq!(crate::metrics::FAULT_KINDS, &FaultKind::KINDS[..9]);
        assert_eq!(FaultKind::KINDS[9], "latency");
        let r = Registry::new();
        let kinds: Vec<&str> = r.count_by_kind(0).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, crate::metrics::FAULT_KINDS);
    }

    #[test]
    fn pure_helpers() {
        assert!(fires(1.0, 0.999_999));
        assert!(!fires(0.0, 0.0));
        assert!(fires(0.5, 0.25) && !fires(0.5, 0.75));
        assert_eq!(throttle_heat(1.0), 1.0);
        assert_eq!(throttle_heat(2.0), 1.25);
        assert_eq!(throttle_heat(50.0), 1.5);
        assert_eq!(
            throttle_extra(Duration::from_millis(10), 3.0),
            Duration::from_millis(20)
        );
        assert_eq!(
            throttle_extra(Duration::from_millis(10), 0.5),
            Duration::ZERO
        );
    }
}
