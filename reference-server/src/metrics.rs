//! The metric catalog of the reference server and its Prometheus registry.
//!
//! [`CATALOG`] is the single source of truth: every metric's name, type, labels, buckets and help
//! text live there and nowhere else. [`Metrics::new`] builds each typed field by looking its entry
//! up in the table, a test checks the text exposition against the table, and another renders the
//! table into `docs/metrics.md` and fails when the two drift apart.
//!
//! The names are the seeds' contract (alert rules and SLOs in `../shared/seeds/` query them), so
//! they are kept verbatim even where Prometheus naming advice differs; the only change is that
//! every counter ends in `_total`.

use std::fmt::{self, Write as _};

use prometheus::{
    Encoder as _, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::types::Tier;

/// The Prometheus type of a catalog metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Monotonic count; its name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations counted into the entry's fixed buckets.
    Histogram,
}

impl MetricKind {
    /// The word the text exposition uses in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the catalog: everything needed to register, document and check a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// Metric family name as exported.
    pub name: &'static str,
    /// Prometheus type.
    pub kind: MetricKind,
    /// Help text written into `# HELP` and the docs.
    pub help: &'static str,
    /// Label names, in the order `with_label_values` takes them.
    pub labels: &'static [&'static str],
    /// Histogram upper bounds (without `+Inf`); empty for counters and gauges.
    pub buckets: &'static [f64],
    /// Where the metric comes from (for example `seed 000`), so a reader can find its contract.
    pub source: &'static str,
}

// Label sets shared by several rows; named so a typo cannot make two "same" metrics disagree.
const TIER: &[&str] = &["tier"];
const MODEL: &[&str] = &["model"];
const GPU_WORKER: &[&str] = &["worker_id", "gpu_type", "region"];
const GPU_MEMORY: &[&str] = &["worker_id", "gpu_index", "gpu_type"];
const NONE: &[&str] = &[];
const NO_BUCKETS: &[f64] = &[];

