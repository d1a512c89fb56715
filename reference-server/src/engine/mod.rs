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

mod deliver;
mod dispatch;
mod faults;
mod generate;
mod worker;

use dispatch::dispatcher_loop;
use faults::{sync_faults, RestartPlan};
use worker::worker_loop;

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
    /// VRAM taken by `gpu_oom` hogs (derived from the fault registry).
    hog_bytes: u64,
    vram_total: u64,
    gpu: ModelledGpu,
    busy_since: Option<Instant>,
    tx: mpsc::Sender<Assignment>,
}

impl WorkerSlot {
    fn vram_used(&self) -> u64 {
        self.warm.iter().map(|w| w.bytes).sum::<u64>()
            + self.loading_bytes
            + self.activation_bytes
            + self.hog_bytes
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
    /// How each crashed worker comes back (`None`: after the configured backoff).
    restart: Vec<Mutex<Option<RestartPlan>>>,
    /// Active injected faults.
    faults: Mutex<crate::faults::Registry>,
    /// Worker and model names, to check fault scopes against.
    topology: crate::faults::Topology,
    /// Real device memory held by `gpu_oom` hogs, by fault id.
    #[cfg(feature = "cuda")]
    device_hogs: Mutex<HashMap<String, faults::DeviceHog>>,
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
                hog_bytes: 0,
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
        let topology = faults::topology(&cfg);
        let restart = (0..cfg.workers.count).map(|_| Mutex::new(None)).collect();
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
            restart,
            faults: Mutex::new(crate::faults::Registry::new()),
            topology,
            #[cfg(feature = "cuda")]
            device_hogs: Mutex::new(HashMap::new()),
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
        let s = shared.clone();
        std::thread::Builder::new()
            .name("fault-ticker".into())
            .spawn(move || faults::ticker_loop(&s))
            .context("spawning the fault ticker")?;
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
                *self.shared.restart[i].lock().expect("restart lock") = None;
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
        // A stalled queue or a hogged GPU must not keep in-flight work from finishing.
        self.revert_all_faults();
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
        let fault_now = crate::faults::now_ms();
        let mut st = self.lock();
        sync_faults(&mut st, &self.shared.faults(), fault_now);
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
            let (xid, heat) = faults::worker_fault_readings(&self.shared, i, fault_now);
            let modelled = w.gpu.sample(now, used, w.vram_total, heat);
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
            m.dcgm_fi_dev_xid_errors
                .with_label_values(&[idx.as_str(), w.id.as_str(), gpu_type.as_str()])
                .set(i64::from(xid));
        }
        drop(st);
        faults::refresh_fault_gauge(&self.shared);
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
        span_id = %job.ctx.span_id,
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
