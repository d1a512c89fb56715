//! The engine's side of fault injection: injecting and reverting faults (with the state a revert
//! must restore), the ticker that expires them, and the helpers the pipeline's hooks call.

use super::*;
use crate::faults::{now_ms, throttle_heat, Active, Registry, Rejection, Topology};
use chaos::{FaultKind, FaultList, FaultSpec, InjectedFault, Stage};

/// How often the ticker looks for expired faults.
const TICK: Duration = Duration::from_millis(50);

/// How a crashed worker comes back.
#[derive(Debug, Clone)]
pub(super) struct RestartPlan {
    /// Time before it restarts.
    pub backoff: Duration,
    /// The `worker_crash` fault that killed it: reverting (or the expiry of) that fault brings
    /// the worker back at once.
    pub fault: Option<String>,
}

/// A real device allocation holding a `gpu_oom` hog's memory (build feature `cuda`).
#[cfg(feature = "cuda")]
pub(super) type DeviceHog = cudarc::driver::CudaSlice<u8>;

impl Shared {
    /// The fault registry (always locked after, never before, the engine state).
    pub(super) fn faults(&self) -> MutexGuard<'_, Registry> {
        self.faults.lock().expect("fault registry lock")
    }

    /// Time a stage_latency fault adds to one pass through `stage` now.
    pub(super) fn stage_delay(&self, stage: Stage) -> Duration {
        self.faults()
            .stage_delay(stage, now_ms(), rand::random::<f64>)
    }

    /// Sleeps for the latency injected into `stage`, if any.
    pub(super) fn stage_sleep(&self, stage: Stage) {
        let d = self.stage_delay(stage);
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }

    /// Makes a computation that took `took` on worker `index` take `factor` times as long when
    /// the worker is throttled.
    pub(super) fn throttle_sleep(&self, index: usize, took: Duration) {
        let factor = self.faults().throttle_factor(index, now_ms());
        let extra = crate::faults::throttle_extra(took, factor);
        if !extra.is_zero() {
            std::thread::sleep(extra);
        }
    }
}

/// Brings the state derived from the active faults up to date: each worker's VRAM hog (evicting
/// an idle worker's least recently used models while the hog leaves them no room) and the queue's
/// stalled tiers.
pub(super) fn sync_faults(st: &mut State, reg: &Registry, now: u64) {
    for (i, w) in st.workers.iter_mut().enumerate() {
        w.hog_bytes = (reg.hog_fraction(i, now) * w.vram_total as f64) as u64;
        while !w.busy && w.vram_used() > w.vram_total && !w.warm.is_empty() {
            let gone = w.warm.remove(0);
            info!(event = "model_unloaded", worker_id = %w.id, model = %gone.name, reason = "memory_pressure");
        }
    }
    st.queue.set_paused(reg.stalled_tiers(now));
}

impl Engine {
    /// Injects a server-side fault; the answer carries its id and expiry.
    pub fn inject_fault(&self, spec: FaultSpec) -> Result<InjectedFault, Rejection> {
        let shared = &self.shared;
        // The server's choice of worker, for specs that leave it open: a busy live worker (a crash
        // then hits a generation in flight), else the first live one.
        let chosen = {
            let st = self.lock();
            st.workers
                .iter()
                .position(|w| w.alive && w.busy)
                .or_else(|| st.workers.iter().position(|w| w.alive))
                .unwrap_or(0)
        };
        let active = shared
            .faults()
            .inject(spec, now_ms(), &shared.topology, chosen)?;
        let f = &active.injected;
        let worker = active
            .worker
            .map_or("", |i| shared.topology.workers[i].as_str());
        warn!(event = "fault_injected", fault_id = %f.id, fault_name = %f.spec.name, kind = f.spec.fault.kind_str(), worker_id = worker, duration_ms = f.spec.duration_ms, expires_at_ms = f.expires_at_ms);
        apply_inject(shared, &active);
        refresh_fault_gauge(shared);
        shared.wake.notify_all();
        Ok(active.injected)
    }

    /// Time injected `stage_latency` faults add to one pass through `stage` now (for the stages
    /// the HTTP front end runs: text encoding and the prompt check).
    pub fn fault_stage_delay(&self, stage: Stage) -> Duration {
        self.shared.stage_delay(stage)
    }

    /// Extra share (0-1) of passing requests the `stage` classifier blocks under a
    /// `safety_spike` now.
    pub fn fault_extra_block_fraction(&self, stage: chaos::SafetyStage) -> f64 {
        self.shared.faults().extra_block_fraction(stage, now_ms())
    }

    /// The active faults, oldest first.
    pub fn list_faults(&self) -> FaultList {
        self.expire_faults();
        self.shared.faults().list(now_ms())
    }

    /// Reverts the fault `id`: `None` when no such fault is active; else the faults left.
    pub fn revert_fault(&self, id: &str) -> Option<FaultList> {
        self.expire_faults();
        let gone = self.shared.faults().revert(id, now_ms())?;
        reverted(&self.shared, &gone, "fault_reverted");
        Some(self.list_faults())
    }

    /// Reverts every fault; answers the faults left (none).
    pub fn revert_all_faults(&self) -> FaultList {
        self.expire_faults();
        let gone = self.shared.faults().revert_all(now_ms());
        for f in &gone {
            reverted(&self.shared, f, "fault_reverted");
        }
        self.list_faults()
    }

