//! Generation jobs: their status as clients see it, the one-way state machine, and the table
//! that finds them by id.

use crate::error::ApiError;
use crate::types::{Resolution, Tier};
use candle_core::Tensor;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// On a worker; `progress` says which step.
    Running,
    /// Image delivered.
    Succeeded,
    /// Ended by an error (deadline, GPU out of memory, worker lost, ...).
    Failed,
    /// Stopped by a safety check.
    Blocked,
    /// Cancelled by the client.
    Cancelled,
}

impl JobState {
    /// True for the states a job never leaves.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// Denoising progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Steps done.
    pub step: u32,
    /// Steps in all.
    pub total: u32,
}

/// A safety block, as reported to the client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SafetyBlock {
    /// `pre` (prompt) or `post` (image).
    pub stage: &'static str,
    /// The category that blocked.
    pub category: String,
}

/// What `GET /v1/generations/{id}` returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    /// Job id (`gen-...`).
    pub id: String,
    /// State.
    pub status: JobState,
    /// Tier.
    pub tier: Tier,
    /// Model profile.
    pub model: String,
    /// Denoising steps.
    pub steps: u32,
    /// Output resolution.
    pub resolution: Resolution,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Denoising progress.
    pub progress: Progress,
    /// Per-stage timings in milliseconds, in pipeline order.
    pub timings_ms: BTreeMap<String, f64>,
    /// Worker that ran (or runs) it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Size of the batch it ran in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Step it resumed from after its worker died, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from_step: Option<u32>,
    /// Where to fetch the image once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Why it was blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety: Option<SafetyBlock>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

/// The terminal outcome a job ends with.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Image delivered at this URL.
    Succeeded {
        /// Where to fetch it.
        image_url: String,
    },
    /// Blocked after generation.
    Blocked(SafetyBlock, ApiError),
    /// Failed with this error.
    Failed(ApiError),
    /// Cancelled by the client.
    Cancelled,
}

impl Outcome {
    /// The `status` label of `requests_total`.
    pub fn status_label(&self) -> &'static str {
        match self {
            Outcome::Succeeded { .. } => "success",
            Outcome::Blocked(..) => "blocked",
            Outcome::Failed(e) if e.code == "deadline_exceeded" => "timeout",
            Outcome::Failed(_) => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// A job's saved state: latents after `step` steps, on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Steps completed when it was saved.
    pub step: u32,
    /// The safetensors file holding the latents.
    pub path: std::path::PathBuf,
}

/// Everything a worker needs to run one accepted request.
#[derive(Debug)]
pub struct JobSpec {
    /// Tier.
    pub tier: Tier,
    /// Model profile name.
    pub model: String,
    /// Denoising steps.
    pub steps: u32,
    /// Output resolution.
    pub resolution: Resolution,
    /// Noise seed.
    pub seed: u64,
    /// Text conditioning, shape `[text_dim]`.
    pub cond: Tensor,
    /// Scheduler label (metrics and logs).
    pub scheduler: &'static str,
}

/// Log and trace context of a job; never holds a prompt, key or raw user id.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// W3C trace id (32 hex).
    pub trace_id: String,
    /// Id of the request's root span (16 hex).
    pub span_id: String,
    /// Hashed user id.
    pub user_id_hash: String,
    /// Hashed organisation (the key's holder).
    pub organization_id_hash: String,
}

/// One accepted generation.
#[derive(Debug)]
pub struct Job {
    /// Id.
    pub id: String,
    /// What to generate.
    pub spec: JobSpec,
    /// Trace and log context.
    pub ctx: JobContext,
    /// When the request arrived.
    pub received: Instant,
    /// When it must be done.
    pub deadline: Instant,
    cancelled: AtomicBool,
    status: watch::Sender<JobStatus>,
    /// Latest checkpoint, for resuming after a worker dies.
    pub checkpoint: Mutex<Option<Checkpoint>>,
    /// The open `queue_wait` span while it waits.
    pub queue_span: Mutex<Option<tracing::Span>>,
    /// The request's root span; released when the job ends so the trace is exported.
    root: Mutex<tracing::Span>,
}

impl Job {
    /// A new queued job.
    pub fn new(
        id: String,
        spec: JobSpec,
        ctx: JobContext,
        root: tracing::Span,
        received: Instant,
        deadline: Duration,
    ) -> Self {
        let status = JobStatus {
            id: id.clone(),
            status: JobState::Queued,
            tier: spec.tier,
            model: spec.model.clone(),
            steps: spec.steps,
            resolution: spec.resolution,
            seed: spec.seed,
            progress: Progress {
                step: 0,
                total: spec.steps,
            },
            timings_ms: BTreeMap::new(),
            worker_id: None,
            batch_size: None,
            resumed_from_step: None,
            image_url: None,
            safety: None,
            error: None,
        };
        Job {
            id,
            spec,
            ctx,
            received,
            deadline: received + deadline,
            cancelled: AtomicBool::new(false),
            status: watch::Sender::new(status),
            checkpoint: Mutex::new(None),
            queue_span: Mutex::new(None),
            root: Mutex::new(root),
        }
    }

    /// The request's root span (a disabled span once the job has ended), parent of stage spans.
    pub fn span(&self) -> tracing::Span {
        self.root.lock().expect("span lock").clone()
    }

    /// Closes this job's hold on the root span (and any open queue span), so the finished trace
    /// is exported even while the job stays in the table for status queries.
    pub fn close_span(&self) {
        self.queue_span.lock().expect("span lock").take();
        *self.root.lock().expect("span lock") = tracing::Span::none();
    }

    /// A snapshot of the status.
    pub fn status(&self) -> JobStatus {
        self.status.borrow().clone()
    }

