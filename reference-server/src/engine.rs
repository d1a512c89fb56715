//! The generation engine: a dispatcher that serves the tiered queue to GPU workers, and the
//! workers that run batches through worker assignment, generation, post-generation safety and
//! delivery (the back half of the seed 000 trace tree).
//!
//! Workers are OS threads (tensor compute blocks); the dispatcher decides under one lock which
//! jobs run where, accounting each worker's VRAM (weights of warm models + activations).

use crate::compute::{encode_png, ImageClassifier, LoadedModel, RgbImage};
use crate::config::Config;
use crate::error::ApiError;
use crate::gpu::{GpuBackend, ModelledGpu};
use crate::jobs::{Checkpoint, Job, JobState, JobTable, Outcome, SafetyBlock};
use crate::metrics::Metrics;
use crate::queue::{BatchKey, Entry, TieredQueue};
use crate::rolling::{RetryTracker, Window};
use crate::store::ObjectStore;
use crate::types::Tier;
use anyhow::Context;
use axum::http::StatusCode;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::{error, info, info_span, warn};

/// Post-generation classifier threshold: a score above it blocks the image.
pub const IMAGE_BLOCK_THRESHOLD: f32 = 0.5;

/// A model resident on a worker.
struct WarmModel {
    name: String,
    model: Arc<LoadedModel>,
    bytes: u64,
}

/// The dispatcher's view of one worker.
struct WorkerSlot {
    id: String,
    busy: bool,
    alive: bool,
    /// Least recently used first.
    warm: Vec<WarmModel>,
    /// Weight bytes reserved for a model being loaded.
    loading_bytes: u64,
    activation_bytes: u64,
    vram_total: u64,
    gpu: ModelledGpu,
    busy_since: Option<Instant>,
    tx: mpsc::Sender<Assignment>,
}

impl WorkerSlot {
    fn vram_used(&self) -> u64 {
        self.warm.iter().map(|w| w.bytes).sum::<u64>() + self.loading_bytes + self.activation_bytes
    }
    fn warm_model(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.warm
            .iter()
            .find(|w| w.name == name)
            .map(|w| w.model.clone())
    }
}

/// Work handed to a worker.
struct Assignment {
    /// Jobs with the instant each entered the queue.
    jobs: Vec<(Arc<Job>, Instant)>,
    batch_wait: Duration,
    dispatched: Instant,
    activation_bytes: u64,
}

struct State {
    queue: TieredQueue<Arc<Job>>,
    workers: Vec<WorkerSlot>,
    /// When the dispatcher began holding the head job for batch-mates.
    holding_since: Option<Instant>,
    dequeued: [Window; 3],
    completed: Window,
    draining: bool,
}

struct Shared {
    cfg: Arc<Config>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    wake: Condvar,
    jobs: JobTable,
    store: ObjectStore,
    checkpoints: PathBuf,
    encoders: HashMap<String, Arc<LoadedModel>>,
    model_bytes: HashMap<String, u64>,
    classifier: Arc<ImageClassifier>,
    device: Device,
    gpu_backend: GpuBackend,
    crash: Vec<Arc<AtomicBool>>,
    stop: AtomicBool,
    tally: Mutex<Tally>,
}

/// Request and safety counts behind the ratio gauges of seed 000.
struct Tally {
    requests: u64,
    pre_blocked: u64,
    post_checked: u64,
    post_blocked: u64,
    retries: RetryTracker,
}

/// Handle to the running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

/// Why a batch stopped early.
enum BatchEnd {
    Done,
    WorkerDied,
}

impl Engine {
    /// Prepares weights (generating them on first use), loads the text encoders and the image
    /// classifier, and starts the dispatcher and the workers.
    pub fn start(
        cfg: Arc<Config>,
        metrics: Arc<Metrics>,
        device: Device,
    ) -> anyhow::Result<Engine> {
        let mut encoders = HashMap::new();
        let mut model_bytes = HashMap::new();
        for profile in &cfg.models {
            let m = LoadedModel::load(profile, &cfg.weights_cache, &device)
                .with_context(|| format!("loading model {}", profile.name))?;
            model_bytes.insert(profile.name.clone(), m.weight_bytes());
            encoders.insert(profile.name.clone(), Arc::new(m));
        }
        let classifier = Arc::new(
            ImageClassifier::load(&cfg.weights_cache, &device)
                .context("loading the image classifier")?,
        );
        let store = ObjectStore::open(&cfg.data_dir.join("images"))?;
        let checkpoints = cfg.data_dir.join("checkpoints");
        std::fs::create_dir_all(&checkpoints)
            .with_context(|| format!("cannot create {}", checkpoints.display()))?;
        let gpu_backend = GpuBackend::detect();

        let mut workers = Vec::new();
        let mut receivers = Vec::new();
        let mut crash = Vec::new();
        for i in 0..cfg.workers.count {
            let (tx, rx) = mpsc::channel();
            receivers.push(rx);
            crash.push(Arc::new(AtomicBool::new(false)));
            workers.push(WorkerSlot {
                id: format!("worker-{i}"),
                busy: false,
                alive: true,
                warm: Vec::new(),
                loading_bytes: 0,
                activation_bytes: 0,
                vram_total: cfg.workers.vram_bytes,
                gpu: ModelledGpu::new(Instant::now()),
                busy_since: None,
                tx,
            });
        }
        let caps = Tier::ALL.map(|t| cfg.tiers.get(t).queue_cap);
        let minute = Duration::from_secs(60);
        let state = State {
            queue: TieredQueue::new(caps, Duration::from_secs_f64(cfg.aging_seconds_per_tier)),
            workers,
            holding_since: None,
            dequeued: [
                Window::new(minute),
                Window::new(minute),
                Window::new(minute),
            ],
            completed: Window::new(minute),
            draining: false,
        };
        let shared = Arc::new(Shared {
            cfg,
            metrics,
            state: Mutex::new(state),
            wake: Condvar::new(),
            jobs: JobTable::new(10_000),
            store,
            checkpoints,
            encoders,
            model_bytes,
            classifier,
            device,
            gpu_backend,
            crash,
            stop: AtomicBool::new(false),
            tally: Mutex::new(Tally {
                requests: 0,
                pre_blocked: 0,
                post_checked: 0,
                post_blocked: 0,
                retries: RetryTracker::new(minute),
            }),
        });
        for (i, rx) in receivers.into_iter().enumerate() {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker_loop(&s, i, rx))
                .context("spawning a worker thread")?;
        }
        let s = shared.clone();
        std::thread::Builder::new()
            .name("dispatcher".into())
            .spawn(move || dispatcher_loop(&s))
            .context("spawning the dispatcher")?;
        Ok(Engine { shared })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Arc<Config> {
        &self.shared.cfg
    }