/// The metric catalog: every metric the reference server exports, and nothing else.
pub const CATALOG: &[MetricSpec] = &[
    // ---- seed 000: generation -------------------------------------------------------------
    MetricSpec {
        name: "generation_time_seconds",
        kind: MetricKind::Histogram,
        help: "End-to-end generation time from request to image URL, in seconds.",
        labels: &["tier", "model", "scheduler", "has_controlnet"],
        buckets: &[2.0, 5.0, 10.0, 15.0, 25.0, 40.0, 60.0, 120.0],
        source: "seed 000",
    },
    MetricSpec {
        name: "queue_wait_seconds",
        kind: MetricKind::Histogram,
        help: "Time a request waited in the tiered queue before worker assignment, in seconds.",
        labels: TIER,
        buckets: &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0],
        source: "seed 000",
    },
    MetricSpec {
        name: "model_load_seconds",
        kind: MetricKind::Histogram,
        help: "Time to make a model resident on a worker (warm-pool hit or cold load from disk), in seconds.",
        labels: MODEL,
        buckets: &[
            0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
        ],
        source: "seed 000",
    },
    MetricSpec {
        name: "diffusion_step_time_ms",
        kind: MetricKind::Histogram,
        help: "Time per denoising step of the diffusion loop, in milliseconds.",
        labels: MODEL,
        buckets: &[5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0],
        source: "seed 000",
    },
    MetricSpec {
        name: "vae_decode_time_ms",
        kind: MetricKind::Histogram,
        help: "VAE decoding latency (latents to pixels), in milliseconds.",
        labels: MODEL,
        buckets: &[10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0],
        source: "seed 000",
    },
    MetricSpec {
        name: "safety_check_time_ms",
        kind: MetricKind::Histogram,
        help: "Latency of a whole safety check stage (pre = prompt, post = image), in milliseconds.",
        labels: &["stage"],
        buckets: &[
            1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0,
        ],
        source: "seed 000",
    },
    MetricSpec {
        name: "cdn_upload_time_ms",
        kind: MetricKind::Histogram,
        help: "Image delivery latency (PNG encode and write to the object store), in milliseconds.",
        labels: NONE,
        buckets: &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0],
        source: "seed 000",
    },
    // ---- seed 000: queue ------------------------------------------------------------------
    MetricSpec {
        name: "queue_depth",
        kind: MetricKind::Gauge,
        help: "Current number of requests waiting in the queue, by tier and required model.",
        labels: &["tier", "model_required"],
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "queue_oldest_seconds",
        kind: MetricKind::Gauge,
        help: "Age of the oldest request waiting in the tier's queue, in seconds (0 when empty).",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "queue_starvation_events_total",
        kind: MetricKind::Counter,
        help: "Requests that waited past the tier's maximum wait and were promoted by anti-starvation.",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 000 (queue_starvation_events)",
    },
    MetricSpec {
        name: "queue_throughput_per_second",
        kind: MetricKind::Gauge,
        help: "Requests taken off the tier's queue per second, over a recent window.",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    // ---- seed 000: GPU --------------------------------------------------------------------
    MetricSpec {
        name: "gpu_vram_utilization_percent",
        kind: MetricKind::Gauge,
        help: "Percentage of the worker's GPU VRAM in use (NVML, or the worker's VRAM accounting).",
        labels: GPU_WORKER,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "gpu_compute_utilization_percent",
        kind: MetricKind::Gauge,
        help: "Percentage of recent time the worker's GPU was busy computing (NVML, or modelled from busy time).",
        labels: GPU_WORKER,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "gpu_temperature_celsius",
        kind: MetricKind::Gauge,
        help: "GPU temperature in degrees Celsius (NVML, or modelled from utilization).",
        labels: GPU_WORKER,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "worker_pool_size",
        kind: MetricKind::Gauge,
        help: "Number of live workers able to serve the tier.",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "warm_pool_hit_rate",
        kind: MetricKind::Gauge,
        help: "Fraction (0-1) of recent model acquisitions served from the warm pool without a cold load.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "warm_pool_requests_total",
        kind: MetricKind::Counter,
        help: "Model acquisitions by warm-pool result (hit, cold_start, failed).",
        labels: &["result"],
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "model_load_failures_total",
        kind: MetricKind::Counter,
        help: "Model loads that failed (unreadable weights, out of VRAM, injected fault).",
        labels: MODEL,
        buckets: NO_BUCKETS,
        source: "seed 000 (model_load_failures)",
    },
    // ---- seed 000: safety -----------------------------------------------------------------
    MetricSpec {
        name: "safety_blocks_total",
        kind: MetricKind::Counter,
        help: "Requests blocked by safety checks, by stage (pre = prompt, post = image), category and tier.",
        labels: &["stage", "category", "tier"],
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "csam_detections_total",
        kind: MetricKind::Counter,
        help: "CSAM detections at either safety stage; any increase pages immediately.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000 (csam_detection_count)",
    },
    MetricSpec {
        name: "prompt_block_rate",
        kind: MetricKind::Gauge,
        help: "Fraction (0-1) of recent requests blocked by the pre-generation prompt check.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "image_block_rate",
        kind: MetricKind::Gauge,
        help: "Fraction (0-1) of recent generated images blocked by the post-generation image check.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "safety_false_positive_reports_total",
        kind: MetricKind::Counter,
        help: "User disputes of a safety block, by category.",
        labels: &["category"],
        buckets: NO_BUCKETS,
        source: "seed 000 (safety_false_positive_reports)",
    },
    MetricSpec {
        name: "safety_classifier_latency_ms",
        kind: MetricKind::Histogram,
        help: "Time one safety classifier took to score a prompt or image, in milliseconds.",
        labels: &["classifier"],
        buckets: &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 150.0, 300.0, 500.0, 1000.0],
        source: "seed 000",
    },
    // ---- seed 000: business ---------------------------------------------------------------
    MetricSpec {
        name: "generations_per_minute",
        kind: MetricKind::Gauge,
        help: "Successful generations per minute, over a recent window.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "user_retry_rate",
        kind: MetricKind::Gauge,
        help: "Fraction (0-1) of recent requests that repeat an earlier request of the same user.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "revenue_per_generation",
        kind: MetricKind::Gauge,
        help: "Configured price of one generation of the model, in currency units.",
        labels: MODEL,
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    MetricSpec {
        name: "requests_total",
        kind: MetricKind::Counter,
        help: "Generation requests by tier, terminal outcome and model.",
        labels: &["tier", "status", "model"],
        buckets: NO_BUCKETS,
        source: "seed 000",
    },
    // ---- seed 004: HTTP RED ---------------------------------------------------------------
    MetricSpec {
        name: "http_requests_total",
        kind: MetricKind::Counter,
        help: "HTTP requests by method, route template and response status code.",
        labels: &["method", "endpoint", "status"],
        buckets: NO_BUCKETS,
        source: "seed 004",
    },
    MetricSpec {
        name: "http_request_duration_seconds",
        kind: MetricKind::Histogram,
        help: "HTTP request duration from first byte in to response, by method and route template, in seconds.",
        labels: &["method", "endpoint"],
        buckets: &[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
        ],
        source: "seed 004",
    },
    MetricSpec {
        name: "active_requests",
        kind: MetricKind::Gauge,
        help: "HTTP requests currently being served.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 004",
    },
    MetricSpec {
        name: "image_generation_total",
        kind: MetricKind::Counter,
        help: "Image generations that ran to the end of the pipeline, by result (success, error).",
        labels: &["status"],
        buckets: NO_BUCKETS,
        source: "seed 004",
    },
    MetricSpec {
        name: "image_generation_duration_seconds",
        kind: MetricKind::Histogram,
        help: "Time a worker spent generating one image (denoising and VAE decode), in seconds.",
        labels: NONE,
        buckets: &[0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 25.0, 40.0, 60.0, 120.0],
        source: "seed 004",
    },
    // ---- seed 002: batching ---------------------------------------------------------------
    MetricSpec {
        name: "batch_size",
        kind: MetricKind::Histogram,
        help: "Number of requests run together in one dynamic batch.",
        labels: MODEL,
        buckets: &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0],
        source: "seed 002",
    },
    MetricSpec {
        name: "batch_wait_seconds",
        kind: MetricKind::Histogram,
        help: "Time the first request of a batch waited for compatible requests to join it, in seconds.",
        labels: MODEL,
        buckets: &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5],
        source: "seed 002",
    },
    // ---- seed 001: jobs and checkpoints ---------------------------------------------------
    MetricSpec {
        name: "checkpoint_save_duration_ms",
        kind: MetricKind::Histogram,
        help: "Time to write one checkpoint of a long job's denoising state, in milliseconds.",
        labels: MODEL,
        buckets: &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0],
        source: "seed 001",
    },
    MetricSpec {
        name: "checkpoint_recovery_total",
        kind: MetricKind::Counter,
        help: "Jobs resumed from a checkpoint after their worker died.",
        labels: MODEL,
        buckets: NO_BUCKETS,
        source: "seed 001 (checkpoint_recovery_count)",
    },
    MetricSpec {
        name: "job_cancellation_total",
        kind: MetricKind::Counter,
        help: "Jobs cancelled by their user.",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 001",
    },
    MetricSpec {
        name: "job_timeout_total",
        kind: MetricKind::Counter,
        help: "Jobs that passed their tier's deadline.",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 001",
    },
    MetricSpec {
        name: "job_age_seconds",
        kind: MetricKind::Histogram,
        help: "Total job lifetime from acceptance to terminal state, in seconds.",
        labels: TIER,
        buckets: &[1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0],
        source: "seed 001",
    },
    // ---- GPU memory -----------------------------------------------------------------------
    MetricSpec {
        name: "gpu_memory_used_bytes",
        kind: MetricKind::Gauge,
        help: "GPU memory in use, in bytes (NVML or CUDA, or the worker's VRAM accounting).",
        labels: GPU_MEMORY,
        buckets: NO_BUCKETS,
        source: "seed 002; issue 2",
    },
    MetricSpec {
        name: "gpu_memory_total_bytes",
        kind: MetricKind::Gauge,
        help: "GPU memory capacity, in bytes (NVML or CUDA, or the worker's configured VRAM budget).",
        labels: GPU_MEMORY,
        buckets: NO_BUCKETS,
        source: "issue 2",
    },
];

