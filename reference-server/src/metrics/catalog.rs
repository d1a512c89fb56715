//! The rows of [`CATALOG`] and the label values the server creates series for.
//!
//! Six seed histograms are named in milliseconds (`*_ms`). Their rows carry the Prometheus base
//! unit name and buckets (seconds; the seed's millisecond buckets divided by 1000) as `name` and
//! `buckets`, and the seed's literal name and buckets in `seed_ms`; the server exports one or the
//! other as `metric_units` selects (see [`MetricUnits`](super::MetricUnits)).

use super::{MetricKind, MetricSpec, SeedMs};

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
        seed_ms: None,
    },
    MetricSpec {
        name: "queue_wait_seconds",
        kind: MetricKind::Histogram,
        help: "Time a request waited in the tiered queue before worker assignment, in seconds.",
        labels: TIER,
        buckets: &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0],
        source: "seed 000",
        seed_ms: None,
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
        seed_ms: None,
    },
    MetricSpec {
        name: "diffusion_step_time_seconds",
        kind: MetricKind::Histogram,
        help: "Time per denoising step of the diffusion loop, in seconds.",
        labels: MODEL,
        buckets: &[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0],
        source: "seed 000 (diffusion_step_time_ms; exported in seconds unless metric_units: seed_ms)",
        seed_ms: Some(SeedMs {
            name: "diffusion_step_time_ms",
            buckets: &[5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0],
        }),
    },
    MetricSpec {
        name: "vae_decode_time_seconds",
        kind: MetricKind::Histogram,
        help: "VAE decoding latency (latents to pixels), in seconds.",
        labels: MODEL,
        buckets: &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0],
        source: "seed 000 (vae_decode_time_ms; exported in seconds unless metric_units: seed_ms)",
        seed_ms: Some(SeedMs {
            name: "vae_decode_time_ms",
            buckets: &[10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0],
        }),
    },
    MetricSpec {
        name: "safety_check_time_seconds",
        kind: MetricKind::Histogram,
        help: "Latency of a whole safety check stage (pre = prompt, post = image), in seconds.",
        labels: &["stage"],
        buckets: &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0],
        source: "seed 000 (safety_check_time_ms; exported in seconds unless metric_units: seed_ms)",
        seed_ms: Some(SeedMs {
            name: "safety_check_time_ms",
            buckets: &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0],
        }),
    },
    MetricSpec {
        name: "cdn_upload_time_seconds",
        kind: MetricKind::Histogram,
        help: "Image delivery latency (PNG encode and write to the object store), in seconds.",
        labels: NONE,
        buckets: &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0],
        source: "seed 000 (cdn_upload_time_ms; exported in seconds unless metric_units: seed_ms)",
        seed_ms: Some(SeedMs {
            name: "cdn_upload_time_ms",
            buckets: &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0],
        }),
    },
    // ---- seed 000: queue ------------------------------------------------------------------
    MetricSpec {
        name: "queue_depth",
        kind: MetricKind::Gauge,
        help: "Current number of requests waiting in the queue, by tier and required model.",
        labels: &["tier", "model_required"],
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "queue_oldest_seconds",
        kind: MetricKind::Gauge,
        help: "Age of the oldest request waiting in the tier's queue, in seconds (0 when empty).",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "queue_starvation_events_total",
        kind: MetricKind::Counter,
        help: "Requests that waited past the tier's maximum wait and were promoted by anti-starvation.",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 000 (queue_starvation_events)",
        seed_ms: None,
    },
    MetricSpec {
        name: "queue_throughput_per_second",
        kind: MetricKind::Gauge,
        help: "Requests taken off the tier's queue per second, over a recent window.",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    // ---- seed 000: GPU --------------------------------------------------------------------
    MetricSpec {
        name: "gpu_vram_utilization_percent",
        kind: MetricKind::Gauge,
        help: "Percentage of the worker's GPU VRAM in use (NVML, or the worker's VRAM accounting).",
        labels: GPU_WORKER,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "gpu_compute_utilization_percent",
        kind: MetricKind::Gauge,
        help: "Percentage of recent time the worker's GPU was busy computing (NVML, or modelled from busy time).",
        labels: GPU_WORKER,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "gpu_temperature_celsius",
        kind: MetricKind::Gauge,
        help: "GPU temperature in degrees Celsius (NVML, or modelled from utilization).",
        labels: GPU_WORKER,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "worker_pool_size",
        kind: MetricKind::Gauge,
        help: "Number of live workers able to serve the tier.",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "warm_pool_hit_rate",
        kind: MetricKind::Gauge,
        help: "Fraction (0-1) of recent model acquisitions served from the warm pool without a cold load.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "warm_pool_requests_total",
        kind: MetricKind::Counter,
        help: "Model acquisitions by warm-pool result (hit, cold_start, failed).",
        labels: &["result"],
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "model_load_failures_total",
        kind: MetricKind::Counter,
        help: "Model loads that failed (unreadable weights, out of VRAM, injected fault).",
        labels: MODEL,
        buckets: NO_BUCKETS,
        source: "seed 000 (model_load_failures)",
        seed_ms: None,
    },
    // ---- seed 000: safety -----------------------------------------------------------------
    MetricSpec {
        name: "safety_blocks_total",
        kind: MetricKind::Counter,
        help: "Requests blocked by safety checks, by stage (pre = prompt, post = image), category and tier.",
        labels: &["stage", "category", "tier"],
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "csam_detections_total",
        kind: MetricKind::Counter,
        help: "CSAM detections at either safety stage; any increase pages immediately.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000 (csam_detection_count)",
        seed_ms: None,
    },
    MetricSpec {
        name: "prompt_block_rate",
        kind: MetricKind::Gauge,
        help: "Fraction (0-1) of recent requests blocked by the pre-generation prompt check.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "image_block_rate",
        kind: MetricKind::Gauge,
        help: "Fraction (0-1) of recent generated images blocked by the post-generation image check.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "safety_false_positive_reports_total",
        kind: MetricKind::Counter,
        help: "User disputes of a safety block, by category.",
        labels: &["category"],
        buckets: NO_BUCKETS,
        source: "seed 000 (safety_false_positive_reports)",
        seed_ms: None,
    },
    MetricSpec {
        name: "safety_classifier_latency_seconds",
        kind: MetricKind::Histogram,
        help: "Time one safety classifier took to score a prompt or image, in seconds.",
        labels: &["classifier"],
        buckets: &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.3, 0.5, 1.0],
        source: "seed 000 (safety_classifier_latency_ms; exported in seconds unless metric_units: seed_ms)",
        seed_ms: Some(SeedMs {
            name: "safety_classifier_latency_ms",
            buckets: &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 150.0, 300.0, 500.0, 1000.0],
        }),
    },
    // ---- seed 000: business ---------------------------------------------------------------
    MetricSpec {
        name: "generations_per_minute",
        kind: MetricKind::Gauge,
        help: "Successful generations per minute, over a recent window.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "user_retry_rate",
        kind: MetricKind::Gauge,
        help: "Fraction (0-1) of recent requests that repeat an earlier request of the same user.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "revenue_per_generation",
        kind: MetricKind::Gauge,
        help: "Configured price of one generation of the model, in currency units.",
        labels: MODEL,
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    MetricSpec {
        name: "requests_total",
        kind: MetricKind::Counter,
        help: "Generation requests by tier, terminal outcome and model.",
        labels: &["tier", "status", "model"],
        buckets: NO_BUCKETS,
        source: "seed 000",
        seed_ms: None,
    },
    // ---- seed 004: HTTP RED ---------------------------------------------------------------
    MetricSpec {
        name: "http_requests_total",
        kind: MetricKind::Counter,
        help: "HTTP requests by method, route template and response status code.",
        labels: &["method", "endpoint", "status"],
        buckets: NO_BUCKETS,
        source: "seed 004",
        seed_ms: None,
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
        seed_ms: None,
    },
    MetricSpec {
        name: "active_requests",
        kind: MetricKind::Gauge,
        help: "HTTP requests currently being served.",
        labels: NONE,
        buckets: NO_BUCKETS,
        source: "seed 004",
        seed_ms: None,
    },
    MetricSpec {
        name: "image_generation_total",
        kind: MetricKind::Counter,
        help: "Image generations that ran to the end of the pipeline, by result (success, error).",
        labels: &["status"],
        buckets: NO_BUCKETS,
        source: "seed 004",
        seed_ms: None,
    },
    MetricSpec {
        name: "image_generation_duration_seconds",
        kind: MetricKind::Histogram,
        help: "Time a worker spent generating one image (denoising and VAE decode), in seconds.",
        labels: NONE,
        buckets: &[0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 25.0, 40.0, 60.0, 120.0],
        source: "seed 004",
        seed_ms: None,
    },
    // ---- seed 002: batching ---------------------------------------------------------------
    MetricSpec {
        name: "batch_size",
        kind: MetricKind::Histogram,
        help: "Number of requests run together in one dynamic batch.",
        labels: MODEL,
        buckets: &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0],
        source: "seed 002",
        seed_ms: None,
    },
    MetricSpec {
        name: "batch_wait_seconds",
        kind: MetricKind::Histogram,
        help: "Time the first request of a batch waited for compatible requests to join it, in seconds.",
        labels: MODEL,
        buckets: &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5],
        source: "seed 002",
        seed_ms: None,
    },
    // ---- seed 001: jobs and checkpoints ---------------------------------------------------
    MetricSpec {
        name: "checkpoint_save_duration_seconds",
        kind: MetricKind::Histogram,
        help: "Time to write one checkpoint of a long job's denoising state, in seconds.",
        labels: MODEL,
        buckets: &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0],
        source: "seed 001 (checkpoint_save_duration_ms; exported in seconds unless metric_units: seed_ms)",
        seed_ms: Some(SeedMs {
            name: "checkpoint_save_duration_ms",
            buckets: &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0],
        }),
    },
    MetricSpec {
        name: "checkpoint_recovery_total",
        kind: MetricKind::Counter,
        help: "Jobs resumed from a checkpoint after their worker died.",
        labels: MODEL,
        buckets: NO_BUCKETS,
        source: "seed 001 (checkpoint_recovery_count)",
        seed_ms: None,
    },
    MetricSpec {
        name: "job_cancellation_total",
        kind: MetricKind::Counter,
        help: "Jobs cancelled by their user.",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 001",
        seed_ms: None,
    },
    MetricSpec {
        name: "job_timeout_total",
        kind: MetricKind::Counter,
        help: "Jobs that passed their tier's deadline.",
        labels: TIER,
        buckets: NO_BUCKETS,
        source: "seed 001",
        seed_ms: None,
    },
    MetricSpec {
        name: "job_age_seconds",
        kind: MetricKind::Histogram,
        help: "Total job lifetime from acceptance to terminal state, in seconds.",
        labels: TIER,
        buckets: &[1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0],
        source: "seed 001",
        seed_ms: None,
    },
    // ---- GPU memory -----------------------------------------------------------------------
    MetricSpec {
        name: "gpu_memory_used_bytes",
        kind: MetricKind::Gauge,
        help: "GPU memory in use, in bytes (NVML or CUDA, or the worker's VRAM accounting).",
        labels: GPU_MEMORY,
        buckets: NO_BUCKETS,
        source: "seed 002; issue 2",
        seed_ms: None,
    },
    MetricSpec {
        name: "gpu_memory_total_bytes",
        kind: MetricKind::Gauge,
        help: "GPU memory capacity, in bytes (NVML or CUDA, or the worker's configured VRAM budget).",
        labels: GPU_MEMORY,
        buckets: NO_BUCKETS,
        source: "issue 2",
        seed_ms: None,
    },
    // ---- fault injection ------------------------------------------------------------------
    MetricSpec {
        name: "text_encoding_seconds",
        kind: MetricKind::Histogram,
        help: "Time to tokenize and encode a prompt with the model's text encoders, in seconds.",
        labels: MODEL,
        buckets: &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        source: "fault hooks (the text_encoding stage of stage_latency)",
        seed_ms: None,
    },
    MetricSpec {
        name: "gpu_xid_errors_total",
        kind: MetricKind::Counter,
        help: "Xid errors reported by the worker's GPU driver.",
        labels: GPU_MEMORY,
        buckets: NO_BUCKETS,
        source: "fault hooks (xid); DCGM exporters' Xid error field",
        seed_ms: None,
    },
    MetricSpec {
        name: "DCGM_FI_DEV_XID_ERRORS",
        kind: MetricKind::Gauge,
        help: "Code of the last Xid error the worker's GPU reported, 0 when none is in effect (as DCGM exporters export it).",
        labels: &["gpu", "worker_id", "gpu_type"],
        buckets: NO_BUCKETS,
        source: "dcgm-exporter (DCGM_FI_DEV_XID_ERRORS; labels in this catalog's style)",
        seed_ms: None,
    },
    MetricSpec {
        name: "injected_faults_active",
        kind: MetricKind::Gauge,
        help: "Faults injected through the admin API and still in effect, by kind.",
        labels: &["kind"],
        buckets: NO_BUCKETS,
        source: "fault hooks (admin API)",
        seed_ms: None,
    },
];

/// Server-side fault kinds (`kind` label of `injected_faults_active`).
pub const FAULT_KINDS: &[&str] = &[
    "gpu_oom",
    "cold_start",
    "model_load_failure",
    "safety_spike",
    "stage_latency",
    "worker_crash",
    "gpu_throttle",
    "xid",
    "queue_stall",
];

/// Safety check stages (`stage` label of `safety_blocks_total` and `safety_check_time_seconds`).
pub const SAFETY_STAGES: &[&str] = &["pre", "post"];

/// Safety categories (`category` label).
pub const SAFETY_CATEGORIES: &[&str] = &["nsfw", "violence", "hate", "csam", "self_harm"];

/// Safety classifiers (`classifier` label of `safety_classifier_latency_seconds`): the
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
