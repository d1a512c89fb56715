//! The capacity record: what `firedrill sweep` measured at each rate, the answer (the highest rate
//! at which every threshold held, the knee), the workers' service times, the sizing table and
//! the check of its prediction. Written as `capacity.json`; the capacity plots, `report.html`
//! and `summary.md` of a sweep are rendered from it alone (`capacity_html`, `capacity_md`).

use crate::record::{RecordError, ScenarioInfo, ThresholdVerdict, TierStats, ToolInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The capacity record format version this build writes and reads.
pub const CAPACITY_VERSION: u32 = 1;

/// A sweep, recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityRecord {
    /// Format version.
    pub version: u32,
    /// The program that wrote it.
    pub tool: ToolInfo,
    /// The scenario swept, source text included.
    pub scenario: ScenarioInfo,
    /// Wall-clock start, RFC 3339.
    pub started_at: String,
    /// Workers of the target during the sweep (None for a URL target).
    pub workers: Option<usize>,
    /// How steps were run and judged.
    pub method: Method,
    /// Every step, in the order run.
    pub steps: Vec<StepRecord>,
    /// The highest rate at which every threshold held, and the bracket around it.
    pub answer: AnswerRecord,
    /// The knee of p95 latency against throughput, per tier and for all requests (`all`).
    pub knees: BTreeMap<String, KneeRecord>,
    /// Worker time per model and tier, from the target's per-request timings (as measured,
    /// contention included).
    pub service: Vec<ServiceRecord>,
    /// How busy workers slowed each other, fitted on every measured request.
    pub contention: Option<ContentionRecord>,
    /// How many workers each target rate needs.
    pub sizing: Vec<SizingRecord>,
    /// Predictions checked by running the recommended configuration.
    pub validation: Vec<ValidationRecord>,
    /// Things a reader should know (model assumptions that did not hold, skipped checks).
    pub notes: Vec<String>,
}

/// How a sweep ran its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// `given` rates or `search` (double, then bisect).
    pub strategy: String,
    /// The search's bracket resolution, req/s (search only).
    pub resolution: Option<f64>,
    /// Statistics window, seconds.
    pub window_s: f64,
    /// The span that must be steady; a step's statistics are taken over it, seconds.
    pub measure_s: f64,
    /// Relative drift tolerated over the span.
    pub tolerance: f64,
    /// Longest a step runs, seconds.
    pub max_step_s: f64,
    /// Pause between steps once the target's queue is empty, seconds.
    pub cooldown_s: f64,
    /// The method in words, for the report.
    pub description: String,
}

/// One rate, run to steady state (or not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// Offered rate, req/s.
    pub rate: f64,
    /// `steady`, `rising` (overloaded: latency and queue grew) or `unsteady` (max step reached).
    pub state: String,
    /// Step length, seconds (warm-up included).
    pub duration_s: f64,
    /// Warm-up before the measured span, seconds.
    pub warmup_s: f64,
    /// Length of the measured span, seconds.
    pub measured_s: f64,
    /// Latency change over the measured span, relative.
    pub latency_drift: f64,
    /// Requests the schedule offered per second over the span (random arrivals stray from the
    /// nominal rate).
    pub offered_rate: f64,
    /// Answers per second over the span (any outcome).
    pub throughput: f64,
    /// Successful answers per second over the span.
    pub goodput: f64,
    /// Share of answers that were errors (any class but `ok` and content blocks).
    pub error_rate: f64,
    /// Per tier, over the span (latency from the intended send time).
    pub per_tier: BTreeMap<String, TierStats>,
    /// All tiers together.
    pub overall: TierStats,
    /// Mean and largest total queue depth over the span (scraped), when scraped.
    pub queue_depth_mean: Option<f64>,
    /// Largest total queue depth over the span.
    pub queue_depth_max: Option<f64>,
    /// Mean GPU compute utilization over the workers and the span (scraped), %.
    pub gpu_utilization: Option<f64>,
    /// Worker utilization from the timings: worker time per second over the workers, 0..1.
    pub worker_utilization: Option<f64>,
    /// Queue wait per tier from the target's per-request timings, ms quantiles.
    pub queue_wait: BTreeMap<String, Quantiles>,
    /// The thresholds judged on the span.
    pub thresholds: Vec<ThresholdVerdict>,
    /// Whether every threshold held (and the step was steady).
    pub passed: bool,
}

/// A few quantiles of a sample, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantiles {
    /// Sample size.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// The answer of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRecord {
    /// Highest rate at which every threshold held (None: not even the lowest tried).
    pub max_passing_rate: Option<f64>,
    /// Lowest rate above it that broke one (None: none did).
    pub min_failing_rate: Option<f64>,
    /// The bracket's width, req/s: the answer's uncertainty from the step size.
    pub uncertainty: Option<f64>,
    /// The answer in words.
    pub statement: String,
}