/// Safety check stages (`stage` label of `safety_blocks_total` and `safety_check_time_ms`).
pub const SAFETY_STAGES: &[&str] = &["pre", "post"];

/// Safety categories (`category` label).
pub const SAFETY_CATEGORIES: &[&str] = &["nsfw", "violence", "hate", "csam", "self_harm"];

/// Safety classifiers (`classifier` label of `safety_classifier_latency_ms`): the
/// pre-generation prompt rules and the post-generation image network.
pub const SAFETY_CLASSIFIERS: &[&str] = &["prompt_classifier", "image_classifier"];

/// Terminal request outcomes (`status` label of `requests_total`).
pub const REQUEST_STATUSES: &[&str] = &[
    "success",
    "blocked",
    "failed",
    "timeout",
    "rate_limited",
    "cancelled",
    "rejected",
];

/// Warm-pool results (`result` label of `warm_pool_requests_total`).
pub const WARM_POOL_RESULTS: &[&str] = &["hit", "cold_start", "failed"];

/// Results of `image_generation_total` (seed 004's vocabulary).
pub const IMAGE_GENERATION_STATUSES: &[&str] = &["success", "error"];

/// The `scheduler` label value of `generation_time_seconds`: the one sampler the server runs.
pub const SCHEDULER: &str = "euler";

/// The `has_controlnet` label value: the server has no ControlNet conditioning.
pub const HAS_CONTROLNET: &str = "false";

/// `(method, endpoint)` of every API route; `endpoint` is the route template, never the raw
/// path, so job ids cannot explode the label cardinality.
pub const HTTP_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/generations"),
    ("GET", "/v1/generations/{id}"),
    ("DELETE", "/v1/generations/{id}"),
    ("GET", "/v1/images/{id}.png"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// Looks a metric up in [`CATALOG`] by name.
pub fn lookup(name: &str) -> Option<&'static MetricSpec> {
    CATALOG.iter().find(|s| s.name == name)
}

/// The labels identifying one worker's GPU in the GPU gauges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerLabels {
    /// Worker id (`worker_id` label).
    pub worker_id: String,
    /// Device index on its host (`gpu_index` label).
    pub gpu_index: String,
    /// GPU model name, or `modelled-cpu` (`gpu_type` label).
    pub gpu_type: String,
    /// Region the worker runs in (`region` label).
    pub region: String,
}