    /// The metrics it records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// The object store holding delivered images.
    pub fn store(&self) -> &ObjectStore {
        &self.shared.store
    }

    /// The loaded text encoder of a model (prompt processing runs before the queue).
    pub fn encoder(&self, model: &str) -> Option<Arc<LoadedModel>> {
        self.shared.encoders.get(model).cloned()
    }

    /// Jobs by id.
    pub fn jobs(&self) -> &JobTable {
        &self.shared.jobs
    }

    /// Worker ids.
    pub fn worker_ids(&self) -> Vec<String> {
        self.lock().workers.iter().map(|w| w.id.clone()).collect()
    }

    /// The GPU backend telemetry comes from.
    pub fn gpu_backend(&self) -> &GpuBackend {
        &self.shared.gpu_backend
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().expect("engine state lock")
    }

    /// Counts an incoming generation request; `repeat_key` identifies user and prompt (hashed)
    /// so repeats feed `user_retry_rate`.
    pub fn note_request(&self, repeat_key: u64) {
        let mut t = self.shared.tally.lock().expect("tally lock");
        t.requests += 1;
        t.retries.record(repeat_key, Instant::now());
    }

    /// Counts a request blocked by the prompt check.
    pub fn note_pre_block(&self) {
        self.shared.tally.lock().expect("tally lock").pre_blocked += 1;
    }

