//! Fault kinds, their parameters, and their validation.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::FaultError;

/// The longest a single fault may last: 24 hours. Every fault expires; none is permanent.
pub const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;

/// The longest accepted fault name, in bytes.
const MAX_NAME_LEN: usize = 64;

/// A pipeline stage of the reference server that [`FaultKind::StageLatency`] can slow down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Waiting in the tiered queue before a worker takes the job.
    Queue,
    /// Prompt tokenization and text encoding.
    TextEncoding,
    /// Each denoising step of the diffusion loop (the added time applies per step).
    DenoiseStep,
    /// Decoding the latent into pixels.
    VaeDecode,
    /// The safety checks (pre- and post-generation).
    Safety,
    /// Writing the result to the object store.
    Upload,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 6] = [
        Stage::Queue,
        Stage::TextEncoding,
        Stage::DenoiseStep,
        Stage::VaeDecode,
        Stage::Safety,
        Stage::Upload,
    ];

    /// The wire and label name (`queue`, `text_encoding`, `denoise_step`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queue => "queue",
            Stage::TextEncoding => "text_encoding",
            Stage::DenoiseStep => "denoise_step",
            Stage::VaeDecode => "vae_decode",
            Stage::Safety => "safety",
            Stage::Upload => "upload",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which safety check a [`FaultKind::SafetySpike`] makes over-block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SafetyStage {
    /// The pre-generation prompt classifier.
    Pre,
    /// The post-generation image classifier.
    Post,
}

impl SafetyStage {
    /// The wire and label name (`pre` or `post`).
    pub fn as_str(self) -> &'static str {
        match self {
            SafetyStage::Pre => "pre",
            SafetyStage::Post => "post",
        }
    }
}

impl fmt::Display for SafetyStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What goes wrong, with its scope and intensity.
///
/// Serialized internally tagged by `kind` in `snake_case`, for example
/// `{"kind": "stage_latency", "stage": "vae_decode", "added_ms": 500, "jitter_ms": 100}`.
/// Unknown fields are rejected. Scope fields (`worker`, `model`, `tier`, `models`) may be left
/// out, meaning "any" (a worker chosen by the server, every model, every tier).
///
/// The first group is implemented by the reference server itself
/// ([`is_server_side`](FaultKind::is_server_side)); the last group (`latency` to `http_error`)
/// by the fault proxy in front of any target, with toxiproxy's names and semantics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// VRAM exhausted on a worker: a hog takes `fraction` of its memory, so generations fail to
    /// allocate.
    GpuOom {
        /// The worker to hog; `None`: one chosen by the server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<String>,
        /// Share of the worker's VRAM taken by the hog, in [0, 1].
        fraction: f64,
    },
    /// Warm models are evicted and must be loaded again.
    ColdStart {
        /// Models to evict; empty: all of them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        models: Vec<String>,
        /// Extra time added to each weight read while the fault lasts (slow storage), in ms.
        #[serde(default)]
        slow_storage_ms: u64,
    },
    /// Model loads fail with a probability.
    ModelLoadFailure {
        /// The model whose loads fail; `None`: every model.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// Probability that a load fails, in [0, 1].
        probability: f64,
    },
    /// The classifiers block an extra share of traffic (a false-positive storm).
    SafetySpike {
        /// Which check over-blocks.
        stage: SafetyStage,
        /// Extra share of otherwise-passing requests blocked, in [0, 1].
        extra_block_fraction: f64,
    },
    /// Added time, with jitter, in one pipeline stage.
    StageLatency {
        /// The slowed stage (for `denoise_step` the time is added to every step).
        stage: Stage,
        /// Time added, in ms.
        added_ms: u64,
        /// Uniform jitter around `added_ms` (`added_ms ± jitter_ms`, never below 0), in ms.
        #[serde(default)]
        jitter_ms: u64,
    },
    /// A worker dies mid-generation and restarts after a backoff.
    WorkerCrash {
        /// The worker that dies; `None`: a busy one chosen by the server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<String>,
        /// Backoff before the worker comes back, in ms.
        restart_after_ms: u64,
    },
    /// A worker computes slower and runs hotter.
    GpuThrottle {
        /// The throttled worker; `None`: every worker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<String>,
        /// Slowdown factor on compute time, at least 1 (2.0 = twice as slow).
        factor: f64,
    },
    /// A GPU Xid error is reported (a log line and the Xid counter, as DCGM exporters show).
    Xid {
        /// The worker reporting the error; `None`: one chosen by the server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<String>,
        /// The Xid code (for example 13, 31, 48, 79), at least 1.
        code: u32,
    },
    /// Workers stop taking work from the queue.
    QueueStall {
        /// The stalled tier's queue; `None`: every tier.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tier: Option<String>,
    },
    /// Proxy: every response is delayed by `ms ± jitter_ms` (toxiproxy `latency`).
    Latency {
        /// Added delay, in ms.
        ms: u64,
        /// Uniform jitter around `ms`, in ms.
        #[serde(default)]
        jitter_ms: u64,
    },
    /// Proxy: the connection is limited to a bandwidth (toxiproxy `bandwidth`).
    Bandwidth {
        /// Rate limit in kilobytes per second (toxiproxy's `rate`), at least 1.
        kbps: u64,
    },
    /// Proxy: data stops flowing and the connection is closed after `ms`; with 0 it is held
    /// until the fault ends (toxiproxy `timeout`).
    Timeout {
        /// Time before the connection is closed, in ms (0: never, while the fault lasts).
        ms: u64,
    },
    /// Proxy: the connection is reset (TCP RST) after `after_ms` (toxiproxy `reset_peer`).
    ResetPeer {
        /// Time before the reset, in ms (0: at once).
        after_ms: u64,
    },
    /// Proxy: the socket is closed `delay_ms` after the response (toxiproxy `slow_close`).
    SlowClose {
        /// Delay before the close, in ms, at least 1.
        delay_ms: u64,
    },
    /// Proxy: requests are answered with an HTTP error instead of being forwarded.
    HttpError {
        /// The status answered, 400..=599.
        status: u16,
        /// Share of requests answered with it, in [0, 1].
        probability: f64,
    },
}