/// Every catalog metric as a typed handle, registered in one registry owned by this value.
///
/// Field names are the metric names; label order is the catalog's `labels` order.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// See [`CATALOG`]: `generation_time_seconds`.
    pub generation_time_seconds: HistogramVec,
    /// See [`CATALOG`]: `queue_wait_seconds`.
    pub queue_wait_seconds: HistogramVec,
    /// See [`CATALOG`]: `model_load_seconds`.
    pub model_load_seconds: HistogramVec,
    /// See [`CATALOG`]: `diffusion_step_time_ms`.
    pub diffusion_step_time_ms: HistogramVec,
    /// See [`CATALOG`]: `vae_decode_time_ms`.
    pub vae_decode_time_ms: HistogramVec,
    /// See [`CATALOG`]: `safety_check_time_ms`.
    pub safety_check_time_ms: HistogramVec,
    /// See [`CATALOG`]: `cdn_upload_time_ms`.
    pub cdn_upload_time_ms: Histogram,
    /// See [`CATALOG`]: `queue_depth`.
    pub queue_depth: IntGaugeVec,
    /// See [`CATALOG`]: `queue_oldest_seconds`.
    pub queue_oldest_seconds: GaugeVec,
    /// See [`CATALOG`]: `queue_starvation_events_total`.
    pub queue_starvation_events_total: IntCounterVec,
    /// See [`CATALOG`]: `queue_throughput_per_second`.
    pub queue_throughput_per_second: GaugeVec,
    /// See [`CATALOG`]: `gpu_vram_utilization_percent`.
    pub gpu_vram_utilization_percent: GaugeVec,
    /// See [`CATALOG`]: `gpu_compute_utilization_percent`.
    pub gpu_compute_utilization_percent: GaugeVec,
    /// See [`CATALOG`]: `gpu_temperature_celsius`.
    pub gpu_temperature_celsius: GaugeVec,
    /// See [`CATALOG`]: `worker_pool_size`.
    pub worker_pool_size: IntGaugeVec,
    /// See [`CATALOG`]: `warm_pool_hit_rate`.
    pub warm_pool_hit_rate: Gauge,
    /// See [`CATALOG`]: `warm_pool_requests_total`.
    pub warm_pool_requests_total: IntCounterVec,
    /// See [`CATALOG`]: `model_load_failures_total`.
    pub model_load_failures_total: IntCounterVec,
    /// See [`CATALOG`]: `safety_blocks_total`.
    pub safety_blocks_total: IntCounterVec,
    /// See [`CATALOG`]: `csam_detections_total`.
    pub csam_detections_total: IntCounter,
    /// See [`CATALOG`]: `prompt_block_rate`.
    pub prompt_block_rate: Gauge,
    /// See [`CATALOG`]: `image_block_rate`.
    pub image_block_rate: Gauge,
    /// See [`CATALOG`]: `safety_false_positive_reports_total`.
    pub safety_false_positive_reports_total: IntCounterVec,
    /// See [`CATALOG`]: `safety_classifier_latency_ms`.
    pub safety_classifier_latency_ms: HistogramVec,
    /// See [`CATALOG`]: `generations_per_minute`.
    pub generations_per_minute: Gauge,
    /// See [`CATALOG`]: `user_retry_rate`.
    pub user_retry_rate: Gauge,
    /// See [`CATALOG`]: `revenue_per_generation`.
    pub revenue_per_generation: GaugeVec,
    /// See [`CATALOG`]: `requests_total`.
    pub requests_total: IntCounterVec,
    /// See [`CATALOG`]: `http_requests_total`.
    pub http_requests_total: IntCounterVec,
    /// See [`CATALOG`]: `http_request_duration_seconds`.
    pub http_request_duration_seconds: HistogramVec,
    /// See [`CATALOG`]: `active_requests`.
    pub active_requests: IntGauge,
    /// See [`CATALOG`]: `image_generation_total`.
    pub image_generation_total: IntCounterVec,
    /// See [`CATALOG`]: `image_generation_duration_seconds`.
    pub image_generation_duration_seconds: Histogram,
    /// See [`CATALOG`]: `batch_size`.
    pub batch_size: HistogramVec,
    /// See [`CATALOG`]: `batch_wait_seconds`.
    pub batch_wait_seconds: HistogramVec,
    /// See [`CATALOG`]: `checkpoint_save_duration_ms`.
    pub checkpoint_save_duration_ms: HistogramVec,
    /// See [`CATALOG`]: `checkpoint_recovery_total`.
    pub checkpoint_recovery_total: IntCounterVec,
    /// See [`CATALOG`]: `job_cancellation_total`.
    pub job_cancellation_total: IntCounterVec,
    /// See [`CATALOG`]: `job_timeout_total`.
    pub job_timeout_total: IntCounterVec,
    /// See [`CATALOG`]: `job_age_seconds`.
    pub job_age_seconds: HistogramVec,
    /// See [`CATALOG`]: `gpu_memory_used_bytes`.
    pub gpu_memory_used_bytes: IntGaugeVec,
    /// See [`CATALOG`]: `gpu_memory_total_bytes`.
    pub gpu_memory_total_bytes: IntGaugeVec,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The handles carry no useful state to print; the exposition is the readable form.
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Builds handles from catalog rows and registers them. It panics on a catalog/type mismatch:
/// that is a programming error in this file, caught by the tests before anything ships.
struct Builder {
    registry: Registry,
}

impl Builder {
    fn spec(&self, name: &str, kind: MetricKind, labelled: bool) -> &'static MetricSpec {
        let spec = lookup(name).unwrap_or_else(|| panic!("metric {name} is not in CATALOG"));
        assert_eq!(spec.kind, kind, "metric {name}: catalog says {}", spec.kind);
        assert_eq!(
            !spec.labels.is_empty(),
            labelled,
            "metric {name}: field type disagrees with the catalog's labels {:?}",
            spec.labels
        );
        spec
    }

    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, name: &str, c: C) -> C {
        self.registry
            .register(Box::new(c.clone()))
            .unwrap_or_else(|e| panic!("registering {name}: {e}"));
        c
    }

    fn opts(spec: &MetricSpec) -> Opts {
        Opts::new(spec.name, spec.help)
    }

    fn hopts(spec: &MetricSpec) -> HistogramOpts {
        HistogramOpts::new(spec.name, spec.help).buckets(spec.buckets.to_vec())
    }

    fn histogram_vec(&self, name: &str) -> HistogramVec {
        let s = self.spec(name, MetricKind::Histogram, true);
        self.register(
            name,
            HistogramVec::new(Self::hopts(s), s.labels).expect(name),
        )
    }

    fn histogram(&self, name: &str) -> Histogram {
        let s = self.spec(name, MetricKind::Histogram, false);
        self.register(name, Histogram::with_opts(Self::hopts(s)).expect(name))
    }

    fn int_counter_vec(&self, name: &str) -> IntCounterVec {
        let s = self.spec(name, MetricKind::Counter, true);
        self.register(
            name,
            IntCounterVec::new(Self::opts(s), s.labels).expect(name),
        )
    }

    fn int_counter(&self, name: &str) -> IntCounter {
        let s = self.spec(name, MetricKind::Counter, false);
        self.register(name, IntCounter::with_opts(Self::opts(s)).expect(name))
    }

    fn gauge_vec(&self, name: &str) -> GaugeVec {
        let s = self.spec(name, MetricKind::Gauge, true);
        self.register(name, GaugeVec::new(Self::opts(s), s.labels).expect(name))
    }

    fn gauge(&self, name: &str) -> Gauge {
        let s = self.spec(name, MetricKind::Gauge, false);
        self.register(name, Gauge::with_opts(Self::opts(s)).expect(name))
    }

    fn int_gauge_vec(&self, name: &str) -> IntGaugeVec {
        let s = self.spec(name, MetricKind::Gauge, true);
        self.register(name, IntGaugeVec::new(Self::opts(s), s.labels).expect(name))
    }

    fn int_gauge(&self, name: &str) -> IntGauge {
        let s = self.spec(name, MetricKind::Gauge, false);
        self.register(name, IntGauge::with_opts(Self::opts(s)).expect(name))
    }
}