    /// Admits a job to the queue (admission control: a full tier answers 429 with Retry-After).
    pub fn submit(&self, job: Arc<Job>) -> Result<(), ApiError> {
        let mut st = self.lock();
        if st.draining {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is draining and accepts no new work",
            )
            .retry_after(5));
        }
        if !st.workers.iter().any(|w| w.alive) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_capacity",
                "no GPU worker is available",
            )
            .retry_after(2));
        }
        let tier = job.spec.tier;
        *job.queue_span.lock().expect("span lock") =
            Some(info_span!(parent: &job.span(), "queue_wait", tier = tier.as_str()));
        let entry = Entry {
            key: batch_key(&job),
            tier,
            enqueued: Instant::now(),
            deadline: job.deadline,
            item: job.clone(),
        };
        match st.queue.push(entry) {
            Ok(()) => {
                self.shared.jobs.insert(job);
                drop(st);
                self.shared.wake.notify_all();
                Ok(())
            }
            Err((full, _)) => {
                // Roughly how long until a slot frees: the queue ahead divided among workers,
                // at the tier's default work per job; never less than a second.
                let workers = st.workers.iter().filter(|w| w.alive).count().max(1);
                let secs = (full.depth as f64 / workers as f64).ceil() as u64;
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "queue_full",
                    format!("the {} queue is full ({} waiting)", full.tier, full.depth),
                )
                .retry_after(secs.clamp(1, 60)))
            }
        }
    }

    /// Position of a queued job within its tier.
    pub fn queue_position(&self, id: &str) -> Option<usize> {
        self.lock().queue.position_where(|j| j.id == id)
    }

    /// Cancels a job: a queued one leaves the queue, a running one stops at its next step.
    /// Returns the status after the request, or `None` for an unknown id.
    pub fn cancel(&self, id: &str) -> Option<crate::jobs::JobStatus> {
        let job = self.shared.jobs.get(id)?;
        job.cancel();
        self.lock().queue.remove_where(|j| j.id == id);
        finish(&self.shared, &job, Outcome::Cancelled);
        self.shared.wake.notify_all();
        Some(job.status())
    }

    /// Kills a worker mid-generation: its checkpointed jobs resume elsewhere, the others fail,
    /// and it restarts after the configured backoff. Returns false for an unknown worker.
    pub fn crash_worker(&self, worker_id: &str) -> bool {
        let st = self.lock();
        match st.workers.iter().position(|w| w.id == worker_id) {
            Some(i) => {
                self.shared.crash[i].store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Whether any worker is alive to take work.
    pub fn is_ready(&self) -> bool {
        let st = self.lock();
        !st.draining && st.workers.iter().any(|w| w.alive)
    }

    /// Stops accepting work, waits up to `timeout` for queued and running jobs, then fails what
    /// is left with 503 `shutting_down`.
    pub fn drain(&self, timeout: Duration) {
        let until = Instant::now() + timeout;
        self.lock().draining = true;
        loop {
            let busy = {
                let st = self.lock();
                !st.queue.is_empty() || st.workers.iter().any(|w| w.busy)
            };
            if !busy || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.lock().queue.drain_all();
        let err = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server shut down before this job finished",
        );
        for e in left {
            finish(&self.shared, &e.item, Outcome::Failed(err.clone()));
        }
        for job in self.shared.jobs.unfinished() {
            finish(&self.shared, &job, Outcome::Failed(err.clone()));
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
    }

    /// Brings the scrape-time gauges up to date: queue, GPU telemetry, pool size, rates.
    pub fn refresh_gauges(&self) {
        let m = &self.shared.metrics;
        let cfg = &self.shared.cfg;
        let now = Instant::now();
        let mut st = self.lock();
        for tier in Tier::ALL {
            let t = tier.as_str();
            for model in cfg.model_names() {
                m.queue_depth
                    .with_label_values(&[t, model])
                    .set(st.queue.depth_for_model(tier, model) as i64);
            }
            m.queue_oldest_seconds
                .with_label_values(&[t])
                .set(st.queue.oldest_age(tier, now).as_secs_f64());
            let per_s = st.dequeued[tier.rank()].per_second(now);
            m.queue_throughput_per_second
                .with_label_values(&[t])
                .set(per_s);
            let alive = st.workers.iter().filter(|w| w.alive).count();
            m.worker_pool_size.with_label_values(&[t]).set(alive as i64);
        }
        m.generations_per_minute.set(st.completed.count(now) as f64);
        let backend = &self.shared.gpu_backend;
        for (i, w) in st.workers.iter_mut().enumerate() {
            if let Some(since) = w.busy_since {
                w.gpu.record_busy(since, now);
                w.busy_since = Some(now);
            }
            let used = w.vram_used();
            let modelled = w.gpu.sample(now, used, w.vram_total, 1.0);
            let sample = backend.sample_device(i as u32).unwrap_or(modelled);
            let gpu_type = backend.gpu_type(i as u32);
            let labels = [w.id.as_str(), gpu_type.as_str(), cfg.region.as_str()];
            let pct = if sample.vram_total_bytes > 0 {
                100.0 * sample.vram_used_bytes as f64 / sample.vram_total_bytes as f64
            } else {
                0.0
            };
            m.gpu_vram_utilization_percent
                .with_label_values(&labels)
                .set(pct);
            m.gpu_compute_utilization_percent
                .with_label_values(&labels)
                .set(sample.utilization_percent);
            m.gpu_temperature_celsius
                .with_label_values(&labels)
                .set(sample.temperature_celsius);
            let idx = i.to_string();
            let mem = [w.id.as_str(), idx.as_str(), gpu_type.as_str()];
            m.gpu_memory_used_bytes
                .with_label_values(&mem)
                .set(sample.vram_used_bytes as i64);
            m.gpu_memory_total_bytes
                .with_label_values(&mem)
                .set(sample.vram_total_bytes as i64);
        }
        drop(st);
        {
            let mut t = self.shared.tally.lock().expect("tally lock");
            let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            m.prompt_block_rate.set(ratio(t.pre_blocked, t.requests));
            m.image_block_rate
                .set(ratio(t.post_blocked, t.post_checked));
            m.user_retry_rate.set(t.retries.rate(now));
        }
        let hits = m.warm_pool_requests_total.with_label_values(&["hit"]).get() as f64;
        let cold = m
            .warm_pool_requests_total
            .with_label_values(&["cold_start"])
            .get() as f64;
        let failed = m
            .warm_pool_requests_total
            .with_label_values(&["failed"])
            .get() as f64;
        let lookups = hits + cold + failed;
        m.warm_pool_hit_rate
            .set(if lookups > 0.0 { hits / lookups } else { 1.0 });
        for (model, price) in &cfg.prices {
            m.revenue_per_generation
                .with_label_values(&[model])
                .set(*price);
        }
    }
}

/// Batch compatibility of a job, including the step it resumes from.
fn batch_key(job: &Job) -> BatchKey {
    let resume_step = job
        .checkpoint
        .lock()
        .expect("checkpoint lock")
        .as_ref()
        .map_or(0, |c| c.step);
    BatchKey {
        model: job.spec.model.clone(),
        steps: job.spec.steps,
        resolution: job.spec.resolution.to_string(),
        resume_step,
    }
}

/// Ends a job once, recording its outcome in metrics and the log.
fn finish(shared: &Shared, job: &Job, outcome: Outcome) {
    if !job.finish(&outcome) {
        return;
    }
    let m = &shared.metrics;
    let tier = job.spec.tier.as_str();
    let model = job.spec.model.as_str();
    let status = outcome.status_label();
    let age = job.received.elapsed().as_secs_f64();
    m.requests_total
        .with_label_values(&[tier, status, model])
        .inc();
    m.job_age_seconds.with_label_values(&[tier]).observe(age);
    match &outcome {
        Outcome::Succeeded { .. } => {
            m.generation_time_seconds
                .with_label_values(&[tier, model, job.spec.scheduler, "false"])
                .observe(age);
            m.image_generation_total
                .with_label_values(&["success"])
                .inc();
            m.image_generation_duration_seconds.observe(age);
            shared
                .state
                .lock()
                .expect("engine state lock")
                .completed
                .record(Instant::now());
        }
        Outcome::Cancelled => m.job_cancellation_total.with_label_values(&[tier]).inc(),
        Outcome::Failed(e) => {
            if e.code == "deadline_exceeded" {
                m.job_timeout_total.with_label_values(&[tier]).inc();
            }
            m.image_generation_total.with_label_values(&["error"]).inc();
        }
        Outcome::Blocked(..) => m
            .image_generation_total
            .with_label_values(&["blocked"])
            .inc(),
    }
    let s = job.status();
    let t = |k: &str| s.timings_ms.get(k).copied().unwrap_or(0.0);
    let root = job.span();
    let _enter = root.enter();
    let (event, error_code) = match &outcome {
        Outcome::Succeeded { .. } => ("generation_complete", ""),
        Outcome::Blocked(..) => ("generation_blocked", "content_blocked"),
        Outcome::Failed(e) => ("generation_failed", e.code),
        Outcome::Cancelled => ("generation_cancelled", "cancelled"),
    };
    info!(
        event,
        request_id = %job.id,
        trace_id = %job.ctx.trace_id,
        worker_id = s.worker_id.as_deref().unwrap_or(""),
        status,
        error_code,
        metrics.queue_wait_ms = t("queue_wait"),
        metrics.model_load_ms = t("model_load"),
        metrics.generation_ms = t("generation"),
        metrics.safety_check_ms = t("safety_post_check"),
        metrics.cdn_upload_ms = t("delivery"),
        metrics.total_ms = t("total"),
        config.model = model,
        config.steps = job.spec.steps,
        config.scheduler = job.spec.scheduler,
        config.resolution = %job.spec.resolution,
        config.batch_size = s.batch_size.unwrap_or(0),
        safety.prompt_passed = true,
        safety.image_passed = !matches!(outcome, Outcome::Blocked(..)),
        user_context.user_id_hash = %job.ctx.user_id_hash,
        user_context.tier = tier,
        user_context.organization_id_hash = %job.ctx.organization_id_hash,
    );
    drop(_enter);
    drop(root);
    job.close_span();
}

fn deadline_error() -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "deadline_exceeded",
        "the job did not finish before its tier's deadline",
    )
}

/// Serves the queue to idle workers until the engine stops.
fn dispatcher_loop(shared: &Shared) {
    let max_batch = shared.cfg.batching.max_batch;
    let max_wait = Duration::from_millis(shared.cfg.batching.max_wait_ms);
    let mut st = shared.state.lock().expect("engine state lock");
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let expired = st.queue.expire(now);
        if !expired.is_empty() {
            drop(st);
            for e in expired {
                e.item.queue_span.lock().expect("span lock").take();
                finish(shared, &e.item, Outcome::Failed(deadline_error()));
            }
            st = shared.state.lock().expect("engine state lock");
            continue;
        }
        let idle = st.workers.iter().any(|w| w.alive && !w.busy);
        let head = st.queue.peek(now).map(|e| (e.key.clone(), e.enqueued));
        let Some((key, enqueued)) = head.filter(|_| idle) else {
            st.holding_since = None;
            let wait = st
                .queue
                .next_deadline()
                .map_or(Duration::from_millis(200), |d| {
                    d.saturating_duration_since(now)
                })
                .clamp(Duration::from_millis(1), Duration::from_millis(200));
            st = shared
                .wake
                .wait_timeout(st, wait)
                .expect("engine state lock")
                .0;
            continue;
        };
        // Dynamic batching: hold the head briefly for compatible batch-mates.
        let age = now.saturating_duration_since(enqueued);
        let holding_since = *st.holding_since.get_or_insert(now);
        if st.queue.count_compatible(&key) < max_batch && age < max_wait {
            st = shared
                .wake
                .wait_timeout(st, max_wait - age)
                .expect("engine state lock")
                .0;
            continue;
        }
        st.holding_since = None;
        let batch_wait = now.saturating_duration_since(holding_since);
        let w = choose_worker(&st.workers, &key.model);
        let mut batch = st.queue.take_batch(now, max_batch);
        // Fit the batch into the worker's VRAM: evict cold models, shrink the batch, or refuse.
        let weights = if st.workers[w].warm_model(&key.model).is_some() {
            0
        } else {
            shared.model_bytes.get(&key.model).copied().unwrap_or(0)
        };
        let encoder = &shared.encoders[&key.model];
        let res = batch[0].item.spec.resolution;
        let oom;
        loop {
            let act = encoder.activation_bytes(batch.len(), res);
            let slot = &mut st.workers[w];
            let pinned: u64 = slot
                .warm
                .iter()
                .filter(|m| m.name == key.model)
                .map(|m| m.bytes)
                .sum();
            if pinned + weights + act + slot.loading_bytes + slot.activation_bytes
                <= slot.vram_total
            {
                // Evict least recently used models until it fits.
                while slot.vram_used() + weights + act > slot.vram_total {
                    let i = slot
                        .warm
                        .iter()
                        .position(|m| m.name != key.model)
                        .expect("fit check guarantees an evictable model");
                    let gone = slot.warm.remove(i);
                    info!(event = "model_unloaded", worker_id = %slot.id, model = %gone.name, reason = "lru");
                }
                slot.activation_bytes += act;
                slot.loading_bytes += weights;
                oom = None;
                let dispatched_at = Instant::now();
                let mut jobs = Vec::with_capacity(batch.len());
                for e in batch.drain(..) {
                    st.dequeued[e.tier.rank()].record(dispatched_at);
                    jobs.push((e.item, e.enqueued));
                }
                let slot = &mut st.workers[w];
                slot.busy = true;
                slot.busy_since = Some(dispatched_at);
                let _ = slot.tx.send(Assignment {
                    jobs,
                    batch_wait,
                    dispatched: dispatched_at,
                    activation_bytes: act,
                });
                break;
            }
            if batch.len() > 1 {
                let back = batch.pop().expect("batch has more than one job");
                st.queue.push_front(back);
                continue;
            }
            oom = batch.pop();
            break;
        }
        if let Some(e) = oom {
            drop(st);
            warn!(event = "gpu_oom", request_id = %e.item.id, model = %key.model);
            let err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "gpu_oom",
                "the generation does not fit in any worker's GPU memory",
            )
            .retry_after(5);
            finish(shared, &e.item, Outcome::Failed(err));
            st = shared.state.lock().expect("engine state lock");
        }
    }
}