    /// Removes expired faults, restoring what they changed (the ticker calls this every 50 ms;
    /// hooks already ignore an expired fault before that).
    pub fn expire_faults(&self) {
        expire(&self.shared);
    }
}

fn expire(shared: &Shared) {
    let gone = shared.faults().expire(now_ms());
    for f in &gone {
        reverted(shared, f, "fault_expired");
    }
}

/// Expires faults every [`TICK`] until the engine stops.
pub(super) fn ticker_loop(shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        expire(shared);
        std::thread::sleep(TICK);
    }
}

/// What injecting does at once (the rest is derived from the registry by the hooks).
fn apply_inject(shared: &Shared, f: &Active) {
    let worker = f.worker;
    match f.kind() {
        FaultKind::ColdStart { models, .. } => {
            let mut st = shared.state.lock().expect("engine state lock");
            for w in &mut st.workers {
                // A running batch holds its own reference to the model; only residency goes.
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut w.warm)
                    .into_iter()
                    .partition(|m| models.is_empty() || models.contains(&m.name));
                w.warm = kept;
                for m in gone {
                    info!(event = "model_unloaded", worker_id = %w.id, model = %m.name, reason = "cold_start");
                }
            }
        }
        FaultKind::WorkerCrash {
            restart_after_ms, ..
        } => {
            if let Some(i) = worker {
                *shared.restart[i].lock().expect("restart lock") = Some(RestartPlan {
                    backoff: Duration::from_millis(*restart_after_ms),
                    fault: Some(f.id().to_owned()),
                });
                shared.crash[i].store(true, Ordering::SeqCst);
            }
        }
        FaultKind::Xid { code, .. } => {
            if let Some(i) = worker {
                let labels = worker_labels(shared, i);
                shared
                    .metrics
                    .gpu_xid_errors_total
                    .with_label_values(&[&labels.0, &labels.1, &labels.2])
                    .inc();
                error!(event = "gpu_xid", worker_id = %labels.0, gpu_index = %labels.1, xid = *code, fault_id = %f.id());
            }
        }
        #[cfg(feature = "cuda")]
        FaultKind::GpuOom { fraction, .. } => {
            if let Some(i) = worker {
                let bytes = (fraction * shared.cfg.workers.vram_bytes as f64) as usize;
                let alloc = cudarc::driver::CudaContext::new(i)
                    .and_then(|ctx| ctx.default_stream().alloc_zeros::<u8>(bytes));
                match alloc {
                    Ok(hog) => {
                        shared
                            .device_hogs
                            .lock()
                            .expect("hog lock")
                            .insert(f.id().to_owned(), hog);
                    }
                    // No such device, or it is already full: the modelled hog still applies.
                    Err(e) => {
                        warn!(event = "gpu_oom_hog_unallocated", fault_id = %f.id(), error = ?e)
                    }
                }
            }
        }
        _ => {}
    }
}

/// Logs the end of a fault and undoes what the registry alone cannot.
fn reverted(shared: &Shared, f: &Active, event: &'static str) {
    let inj = &f.injected;
    info!(event, fault_id = %inj.id, fault_name = %inj.spec.name, kind = inj.spec.fault.kind_str());
    #[cfg(feature = "cuda")]
    if matches!(f.kind(), FaultKind::GpuOom { .. }) {
        shared.device_hogs.lock().expect("hog lock").remove(f.id());
    }
    if matches!(f.kind(), FaultKind::WorkerCrash { .. }) {
        // A crash that has not happened yet (the worker was in a cold load, which does not look
        // at the flag) must not happen after its fault is gone.
        for (i, flag) in shared.crash.iter().enumerate() {
            let mut plan = shared.restart[i].lock().expect("restart lock");
            let ours = plan.as_ref().and_then(|p| p.fault.as_deref()) == Some(f.id());
            if ours && flag.swap(false, Ordering::SeqCst) {
                *plan = None;
            }
        }
    }
    refresh_fault_gauge(shared);
    // Stalled tiers resume, hogs are released, a crashed worker's restart sees its fault gone.
    shared.wake.notify_all();
}

/// `injected_faults_active` from the registry.
pub(super) fn refresh_fault_gauge(shared: &Shared) {
    let counts = shared.faults().count_by_kind(now_ms());
    for (kind, n) in counts {
        shared
            .metrics
            .injected_faults_active
            .with_label_values(&[kind])
            .set(n as i64);
    }
}

/// `(worker_id, gpu_index, gpu_type)` of worker `i`.
pub(super) fn worker_labels(shared: &Shared, i: usize) -> (String, String, String) {
    (
        shared.topology.workers[i].clone(),
        i.to_string(),
        shared.gpu_backend.gpu_type(i as u32),
    )
}

/// Per-worker fault gauges at scrape time: the Xid code in effect and the throttle's heat.
pub(super) fn worker_fault_readings(shared: &Shared, i: usize, now: u64) -> (u32, f64) {
    let reg = shared.faults();
    (
        reg.xid(i, now).unwrap_or(0),
        throttle_heat(reg.throttle_factor(i, now)),
    )
}

/// The topology the registry checks scopes against.
pub(super) fn topology(cfg: &Config) -> Topology {
    Topology {
        workers: (0..cfg.workers.count)
            .map(|i| format!("worker-{i}"))
            .collect(),
        models: cfg.models.iter().map(|m| m.name.clone()).collect(),
    }
}