impl Metrics {
    /// Creates every catalog metric from its catalog row in a fresh registry.
    pub fn new() -> Metrics {
        let b = Builder {
            registry: Registry::new(),
        };
        Metrics {
            generation_time_seconds: b.histogram_vec("generation_time_seconds"),
            queue_wait_seconds: b.histogram_vec("queue_wait_seconds"),
            model_load_seconds: b.histogram_vec("model_load_seconds"),
            diffusion_step_time_ms: b.histogram_vec("diffusion_step_time_ms"),
            vae_decode_time_ms: b.histogram_vec("vae_decode_time_ms"),
            safety_check_time_ms: b.histogram_vec("safety_check_time_ms"),
            cdn_upload_time_ms: b.histogram("cdn_upload_time_ms"),
            queue_depth: b.int_gauge_vec("queue_depth"),
            queue_oldest_seconds: b.gauge_vec("queue_oldest_seconds"),
            queue_starvation_events_total: b.int_counter_vec("queue_starvation_events_total"),
            queue_throughput_per_second: b.gauge_vec("queue_throughput_per_second"),
            gpu_vram_utilization_percent: b.gauge_vec("gpu_vram_utilization_percent"),
            gpu_compute_utilization_percent: b.gauge_vec("gpu_compute_utilization_percent"),
            gpu_temperature_celsius: b.gauge_vec("gpu_temperature_celsius"),
            worker_pool_size: b.int_gauge_vec("worker_pool_size"),
            warm_pool_hit_rate: b.gauge("warm_pool_hit_rate"),
            warm_pool_requests_total: b.int_counter_vec("warm_pool_requests_total"),
            model_load_failures_total: b.int_counter_vec("model_load_failures_total"),
            safety_blocks_total: b.int_counter_vec("safety_blocks_total"),
            csam_detections_total: b.int_counter("csam_detections_total"),
            prompt_block_rate: b.gauge("prompt_block_rate"),
            image_block_rate: b.gauge("image_block_rate"),
            safety_false_positive_reports_total: b
                .int_counter_vec("safety_false_positive_reports_total"),
            safety_classifier_latency_ms: b.histogram_vec("safety_classifier_latency_ms"),
            generations_per_minute: b.gauge("generations_per_minute"),
            user_retry_rate: b.gauge("user_retry_rate"),
            revenue_per_generation: b.gauge_vec("revenue_per_generation"),
            requests_total: b.int_counter_vec("requests_total"),
            http_requests_total: b.int_counter_vec("http_requests_total"),
            http_request_duration_seconds: b.histogram_vec("http_request_duration_seconds"),
            active_requests: b.int_gauge("active_requests"),
            image_generation_total: b.int_counter_vec("image_generation_total"),
            image_generation_duration_seconds: b.histogram("image_generation_duration_seconds"),
            batch_size: b.histogram_vec("batch_size"),
            batch_wait_seconds: b.histogram_vec("batch_wait_seconds"),
            checkpoint_save_duration_ms: b.histogram_vec("checkpoint_save_duration_ms"),
            checkpoint_recovery_total: b.int_counter_vec("checkpoint_recovery_total"),
            job_cancellation_total: b.int_counter_vec("job_cancellation_total"),
            job_timeout_total: b.int_counter_vec("job_timeout_total"),
            job_age_seconds: b.histogram_vec("job_age_seconds"),
            gpu_memory_used_bytes: b.int_gauge_vec("gpu_memory_used_bytes"),
            gpu_memory_total_bytes: b.int_gauge_vec("gpu_memory_total_bytes"),
            registry: b.registry,
        }
    }