/// Where latency turns up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KneeRecord {
    /// Throughput at the knee, req/s.
    pub throughput: f64,
    /// p95 latency there, ms.
    pub p95_ms: f64,
    /// The step's offered rate.
    pub rate: f64,
}

/// Worker time for one model and tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    /// Model.
    pub model: String,
    /// Tier.
    pub tier: String,
    /// Worker time, ms.
    pub service_ms: Quantiles,
    /// Squared coefficient of variation of the worker time.
    pub scv: f64,
    /// Requests per second one worker serves: 1000 / mean.
    pub rate_per_worker: f64,
}

/// Worker time against the number of other jobs in service: `alone_ms + per_other_ms × others`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentionRecord {
    /// Worker time with no other job in service, ms.
    pub alone_ms: f64,
    /// Added per other job in service, ms (about 0 for workers on separate GPUs).
    pub per_other_ms: f64,
    /// Requests the fit used.
    pub samples: u64,
}

/// The sizing for one target rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizingRecord {
    /// Target rate, req/s.
    pub rate: f64,
    /// One row per worker count considered.
    pub rows: Vec<SizingRow>,
    /// The fewest workers whose predicted latencies meet every latency threshold.
    pub recommended: Option<usize>,
}

/// The model's prediction for one worker count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizingRow {
    /// Workers.
    pub workers: usize,
    /// Predicted worker utilization.
    pub utilization: f64,
    /// Predicted probability of waiting (simulation).
    pub p_wait: f64,
    /// Predicted p95 queue wait (simulation), ms.
    pub p95_wait_ms: f64,
    /// Predicted p95 queue wait (M/G/c, Erlang C with Allen–Cunneen), ms.
    pub mgc_p95_wait_ms: f64,
    /// Predicted latency at each latency threshold's percentile: `(threshold, ms)`.
    pub latency: Vec<(String, f64)>,
    /// Whether every latency threshold is predicted to hold.
    pub meets: bool,
}

/// A prediction checked against a run of the recommended configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationRecord {
    /// Target rate, req/s.
    pub rate: f64,
    /// Workers run.
    pub workers: usize,
    /// The arrival rate the check's span really had (its schedule is random), req/s.
    pub realized_rate: f64,
    /// The sizing table's prediction at the target rate (long-run simulation), ms.
    pub sizing_p95_wait_ms: f64,
    /// The model on the check's own schedule at the workers' speed in the sweep, ms: a
    /// prediction made from the sweep alone.
    pub predicted_p95_wait_ms: f64,
    /// (predicted - measured) / measured.
    #[serde(default)]
    pub a_priori_error: f64,
    /// The model on the check's own schedule at the workers' speed measured in the check (what
    /// is judged: the queueing model, not the host's drift between runs), ms.
    #[serde(default)]
    pub adjusted_p95_wait_ms: f64,
    /// M/G/c at the realized rate, ms.
    pub mgc_p95_wait_ms: f64,
    /// Measured p95 queue wait, ms.
    pub measured_p95_wait_ms: f64,
    /// (adjusted - measured) / measured.
    pub relative_error: f64,
    /// Within tolerance: 25% of the measured value, or a tenth of a mean service time (waits
    /// that short are dispatch jitter, where a relative error means nothing).
    pub passed: bool,
    /// Mean worker time the prediction assumed (contention at the predicted utilization), ms.
    pub predicted_service_ms: f64,
    /// Mean worker time measured in the check, ms.
    pub measured_service_ms: f64,
    /// The check's run as a step (its thresholds included).
    pub step: StepRecord,
}

/// `1 worker`, `2 workers`.
pub fn workers(n: usize) -> String {
    if n == 1 {
        "1 worker".into()
    } else {
        format!("{n} workers")
    }
}

impl CapacityRecord {
    /// Writes the record as pretty JSON, atomically (see [`crate::record::RunRecord::write`]).
    pub fn write(&self, path: &Path) -> Result<(), RecordError> {
        crate::record::write_json(self, path)
    }

    /// Reads a record; errors name the file, line and column.
    pub fn read(path: &Path) -> Result<CapacityRecord, RecordError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecordError::Io {
            path: path.to_path_buf(),
            action: "reading",
            source,
        })?;
        let r: CapacityRecord =
            serde_json::from_str(&text).map_err(|e| RecordError::json(path, &e))?;
        if r.version != CAPACITY_VERSION {
            return Err(RecordError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: u64::from(r.version),
                supported: CAPACITY_VERSION,
            });
        }
        Ok(r)
    }
}