impl FaultKind {
    /// Every kind's wire name, server-side kinds first.
    pub const KINDS: [&'static str; 15] = [
        "gpu_oom",
        "cold_start",
        "model_load_failure",
        "safety_spike",
        "stage_latency",
        "worker_crash",
        "gpu_throttle",
        "xid",
        "queue_stall",
        "latency",
        "bandwidth",
        "timeout",
        "reset_peer",
        "slow_close",
        "http_error",
    ];

    /// The wire name of this kind (the value of its `kind` tag), usable as a metric label.
    pub fn kind_str(&self) -> &'static str {
        match self {
            FaultKind::GpuOom { .. } => "gpu_oom",
            FaultKind::ColdStart { .. } => "cold_start",
            FaultKind::ModelLoadFailure { .. } => "model_load_failure",
            FaultKind::SafetySpike { .. } => "safety_spike",
            FaultKind::StageLatency { .. } => "stage_latency",
            FaultKind::WorkerCrash { .. } => "worker_crash",
            FaultKind::GpuThrottle { .. } => "gpu_throttle",
            FaultKind::Xid { .. } => "xid",
            FaultKind::QueueStall { .. } => "queue_stall",
            FaultKind::Latency { .. } => "latency",
            FaultKind::Bandwidth { .. } => "bandwidth",
            FaultKind::Timeout { .. } => "timeout",
            FaultKind::ResetPeer { .. } => "reset_peer",
            FaultKind::SlowClose { .. } => "slow_close",
            FaultKind::HttpError { .. } => "http_error",
        }
    }

    /// True for the faults the reference server implements itself through its pipeline hooks
    /// (injected through its admin API); false for the network and HTTP faults that the fault
    /// proxy implements in front of any target.
    pub fn is_server_side(&self) -> bool {
        match self {
            FaultKind::GpuOom { .. }
            | FaultKind::ColdStart { .. }
            | FaultKind::ModelLoadFailure { .. }
            | FaultKind::SafetySpike { .. }
            | FaultKind::StageLatency { .. }
            | FaultKind::WorkerCrash { .. }
            | FaultKind::GpuThrottle { .. }
            | FaultKind::Xid { .. }
            | FaultKind::QueueStall { .. } => true,
            FaultKind::Latency { .. }
            | FaultKind::Bandwidth { .. }
            | FaultKind::Timeout { .. }
            | FaultKind::ResetPeer { .. }
            | FaultKind::SlowClose { .. }
            | FaultKind::HttpError { .. } => false,
        }
    }

    /// True for the faults the fault proxy implements (the complement of
    /// [`is_server_side`](FaultKind::is_server_side)).
    pub fn is_proxy_side(&self) -> bool {
        !self.is_server_side()
    }

    /// Checks the parameters. On error, `field` is the parameter's name (`fraction`,
    /// `models[1]`, ...) relative to the kind; [`FaultSpec::validate`] prefixes it with `fault.`.
    pub fn validate(&self) -> Result<(), FaultError> {
        self.check()
            .map_err(|(field, message)| FaultError::new("", field, message))
    }

    /// The checks behind [`validate`](FaultKind::validate): `(field, message)` of the first
    /// problem found.
    fn check(&self) -> Result<(), (String, String)> {
        match self {
            FaultKind::GpuOom { worker, fraction } => {
                scope("worker", worker.as_deref())?;
                unit("fraction", *fraction)
            }
            FaultKind::ColdStart { models, .. } => {
                for (i, m) in models.iter().enumerate() {
                    if m.trim().is_empty() {
                        return Err((format!("models[{i}]"), "must not be empty".into()));
                    }
                }
                Ok(())
            }
            FaultKind::ModelLoadFailure { model, probability } => {
                scope("model", model.as_deref())?;
                unit("probability", *probability)
            }
            FaultKind::SafetySpike {
                extra_block_fraction,
                ..
            } => unit("extra_block_fraction", *extra_block_fraction),
            FaultKind::StageLatency {
                added_ms,
                jitter_ms,
                ..
            } => {
                if *added_ms == 0 && *jitter_ms == 0 {
                    return Err((
                        "added_ms".into(),
                        "must be above 0 (or jitter_ms must be): the fault would do nothing".into(),
                    ));
                }
                Ok(())
            }
            FaultKind::WorkerCrash { worker, .. } => scope("worker", worker.as_deref()),
            FaultKind::GpuThrottle { worker, factor } => {
                scope("worker", worker.as_deref())?;
                if !(factor.is_finite() && *factor >= 1.0) {
                    return Err((
                        "factor".into(),
                        format!("must be a finite number >= 1 (a slowdown), got {factor}"),
                    ));
                }
                Ok(())
            }
            FaultKind::Xid { worker, code } => {
                scope("worker", worker.as_deref())?;
                if *code == 0 {
                    return Err(("code".into(), "must be an Xid code >= 1, got 0".into()));
                }
                Ok(())
            }
            FaultKind::QueueStall { tier } => scope("tier", tier.as_deref()),
            FaultKind::Latency { ms, jitter_ms } => {
                if *ms == 0 && *jitter_ms == 0 {
                    return Err((
                        "ms".into(),
                        "must be above 0 (or jitter_ms must be): the fault would do nothing".into(),
                    ));
                }
                Ok(())
            }
            FaultKind::Bandwidth { kbps } => {
                if *kbps == 0 {
                    return Err(("kbps".into(), "must be at least 1, got 0".into()));
                }
                Ok(())
            }
            FaultKind::Timeout { .. } | FaultKind::ResetPeer { .. } => Ok(()),
            FaultKind::SlowClose { delay_ms } => {
                if *delay_ms == 0 {
                    return Err(("delay_ms".into(), "must be at least 1, got 0".into()));
                }
                Ok(())
            }
            FaultKind::HttpError {
                status,
                probability,
            } => {
                if !(400..=599).contains(status) {
                    return Err((
                        "status".into(),
                        format!("must be an HTTP error status in 400..=599, got {status}"),
                    ));
                }
                unit("probability", *probability)
            }
        }
    }
}