    /// The registry every catalog metric lives in (to gather, or to add process collectors).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition (format 0.0.4) of every registered metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        match TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            // The encoder writes only UTF-8 (names, labels and help are Rust strings).
            Ok(()) => String::from_utf8(buf).unwrap_or_default(),
            // Cannot happen with catalog-built metrics; a scrape still gets a valid (comment-only)
            // body rather than a panic in the serving path.
            Err(e) => format!("# metrics encoding failed: {e}\n"),
        }
    }

    /// Creates every known label combination at zero, so each catalog metric is in the
    /// exposition from the first scrape: `rate()` and absence-based alerts see a 0 series instead
    /// of none, and a series' first increment is not lost to `rate()`'s extrapolation.
    ///
    /// `http_requests_total` is the exception: its `status` codes are only created when seen,
    /// so it appears after the first HTTP request has been answered.
    pub fn init_series(&self, tiers: &[Tier], models: &[&str], workers: &[WorkerLabels]) {
        for tier in tiers.iter().map(|t| t.as_str()) {
            self.queue_wait_seconds.with_label_values(&[tier]);
            self.queue_oldest_seconds.with_label_values(&[tier]);
            self.queue_starvation_events_total
                .with_label_values(&[tier]);
            self.queue_throughput_per_second.with_label_values(&[tier]);
            self.worker_pool_size.with_label_values(&[tier]);
            self.job_cancellation_total.with_label_values(&[tier]);
            self.job_timeout_total.with_label_values(&[tier]);
            self.job_age_seconds.with_label_values(&[tier]);
            for &model in models {
                self.generation_time_seconds.with_label_values(&[
                    tier,
                    model,
                    SCHEDULER,
                    HAS_CONTROLNET,
                ]);
                self.queue_depth.with_label_values(&[tier, model]);
                for &status in REQUEST_STATUSES {
                    self.requests_total
                        .with_label_values(&[tier, status, model]);
                }
            }
            for &stage in SAFETY_STAGES {
                for &category in SAFETY_CATEGORIES {
                    self.safety_blocks_total
                        .with_label_values(&[stage, category, tier]);
                }
            }
        }
        for &model in models {
            self.model_load_seconds.with_label_values(&[model]);
            self.diffusion_step_time_ms.with_label_values(&[model]);
            self.vae_decode_time_ms.with_label_values(&[model]);
            self.model_load_failures_total.with_label_values(&[model]);
            self.revenue_per_generation.with_label_values(&[model]);
            self.batch_size.with_label_values(&[model]);
            self.batch_wait_seconds.with_label_values(&[model]);
            self.checkpoint_save_duration_ms.with_label_values(&[model]);
            self.checkpoint_recovery_total.with_label_values(&[model]);
        }
        for &stage in SAFETY_STAGES {
            self.safety_check_time_ms.with_label_values(&[stage]);
        }
        for &category in SAFETY_CATEGORIES {
            self.safety_false_positive_reports_total
                .with_label_values(&[category]);
        }
        for &classifier in SAFETY_CLASSIFIERS {
            self.safety_classifier_latency_ms
                .with_label_values(&[classifier]);
        }
        for &result in WARM_POOL_RESULTS {
            self.warm_pool_requests_total.with_label_values(&[result]);
        }
        for &status in IMAGE_GENERATION_STATUSES {
            self.image_generation_total.with_label_values(&[status]);
        }
        for &(method, endpoint) in HTTP_ROUTES {
            self.http_request_duration_seconds
                .with_label_values(&[method, endpoint]);
        }
        for w in workers {
            let gpu = [w.worker_id.as_str(), w.gpu_type.as_str(), w.region.as_str()];
            self.gpu_vram_utilization_percent.with_label_values(&gpu);
            self.gpu_compute_utilization_percent.with_label_values(&gpu);
            self.gpu_temperature_celsius.with_label_values(&gpu);
            let mem = [
                w.worker_id.as_str(),
                w.gpu_index.as_str(),
                w.gpu_type.as_str(),
            ];
            self.gpu_memory_used_bytes.with_label_values(&mem);
            self.gpu_memory_total_bytes.with_label_values(&mem);
        }
    }
}