/// An idle live worker, preferring one with the model warm, then the most free VRAM.
fn choose_worker(workers: &[WorkerSlot], model: &str) -> usize {
    let idle = || {
        workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.alive && !w.busy)
    };
    if let Some((i, _)) = idle().find(|(_, w)| w.warm_model(model).is_some()) {
        return i;
    }
    idle()
        .max_by_key(|(_, w)| w.vram_total.saturating_sub(w.vram_used()))
        .map(|(i, _)| i)
        .expect("dispatcher only chooses when a worker is idle")
}

fn worker_loop(shared: &Shared, index: usize, rx: mpsc::Receiver<Assignment>) {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        if shared.crash[index].load(Ordering::SeqCst) {
            die_and_restart(shared, index, Vec::new());
            continue;
        }
        let a = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(a) => a,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let jobs: Vec<Arc<Job>> = a.jobs.iter().map(|(j, _)| j.clone()).collect();
        let act = a.activation_bytes;
        let end =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_batch(shared, index, a)));
        let now = Instant::now();
        {
            let mut st = shared.state.lock().expect("engine state lock");
            let slot = &mut st.workers[index];
            slot.activation_bytes = slot.activation_bytes.saturating_sub(act);
            slot.loading_bytes = 0;
            if let Some(since) = slot.busy_since.take() {
                slot.gpu.record_busy(since, now);
            }
            slot.busy = false;
        }
        match end {
            Ok(BatchEnd::Done) => {}
            Ok(BatchEnd::WorkerDied) => die_and_restart(shared, index, jobs),
            Err(_) => {
                let err = ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the worker failed while generating",
                );
                for j in &jobs {
                    finish(shared, j, Outcome::Failed(err.clone()));
                }
            }
        }
        shared.wake.notify_all();
    }
}