    /// Subscribes to status changes (sync requests wait on this).
    pub fn subscribe(&self) -> watch::Receiver<JobStatus> {
        self.status.subscribe()
    }

    /// Updates a non-terminal status; ignored once terminal.
    pub fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        self.status.send_if_modified(|s| {
            if s.status.is_terminal() {
                return false;
            }
            f(s);
            true
        });
    }

    /// Records a stage timing.
    pub fn record_timing(&self, stage: &str, took: Duration) {
        let ms = took.as_secs_f64() * 1e3;
        self.status.send_modify(|s| {
            *s.timings_ms.entry(stage.to_owned()).or_default() += ms;
        });
    }

    /// Moves to a terminal state; returns false (and changes nothing) if already terminal, so
    /// every job is counted exactly once.
    pub fn finish(&self, outcome: &Outcome) -> bool {
        let total = self.received.elapsed();
        self.status.send_if_modified(|s| {
            if s.status.is_terminal() {
                return false;
            }
            match outcome {
                Outcome::Succeeded { image_url } => {
                    s.status = JobState::Succeeded;
                    s.image_url = Some(image_url.clone());
                    s.progress.step = s.progress.total;
                }
                Outcome::Blocked(block, err) => {
                    s.status = JobState::Blocked;
                    s.safety = Some(block.clone());
                    s.error = Some(err.body()["error"].clone());
                }
                Outcome::Failed(err) => {
                    s.status = JobState::Failed;
                    s.error = Some(err.body()["error"].clone());
                }
                Outcome::Cancelled => s.status = JobState::Cancelled,
            }
            s.timings_ms
                .insert("total".into(), total.as_secs_f64() * 1e3);
            true
        })
    }

    /// Asks for cancellation; workers check between steps.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was asked.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Whether it reached a terminal state.
    pub fn is_terminal(&self) -> bool {
        self.status.borrow().status.is_terminal()
    }
}

/// Jobs by id, keeping at most `retain` finished ones (oldest forgotten first) so memory stays
/// flat over long runs.
#[derive(Debug)]
pub struct JobTable {
    inner: Mutex<TableInner>,
    retain: usize,
}

#[derive(Debug, Default)]
struct TableInner {
    by_id: HashMap<String, Arc<Job>>,
    order: VecDeque<String>,
}

impl JobTable {
    /// A table remembering up to `retain` jobs.
    pub fn new(retain: usize) -> Self {
        JobTable {
            inner: Mutex::new(TableInner::default()),
            retain,
        }
    }

    /// Adds a job, forgetting the oldest finished ones beyond the retention.
    pub fn insert(&self, job: Arc<Job>) {
        let mut t = self.inner.lock().expect("job table lock");
        t.order.push_back(job.id.clone());
        t.by_id.insert(job.id.clone(), job);
        let mut scanned = 0;
        while t.by_id.len() > self.retain && scanned < t.order.len() {
            let id = t.order.pop_front().expect("order is not empty");
            if t.by_id.get(&id).is_some_and(|j| j.is_terminal()) {
                t.by_id.remove(&id);
            } else {
                t.order.push_back(id);
            }
            scanned += 1;
        }
    }

    /// Finds a job.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.inner
            .lock()
            .expect("job table lock")
            .by_id
            .get(id)
            .cloned()
    }

    /// Jobs not yet terminal.
    pub fn unfinished(&self) -> Vec<Arc<Job>> {
        let t = self.inner.lock().expect("job table lock");
        t.by_id
            .values()
            .filter(|j| !j.is_terminal())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use candle_core::Device;

    fn job(id: &str) -> Job {
        let spec = JobSpec {
            tier: Tier::Fast,
            model: "m".into(),
            steps: 4,
            resolution: Resolution {
                width: 64,
                height: 64,
            },
            seed: 1,
            cond: Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap(),
            scheduler: "euler",
        };
        let ctx = JobContext {
            trace_id: "0".repeat(32),
            span_id: "0".repeat(16),
            user_id_hash: "h".into(),
            organization_id_hash: "o".into(),
        };
        Job::new(
            id.into(),
            spec,
            ctx,
            tracing::Span::none(),
            Instant::now(),
            Duration::from_secs(5),
        )
    }

    #[test]
    fn terminal_once() {
        let j = job("a");
        let mut rx = j.subscribe();
        j.update(|s| s.status = JobState::Running);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert!(j.finish(&Outcome::Cancelled));
        assert!(!j.finish(&Outcome::Failed(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            "late"
        ))));
        j.update(|s| s.progress.step = 3);
        let s = j.status();
        assert_eq!(s.status, JobState::Cancelled);
        assert_eq!(s.progress.step, 0);
        assert!(s.timings_ms.contains_key("total"));
    }

    #[test]
    fn outcome_labels() {
        let late = ApiError::new(StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded", "late");
        assert_eq!(Outcome::Failed(late).status_label(), "timeout");
        let oom = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "gpu_oom", "oom");
        assert_eq!(Outcome::Failed(oom).status_label(), "failed");
    }

    #[test]
    fn table_forgets_only_finished_jobs() {
        let t = JobTable::new(2);
        let a = Arc::new(job("a"));
        let b = Arc::new(job("b"));
        let c = Arc::new(job("c"));
        t.insert(a.clone());
        t.insert(b.clone());
        t.insert(c.clone());
        // Nothing finished: all kept.
        assert!(t.get("a").is_some() && t.get("c").is_some());
        a.finish(&Outcome::Cancelled);
        t.insert(Arc::new(job("d")));
        assert!(t.get("a").is_none());
        assert!(t.get("b").is_some());
        assert_eq!(t.unfinished().len(), 3);
    }
}