/// Renders the catalog as the Markdown document committed at `docs/metrics.md`.
pub fn render_markdown(catalog: &[MetricSpec]) -> String {
    let mut out = String::new();
    out.push_str("# Metrics of the reference server\n\n");
    out.push_str(
        "Generated from `CATALOG` in `reference-server/src/metrics.rs`; do not edit by hand.\n\
         Regenerate with `UPDATE_DOCS=1 cargo test -p reference-server --lib metrics`.\n\n",
    );
    out.push_str(
        "Names follow the seeds verbatim (their alert rules and SLOs query them), except that \
         every counter ends in `_total`; `source` gives the seed and, where it differs, the \
         seed's original name. Histogram buckets are upper bounds; `+Inf` is implied.\n\n",
    );
    out.push_str("| name | type | labels | buckets | help | source |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for s in catalog {
        let labels = if s.labels.is_empty() {
            "-".to_string()
        } else {
            s.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let buckets = if s.buckets.is_empty() {
            "-".to_string()
        } else {
            s.buckets
                .iter()
                .map(f64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            s.name,
            s.kind,
            labels,
            buckets,
            md_cell(s.help),
            md_cell(s.source)
        );
    }
    out
}

/// Escapes the one character that would break a Markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, HashSet};
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    /// One parsed exposition sample line.
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
    }

    /// What the exposition says about one family.
    #[derive(Default)]
    struct Family {
        kind: Option<String>,
        help: Option<String>,
        /// Label-name sets seen on the family's samples (`le` removed).
        label_sets: BTreeSet<Vec<String>>,
        /// `le` values seen, per series (keyed by the other labels).
        le_by_series: BTreeMap<String, Vec<String>>,
        samples: usize,
    }

    /// Parses `{a="x",b="y"}` starting after the `{`; returns labels and the rest of the line.
    fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
        let mut labels = BTreeMap::new();
        let mut rest = s;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(r) = rest.strip_prefix('}') {
                return (labels, r);
            }
            let eq = rest.find('=').expect("label without =");
            let name = rest[..eq].to_string();
            let mut chars = rest[eq + 1..].char_indices();
            assert_eq!(chars.next().map(|c| c.1), Some('"'), "unquoted label value");
            let mut value = String::new();
            let mut end = None;
            let mut escaped = false;
            for (i, c) in chars {
                if escaped {
                    value.push(match c {
                        'n' => '\n',
                        other => other,
                    });
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = Some(eq + 1 + i + 1);
                    break;
                } else {
                    value.push(c);
                }
            }
            labels.insert(name, value);
            rest = &rest[end.expect("unterminated label value")..];
        }
    }

    fn parse_sample(line: &str) -> Sample {
        let name_end = line.find(['{', ' ']).expect("sample without value");
        let name = line[..name_end].to_string();
        let labels = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end + 1..]).0
        } else {
            BTreeMap::new()
        };
        Sample { name, labels }
    }

    /// Groups an exposition by family, resolving histogram suffixes through `# TYPE` lines.
    fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
        let mut fams: BTreeMap<String, Family> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                fams.entry(name.into()).or_default().help = Some(help.into());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE without type");
                fams.entry(name.into()).or_default().kind = Some(kind.into());
            } else if line.starts_with('#') {
                continue;
            } else {
                let mut sample = parse_sample(line);
                let family = if fams.contains_key(&sample.name) {
                    sample.name.clone()
                } else {
                    ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suf| {
                            let base = sample.name.strip_suffix(suf)?;
                            let f = fams.get(base)?;
                            (f.kind.as_deref() == Some("histogram")).then(|| base.to_string())
                        })
                        .unwrap_or_else(|| panic!("sample {} has no # TYPE", sample.name))
                };
                let fam = fams.get_mut(&family).unwrap();
                fam.samples += 1;
                let le = sample.labels.remove("le");
                if sample.name.ends_with("_bucket") {
                    let le = le.expect("bucket without le");
                    let key = format!("{:?}", sample.labels);
                    fam.le_by_series.entry(key).or_default().push(le);
                }
                fam.label_sets
                    .insert(sample.labels.keys().cloned().collect::<Vec<_>>());
            }
        }
        fams
    }

    fn workers() -> Vec<WorkerLabels> {
        (0..2)
            .map(|i| WorkerLabels {
                worker_id: format!("worker-{i}"),
                gpu_index: i.to_string(),
                gpu_type: "modelled-cpu".into(),
                region: "local".into(),
            })
            .collect()
    }

    const MODELS: &[&str] = &["sdxl-mini", "flux-mini", "video-mini"];

    /// A registry after start-up and a handful of observations, as a scrape would see it.
    fn populated() -> Metrics {
        let m = Metrics::new();
        m.init_series(&Tier::ALL, MODELS, &workers());
        // http_requests_total is created only by real traffic; simulate one answered request.
        m.http_requests_total
            .with_label_values(&["GET", "/healthz", "200"])
            .inc();
        m.generation_time_seconds
            .with_label_values(&["turbo", "sdxl-mini", SCHEDULER, HAS_CONTROLNET])
            .observe(1.2);
        m.queue_wait_seconds
            .with_label_values(&["relax"])
            .observe(7.0);
        m.cdn_upload_time_ms.observe(3.5);
        m.safety_blocks_total
            .with_label_values(&["pre", "nsfw", "fast"])
            .inc();
        m.csam_detections_total.inc();
        m.queue_depth
            .with_label_values(&["fast", "flux-mini"])
            .set(4);
        m.gpu_memory_used_bytes
            .with_label_values(&["worker-0", "0", "modelled-cpu"])
            .set(3 << 30);
        m.gpu_temperature_celsius
            .with_label_values(&["worker-1", "modelled-cpu", "local"])
            .set(41.5);
        m.active_requests.inc();
        m.warm_pool_hit_rate.set(0.75);
        m
    }

    #[test]
    fn catalog_is_well_formed() {
        let mut seen = HashSet::new();
        for s in CATALOG {
            assert!(seen.insert(s.name), "duplicate metric name {}", s.name);
            assert_eq!(
                s.kind == MetricKind::Counter,
                s.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                s.name
            );
            assert!(!s.help.trim().is_empty(), "{}: empty help", s.name);
            assert!(!s.source.trim().is_empty(), "{}: empty source", s.name);
            let mut labels = HashSet::new();
            for l in s.labels {
                assert!(labels.insert(l), "{}: duplicate label {l}", s.name);
                assert_ne!(*l, "le", "{}: le is reserved", s.name);
            }
            if s.kind == MetricKind::Histogram {
                assert!(
                    !s.buckets.is_empty(),
                    "{}: histogram without buckets",
                    s.name
                );
                assert!(
                    s.buckets.windows(2).all(|w| w[0] < w[1]),
                    "{}: buckets must increase strictly",
                    s.name
                );
            } else {
                assert!(
                    s.buckets.is_empty(),
                    "{}: buckets on a non-histogram",
                    s.name
                );
            }
        }
        assert_eq!(CATALOG.len(), 42, "the brief lists 42 metrics");
    }

    #[test]
    fn exposition_matches_catalog_exactly() {
        let m = populated();
        let fams = parse_exposition(&m.encode());
        let exposed: BTreeSet<&str> = fams.keys().map(String::as_str).collect();
        let catalog: BTreeSet<&str> = CATALOG.iter().map(|s| s.name).collect();
        let missing: Vec<_> = catalog.difference(&exposed).collect();
        let extra: Vec<_> = exposed.difference(&catalog).collect();
        assert!(
            missing.is_empty(),
            "catalog metrics not exposed: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "exposed metrics not in catalog: {extra:?}"
        );

        for spec in CATALOG {
            let fam = &fams[spec.name];
            assert_eq!(
                fam.kind.as_deref(),
                Some(spec.kind.as_str()),
                "{}: type",
                spec.name
            );
            assert_eq!(fam.help.as_deref(), Some(spec.help), "{}: help", spec.name);
            assert!(fam.samples > 0, "{}: no samples", spec.name);
            let mut want: Vec<String> = spec.labels.iter().map(|l| l.to_string()).collect();
            want.sort();
            assert_eq!(
                fam.label_sets,
                BTreeSet::from([want]),
                "{}: label names",
                spec.name
            );
            if spec.kind == MetricKind::Histogram {
                assert!(!fam.le_by_series.is_empty(), "{}: no buckets", spec.name);
                for (series, les) in &fam.le_by_series {
                    let (inf, finite) = les.split_last().unwrap();
                    assert_eq!(inf, "+Inf", "{} {series}: last bucket", spec.name);
                    let got: Vec<f64> = finite.iter().map(|v| v.parse().unwrap()).collect();
                    assert_eq!(got, spec.buckets, "{} {series}: buckets", spec.name);
                }
            } else {
                assert!(fam.le_by_series.is_empty(), "{}: unexpected le", spec.name);
            }
        }

        // The registry itself holds nothing beyond the catalog either (not only what is encoded).
        for mf in m.registry().gather() {
            assert!(
                lookup(mf.name()).is_some(),
                "{} registered but not in CATALOG",
                mf.name()
            );
        }
    }

    #[test]
    fn init_series_exposes_zeros_for_known_label_values() {
        let m = Metrics::new();
        m.init_series(&Tier::ALL, MODELS, &workers());
        let text = m.encode();
        for line in [
            r#"requests_total{model="video-mini",status="rate_limited",tier="relax"} 0"#,
            r#"safety_blocks_total{category="self_harm",stage="post",tier="turbo"} 0"#,
            r#"warm_pool_requests_total{result="cold_start"} 0"#,
            r#"generation_time_seconds_count{has_controlnet="false",model="flux-mini",scheduler="euler",tier="fast"} 0"#,
            r#"http_request_duration_seconds_count{endpoint="/v1/generations/{id}",method="DELETE"} 0"#,
            r#"gpu_memory_total_bytes{gpu_index="1",gpu_type="modelled-cpu",worker_id="worker-1"} 0"#,
            "csam_detections_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line}\n---\n{text}"
            );
        }
        assert!(
            !text.contains("http_requests_total{"),
            "http_requests_total statuses must only appear when seen"
        );
        // Every other catalog metric is already there.
        let fams = parse_exposition(&text);
        for spec in CATALOG.iter().filter(|s| s.name != "http_requests_total") {
            assert!(
                fams.get(spec.name).is_some_and(|f| f.samples > 0),
                "{} absent after init_series",
                spec.name
            );
        }
    }

    #[test]
    fn docs_match_catalog() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
        let want = render_markdown(CATALOG);
        if std::env::var("UPDATE_DOCS").as_deref() == Ok("1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/metrics.md is out of date with CATALOG; run \
             `UPDATE_DOCS=1 cargo test -p reference-server --lib metrics` and commit the result"
        );
    }

    /// promtool's lint flags `_ms` in a name ("abbreviated units"). The seeds name these
    /// metrics with `_ms` and their dashboards and alert rules query those names, so the names
    /// are kept and exactly this finding, on exactly these metrics, is accepted.
    const SEED_MS_NAMES: &[&str] = &[
        "diffusion_step_time_ms",
        "vae_decode_time_ms",
        "safety_check_time_ms",
        "cdn_upload_time_ms",
        "safety_classifier_latency_ms",
        "checkpoint_save_duration_ms",
    ];
    const ABBREVIATED_UNITS: &str = "metric names should not contain abbreviated units";

    /// Runs `promtool check metrics` on `text`; `None` when promtool is not installed.
    fn promtool(text: &str) -> Option<(i32, String)> {
        let mut child = match Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("running promtool: {e}"),
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let mut report = String::from_utf8_lossy(&out.stdout).into_owned();
        report.push_str(&String::from_utf8_lossy(&out.stderr));
        Some((out.status.code().unwrap_or(-1), report))
    }

    #[test]
    fn promtool_check_metrics_is_clean() {
        let m = Metrics::new();
        m.init_series(&Tier::ALL, MODELS, &workers());
        let fresh = m.encode();
        let observed = populated().encode();
        for (when, text) in [
            ("after init_series", fresh),
            ("after observations", observed),
        ] {
            let Some((code, report)) = promtool(&text) else {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "promtool not found (Debian package `prometheus`), and CI is set"
                );
                eprintln!("SKIP promtool_check_metrics_is_clean: promtool not installed");
                return;
            };
            // 0: clean; 3: lint findings only (checked below); anything else: unparsable.
            assert!(
                code == 0 || code == 3,
                "promtool {when}: exit {code}\n{report}"
            );
            let unexpected: Vec<&str> = report
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter(|l| {
                    let (name, msg) = l.split_once(' ').unwrap_or((l, ""));
                    !(SEED_MS_NAMES.contains(&name) && msg.trim() == ABBREVIATED_UNITS)
                })
                .collect();
            assert!(
                unexpected.is_empty(),
                "promtool {when} reports:\n{}",
                unexpected.join("\n")
            );
        }
    }

    #[test]
    fn seed_ms_names_are_catalog_names() {
        // Keeps the promtool exception list from outliving a rename.
        for n in SEED_MS_NAMES {
            assert!(lookup(n).is_some(), "{n} not in CATALOG");
        }
        let ms: Vec<_> = CATALOG
            .iter()
            .filter(|s| s.name.ends_with("_ms"))
            .map(|s| s.name)
            .collect();
        assert_eq!(ms, SEED_MS_NAMES);
    }

    #[test]
    fn markdown_has_one_row_per_metric() {
        let md = render_markdown(CATALOG);
        let rows = md.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(rows, CATALOG.len());
        assert!(md.contains(
            "| `generation_time_seconds` | histogram | `tier`, `model`, `scheduler`, \
             `has_controlnet` | 2, 5, 10, 15, 25, 40, 60, 120 |"
        ));
    }
}