/// A worker death: GPU memory is lost, checkpointed jobs go back to the front of the queue, the
/// rest fail; the worker comes back after the backoff.
fn die_and_restart(shared: &Shared, index: usize, jobs: Vec<Arc<Job>>) {
    shared.crash[index].store(false, Ordering::SeqCst);
    let id = {
        let mut st = shared.state.lock().expect("engine state lock");
        let slot = &mut st.workers[index];
        slot.alive = false;
        slot.warm.clear();
        slot.id.clone()
    };
    error!(event = "worker_crashed", worker_id = %id, jobs = jobs.len());
    let lost = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "worker_lost",
        "the worker running this job died and the job had no checkpoint",
    )
    .retry_after(2);
    for job in jobs {
        if job.is_terminal() {
            continue;
        }
        let resumable = job.checkpoint.lock().expect("checkpoint lock").is_some();
        if resumable {
            job.update(|s| s.status = JobState::Queued);
            let mut st = shared.state.lock().expect("engine state lock");
            *job.queue_span.lock().expect("span lock") =
                Some(info_span!(parent: &job.span(), "queue_wait", resumed = true));
            st.queue.push_front(Entry {
                key: batch_key(&job),
                tier: job.spec.tier,
                enqueued: Instant::now(),
                deadline: job.deadline,
                item: job.clone(),
            });
        } else {
            finish(shared, &job, Outcome::Failed(lost.clone()));
        }
    }
    shared.wake.notify_all();
    std::thread::sleep(Duration::from_millis(shared.cfg.workers.restart_backoff_ms));
    shared.state.lock().expect("engine state lock").workers[index].alive = true;
    info!(event = "worker_restarted", worker_id = %id);
    shared.wake.notify_all();
}

/// Fails `job` if its deadline passed or it was cancelled; true when it should stop.
fn stop_if_done(shared: &Shared, job: &Job, now: Instant) -> bool {
    if job.is_terminal() || job.is_cancelled() {
        return true;
    }
    if now >= job.deadline {
        finish(shared, job, Outcome::Failed(deadline_error()));
        return true;
    }
    false
}