/// A scope field, when given, must name something.
fn scope(field: &str, value: Option<&str>) -> Result<(), (String, String)> {
    match value {
        Some(v) if v.trim().is_empty() => Err((
            field.into(),
            "must not be empty (leave it out to mean any)".into(),
        )),
        _ => Ok(()),
    }
}

/// A probability or fraction must lie in [0, 1].
fn unit(field: &str, value: f64) -> Result<(), (String, String)> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err((field.into(), format!("must be in [0, 1], got {value}")))
    }
}

/// One named fault: what goes wrong and for how long.
///
/// ```yaml
/// name: slow-vae
/// fault: { kind: stage_latency, stage: vae_decode, added_ms: 400, jitter_ms: 50 }
/// duration_ms: 20000
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The name scenarios and reports use (`oom`, `slow-vae`): 1 to 64 ASCII letters, digits,
    /// `_` or `-`.
    pub name: String,
    /// What goes wrong.
    pub fault: FaultKind,
    /// How long the fault lasts, in ms: above 0 and at most [`MAX_DURATION_MS`]. The target
    /// reverts it on its own when it expires.
    pub duration_ms: u64,
}

impl FaultSpec {
    /// Checks the whole spec; the error's `field` is the dotted path of the first wrong field
    /// (`name`, `duration_ms`, `fault.probability`, ...).
    pub fn validate(&self) -> Result<(), FaultError> {
        let name = &self.name;
        if name.is_empty() {
            return Err(FaultError::new("", "name", "must not be empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(FaultError::new(
                name.as_str(),
                "name",
                format!(
                    "must be at most {MAX_NAME_LEN} characters, got {}",
                    name.len()
                ),
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(FaultError::new(
                name.as_str(),
                "name",
                format!("may hold only ASCII letters, digits, `_` and `-`, found {bad:?}"),
            ));
        }
        if self.duration_ms == 0 {
            return Err(FaultError::new(
                name.as_str(),
                "duration_ms",
                "must be above 0: every fault expires",
            ));
        }
        if self.duration_ms > MAX_DURATION_MS {
            return Err(FaultError::new(
                name.as_str(),
                "duration_ms",
                format!(
                    "must be at most {MAX_DURATION_MS} (24 h), got {}",
                    self.duration_ms
                ),
            ));
        }
        self.fault.check().map_err(|(field, message)| {
            FaultError::new(name.as_str(), format!("fault.{field}"), message)
        })
    }
}