/// Runs one batch from worker assignment to delivery.
fn run_batch(shared: &Shared, index: usize, a: Assignment) -> BatchEnd {
    let m = &shared.metrics;
    let cfg = &shared.cfg;
    let worker_id = shared.state.lock().expect("engine state lock").workers[index]
        .id
        .clone();
    let mut jobs: Vec<Arc<Job>> = Vec::new();
    for (job, enqueued) in a.jobs {
        job.queue_span.lock().expect("span lock").take();
        if stop_if_done(shared, &job, a.dispatched) {
            continue;
        }
        let queued_for = a.dispatched.saturating_duration_since(enqueued);
        m.queue_wait_seconds
            .with_label_values(&[job.spec.tier.as_str()])
            .observe(queued_for.as_secs_f64());
        let max_wait = cfg.tiers.get(job.spec.tier).max_wait_seconds;
        if queued_for.as_secs_f64() > max_wait {
            m.queue_starvation_events_total
                .with_label_values(&[job.spec.tier.as_str()])
                .inc();
        }
        job.record_timing("queue_wait", queued_for);
        jobs.push(job);
    }
    if jobs.is_empty() {
        return BatchEnd::Done;
    }
    let model_name = jobs[0].spec.model.clone();
    m.batch_size
        .with_label_values(&[&model_name])
        .observe(jobs.len() as f64);
    m.batch_wait_seconds
        .with_label_values(&[&model_name])
        .observe(a.batch_wait.as_secs_f64());

    // worker_assignment: warm-pool check, cold load from disk when needed.
    let assign_start = Instant::now();
    let spans: Vec<_> = jobs
        .iter()
        .map(|j| info_span!(parent: &j.span(), "worker_assignment", worker_id = %worker_id, model = %model_name, cache_hit = tracing::field::Empty))
        .collect();
    let warm = {
        let mut st = shared.state.lock().expect("engine state lock");
        let slot = &mut st.workers[index];
        let found = slot.warm.iter().position(|w| w.name == model_name);
        found.map(|i| {
            // Most recently used goes last.
            let w = slot.warm.remove(i);
            let model = w.model.clone();
            slot.warm.push(w);
            model
        })
    };
    let model = match warm {
        Some(model) => {
            m.warm_pool_requests_total.with_label_values(&["hit"]).inc();
            for s in &spans {
                s.record("cache_hit", true);
            }
            model
        }
        None => {
            for s in &spans {
                s.record("cache_hit", false);
            }
            let profile = cfg.model(&model_name).expect("validated model").clone();
            let started = Instant::now();
            let loaded = {
                let _g = spans[0].enter();
                let _s = info_span!("model_load", model = %model_name).entered();
                LoadedModel::load(&profile, &cfg.weights_cache, &shared.device)
            };
            let took = started.elapsed();
            match loaded {
                Ok(model) => {
                    m.warm_pool_requests_total
                        .with_label_values(&["cold_start"])
                        .inc();
                    m.model_load_seconds
                        .with_label_values(&[&model_name])
                        .observe(took.as_secs_f64());
                    info!(event = "model_loaded", worker_id = %worker_id, model = %model_name, load_ms = took.as_secs_f64() * 1e3);
                    let model = Arc::new(model);
                    let mut st = shared.state.lock().expect("engine state lock");
                    let slot = &mut st.workers[index];
                    slot.loading_bytes = 0;
                    slot.warm.push(WarmModel {
                        name: model_name.clone(),
                        bytes: model.weight_bytes(),
                        model: model.clone(),
                    });
                    for j in &jobs {
                        j.record_timing("model_load", took);
                    }
                    model
                }
                Err(e) => {
                    m.warm_pool_requests_total
                        .with_label_values(&["failed"])
                        .inc();
                    m.model_load_failures_total
                        .with_label_values(&[&model_name])
                        .inc();
                    error!(event = "model_load_failed", worker_id = %worker_id, model = %model_name, error = %format!("{e:#}"));
                    let err = ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "model_load_failed",
                        format!("model {model_name} could not be loaded"),
                    )
                    .retry_after(5);
                    for j in &jobs {
                        finish(shared, j, Outcome::Failed(err.clone()));
                    }
                    return BatchEnd::Done;
                }
            }
        }
    };
    drop(spans);
    let assign_took = assign_start.elapsed();
    for j in &jobs {
        j.record_timing("worker_assignment", assign_took);
        j.update(|s| {
            s.status = JobState::Running;
            s.worker_id = Some(worker_id.clone());
            s.batch_size = Some(jobs.len());
        });
    }
    match generate(shared, index, &worker_id, &model, &jobs) {
        Ok(Some(images)) => {
            post_check_and_deliver(shared, &jobs, images);
            BatchEnd::Done
        }
        Ok(None) => BatchEnd::Done,
        Err(Died) => BatchEnd::WorkerDied,
    }
}

/// The worker died during generation.
struct Died;

/// Latent init, the denoising loop (with checkpoints for long jobs) and VAE decode. `Ok(None)`
/// when every job in the batch ended early (cancelled, deadline).
fn generate(
    shared: &Shared,
    index: usize,
    worker_id: &str,
    model: &LoadedModel,
    jobs: &[Arc<Job>],
) -> Result<Option<Vec<RgbImage>>, Died> {
    let m = &shared.metrics;
    let cfg = &shared.cfg;
    let spec = &jobs[0].spec;
    let model_name = spec.model.as_str();
    let total = spec.steps;
    let gen_start = Instant::now();
    let gen_spans: Vec<_> = jobs
        .iter()
        .map(|j| info_span!(parent: &j.span(), "generation", worker_id, model = model_name, steps = total, batch_size = jobs.len()))
        .collect();
    let fail_internal = |e: anyhow::Error| {
        error!(event = "generation_failed_internal", worker_id, error = %format!("{e:#}"));
        let err = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "generation failed",
        );
        for j in jobs {
            finish(shared, j, Outcome::Failed(err.clone()));
        }
    };
    // latent_init, or the checkpoint of a resumed job.
    let resume = jobs[0].checkpoint.lock().expect("checkpoint lock").clone();
    let start_step = resume.as_ref().map_or(0, |c| c.step);
    let latents = {
        let _s: Vec<_> = gen_spans
            .iter()
            .map(|s| info_span!(parent: s, "latent_init").entered())
            .collect();
        if resume.is_some() {
            load_checkpoints(jobs, &shared.device)
        } else {
            let seeds: Vec<u64> = jobs.iter().map(|j| j.spec.seed).collect();
            model.init_latents(&seeds, spec.resolution)
        }
    };
    let mut latents = match latents {
        Ok(l) => l,
        Err(e) => {
            fail_internal(e);
            return Ok(None);
        }
    };
    if resume.is_some() {
        m.checkpoint_recovery_total
            .with_label_values(&[model_name])
            .inc();
        for j in jobs {
            j.update(|s| s.resumed_from_step = Some(start_step));
            info!(event = "job_resumed", request_id = %j.id, worker_id, from_step = start_step);
        }
    }
    let conds = match Tensor::stack(
        &jobs.iter().map(|j| j.spec.cond.clone()).collect::<Vec<_>>(),
        0,
    ) {
        Ok(c) => c,
        Err(e) => {
            fail_internal(e.into());
            return Ok(None);
        }
    };
    let video = model.profile().frames > 1;
    let every = cfg.workers.checkpoint_every_steps;
    let loop_spans: Vec<_> = gen_spans
        .iter()
        .map(|s| info_span!(parent: s, "diffusion_loop", steps = total, scheduler = spec.scheduler))
        .collect();
    for step in start_step..total {
        let now = Instant::now();
        let live = jobs
            .iter()
            .filter(|j| !stop_if_done(shared, j, now))
            .count();
        if live == 0 {
            return Ok(None);
        }
        if shared.crash[index].load(Ordering::SeqCst) {
            return Err(Died);
        }
        let t = Instant::now();
        let next = {
            let _s: Vec<_> = loop_spans
                .iter()
                .map(|s| info_span!(parent: s, "step", step = step + 1).entered())
                .collect();
            model.denoise_step(&latents, &conds, step as usize, total as usize)
        };
        latents = match next {
            Ok(l) => l,
            Err(e) => {
                fail_internal(e);
                return Ok(None);
            }
        };
        m.diffusion_step_time
            .observe_ms(&[model_name], t.elapsed().as_secs_f64() * 1e3);
        for j in jobs {
            j.update(|s| s.progress.step = step + 1);
        }
        if video && (step + 1) % every == 0 && step + 1 < total {
            let t = Instant::now();
            if let Err(e) = save_checkpoints(shared, jobs, &latents, step + 1) {
                warn!(event = "checkpoint_failed", worker_id, error = %format!("{e:#}"));
            }
            m.checkpoint_save_duration
                .observe_ms(&[model_name], t.elapsed().as_secs_f64() * 1e3);
        }
    }
    drop(loop_spans);
    if shared.crash[index].load(Ordering::SeqCst) {
        return Err(Died);
    }
    let t = Instant::now();
    let images = {
        let _s: Vec<_> = gen_spans
            .iter()
            .map(|s| info_span!(parent: s, "vae_decode", resolution = %spec.resolution, batch_size = jobs.len()).entered())
            .collect();
        model.vae_decode(&latents, &conds)
    };
    m.vae_decode_time
        .observe_ms(&[model_name], t.elapsed().as_secs_f64() * 1e3);
    let took = gen_start.elapsed();
    for j in jobs {
        j.record_timing("generation", took);
    }
    match images {
        Ok(images) => Ok(Some(images)),
        Err(e) => {
            fail_internal(e);
            Ok(None)
        }
    }
}

fn checkpoint_path(shared: &Shared, job: &Job) -> PathBuf {
    shared.checkpoints.join(format!("{}.safetensors", job.id))
}

/// Saves each job's latents row (atomically) and records the checkpoint on the job.
fn save_checkpoints(
    shared: &Shared,
    jobs: &[Arc<Job>],
    latents: &Tensor,
    step: u32,
) -> anyhow::Result<()> {
    for (i, job) in jobs.iter().enumerate() {
        let row = latents.narrow(0, i, 1)?;
        let path = checkpoint_path(shared, job);
        let tmp = path.with_extension("tmp");
        candle_core::safetensors::save(&HashMap::from([("latents".to_owned(), row)]), &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("publishing {}", path.display()))?;
        *job.checkpoint.lock().expect("checkpoint lock") = Some(Checkpoint { step, path });
    }
    Ok(())
}

fn load_checkpoints(jobs: &[Arc<Job>], device: &Device) -> anyhow::Result<Tensor> {
    let mut rows = Vec::new();
    for job in jobs {
        let cp = job
            .checkpoint
            .lock()
            .expect("checkpoint lock")
            .clone()
            .context("resumed job without a checkpoint")?;
        let mut t = candle_core::safetensors::load(&cp.path, device)
            .with_context(|| format!("reading {}", cp.path.display()))?;
        rows.push(t.remove("latents").context("checkpoint without latents")?);
    }
    Ok(Tensor::cat(&rows, 0)?)
}

/// Post-generation safety (classifiers, watermark) and delivery (PNG to the object store).
fn post_check_and_deliver(shared: &Shared, jobs: &[Arc<Job>], images: Vec<RgbImage>) {
    let m = &shared.metrics;
    let t = Instant::now();
    let scores = shared.classifier.classify(&images);
    let classify_ms = t.elapsed().as_secs_f64() * 1e3;
    m.safety_classifier_latency
        .observe_ms(&["image_classifier"], classify_ms);
    let scores = match scores {
        Ok(s) => s,
        Err(e) => {
            error!(event = "safety_check_failed", error = %format!("{e:#}"));
            let err = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "safety_check_failed",
                "the image safety check failed",
            );
            for j in jobs {
                finish(shared, j, Outcome::Failed(err.clone()));
            }
            return;
        }
    };
    for ((job, image), score) in jobs.iter().zip(images).zip(scores) {
        if job.is_terminal() {
            continue;
        }
        let post =
            info_span!(parent: &job.span(), "safety_post_check", passed = tracing::field::Empty);
        let per_image_ms = classify_ms / jobs.len() as f64;
        let category = if score.nsfw > IMAGE_BLOCK_THRESHOLD {
            Some("nsfw")
        } else if score.violence > IMAGE_BLOCK_THRESHOLD {
            Some("violence")
        } else {
            None
        };
        {
            let _p = post.enter();
            drop(info_span!("nsfw_classifier", score = score.nsfw as f64));
            drop(info_span!(
                "violence_classifier",
                score = score.violence as f64
            ));
            drop(info_span!("csam_scanner"));
        }
        post.record("passed", category.is_none());
        {
            let mut t = shared.tally.lock().expect("tally lock");
            t.post_checked += 1;
            t.post_blocked += u64::from(category.is_some());
        }
        if let Some(category) = category {
            let t = Instant::now();
            m.safety_check_time
                .observe_ms(&["post"], per_image_ms + t.elapsed().as_secs_f64() * 1e3);
            m.safety_blocks_total
                .with_label_values(&["post", category, job.spec.tier.as_str()])
                .inc();
            job.record_timing(
                "safety_post_check",
                Duration::from_secs_f64(per_image_ms / 1e3),
            );
            let block = SafetyBlock {
                stage: "post",
                category: category.to_owned(),
            };
            let err = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "content_blocked",
                "the generated image was blocked by the safety check",
            )
            .with_details(serde_json::json!({"stage": "post", "category": category}));
            drop(post);
            finish(shared, job, Outcome::Blocked(block, err));
            continue;
        }
        // watermark_embed + format_optimization: content credentials in a PNG text chunk.
        let t = Instant::now();
        let png = {
            let _p = post.enter();
            let _w = info_span!("watermark_embed").entered();
            encode_png(&image)
        };
        let watermark_ms = t.elapsed().as_secs_f64() * 1e3;
        m.safety_check_time
            .observe_ms(&["post"], per_image_ms + watermark_ms);
        job.record_timing(
            "safety_post_check",
            Duration::from_secs_f64((per_image_ms + watermark_ms) / 1e3),
        );
        drop(post);
        let png = match png {
            Ok(p) => p,
            Err(e) => {
                error!(event = "encode_failed", request_id = %job.id, error = %format!("{e:#}"));
                let err = ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "image encoding failed",
                );
                finish(shared, job, Outcome::Failed(err));
                continue;
            }
        };
        let delivery =
            info_span!(parent: &job.span(), "delivery", file_size = png.len(), format = "png");
        let t = Instant::now();
        let stored = {
            let _d = delivery.enter();
            let _u = info_span!("cdn_upload").entered();
            shared.store.put(&job.id, &png)
        };
        let upload = t.elapsed();
        m.cdn_upload_time.observe_ms(upload.as_secs_f64() * 1e3);
        job.record_timing("delivery", upload);
        drop(delivery);
        match stored {
            Ok(()) => {
                if let Some(cp) = job.checkpoint.lock().expect("checkpoint lock").take() {
                    let _ = std::fs::remove_file(cp.path);
                }
                finish(
                    shared,
                    job,
                    Outcome::Succeeded {
                        image_url: format!("/v1/images/{}.png", job.id),
                    },
                );
            }
            Err(e) => {
                error!(event = "upload_failed", request_id = %job.id, error = %format!("{e:#}"));
                let err = ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "upload_failed",
                    "storing the image failed",
                );
                finish(shared, job, Outcome::Failed(err));
            }
        }
    }
}
