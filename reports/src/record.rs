//! The run record: everything a report needs, so reports never re-run anything.
//!
//! `firedrill run` writes one [`RunRecord`] as `record.json`; every later rendering (plots, HTML,
//! JUnit, comparisons) reads only that. The record is pure data: the scenario's own text, the
//! plan's summary, per-window and whole-run statistics with serialized HdrHistograms, outcome
//! counts, scraped series, events, threshold verdicts, and whether the numbers can be trusted.
//!
//! Times are seconds from the run's start (`*_s`), latencies are milliseconds in summary fields
//! (`*_ms`) and microseconds inside histograms. The format is versioned ([`RECORD_VERSION`]);
//! a reader refuses versions it does not know rather than misreading them.

mod hist;

pub use hist::{Hist, HistConfig};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The record format version this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// One run, recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// Format version; [`RECORD_VERSION`] when written by this build.
    pub version: u32,
    /// The program that wrote the record.
    pub tool: ToolInfo,
    /// The scenario as run, source text included.
    pub scenario: ScenarioInfo,
    /// The compiled plan, summarized.
    pub plan: PlanSummary,
    /// Wall-clock start, RFC 3339.
    pub started_at: String,
    /// Actual length of the run, seconds (may differ from the plan's if aborted).
    pub duration_s: f64,
    /// What was driven.
    pub target: TargetInfo,
    /// Length of one statistics window, seconds.
    pub window_s: f64,
    /// Statistics per window, in time order, contiguous from 0.
    pub windows: Vec<WindowStats>,
    /// Statistics over the whole run.
    pub totals: PhaseStats,
    /// Requests per outcome class label (`ok`, `timeout`, ...), whole run, all tiers.
    pub outcomes: BTreeMap<String, u64>,
    /// The target's scraped metrics. Opaque here: the harness decides the shape, later issues
    /// type it; `null` when nothing was scraped.
    pub series: serde_json::Value,
    /// What happened when (stages, faults, alerts, aborts), in time order.
    pub events: Vec<Event>,
    /// The drill's faults, as planned and as they happened.
    #[serde(default)]
    pub faults: Vec<FaultRecord>,
    /// Every inject, revert, rollback and verification the injector did, in time order.
    #[serde(default)]
    pub fault_journal: Vec<FaultJournalEntry>,
    /// How the final rollback went; `None` for a run without faults.
    #[serde(default)]
    pub rollback: Option<RollbackRecord>,
    /// The rules evaluated during the run; `None` without rules.
    #[serde(default)]
    pub rules: Option<RulesInfo>,
    /// Every alert that was pending or firing at some point, with its state changes.
    #[serde(default)]
    pub alerts: Vec<AlertRecord>,
    /// One verdict per alert expectation, then one per unexpected alert.
    #[serde(default)]
    pub expectations: Vec<ExpectationVerdict>,
    /// Each SLO's standing over the run: SLI, error budget, burn rates.
    #[serde(default)]
    pub slos: Vec<SloRecord>,
    /// One verdict per threshold of the scenario.
    pub thresholds: Vec<ThresholdVerdict>,
    /// Whether the harness kept up, so the numbers mean what they say.
    pub trust: Trust,
    /// The run's verdict.
    pub verdict: Verdict,
}

/// The program that wrote a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolInfo {
    /// Program name (`firedrill`).
    pub name: String,
    /// Program version.
    pub version: String,
}

/// The scenario as run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioInfo {
    /// The scenario's name.
    pub name: String,
    /// The file it was read from, as given.
    pub file: String,
    /// The seed the plan was compiled with.
    pub seed: u64,
    /// The scenario file's text, verbatim, so the run can be understood (and repeated) from the
    /// record alone.
    pub source: String,
}

/// The compiled plan, summarized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSummary {
    /// The stages, in order.
    pub stages: Vec<StageSummary>,
    /// Expected number of requests (the integral of the rate; exact for constant arrivals, the
    /// mean for random ones).
    pub expected_requests: f64,
    /// Planned length, seconds.
    pub duration_s: f64,
}

/// One planned stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSummary {
    /// Stage name.
    pub name: String,
    /// `hold`, `ramp`, `step` or `spike`.
    pub kind: String,
    /// Start, seconds from run start.
    pub start_s: f64,
    /// Length, seconds.
    pub duration_s: f64,
    /// Rate at the start (requests/s; users for a closed model).
    pub rate_from: f64,
    /// Rate at the end (requests/s; users for a closed model).
    pub rate_to: f64,
}

/// What kind of target was driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The reference server, spawned by the harness.
    ReferenceServer,
    /// Any HTTP service at a URL.
    Url,
}

/// The target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetInfo {
    /// Spawned reference server or external URL.
    pub kind: TargetKind,
    /// Base URL requests went to.
    pub url: String,
    /// URL scraped for metrics; `None` when nothing was scraped.
    pub metrics_url: Option<String>,
}

/// One tier's requests in a window or phase. Requests count where they were *intended* to be
/// sent, so a stall shows up in the window that suffered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierStats {
    /// Requests with a result.
    pub count: u64,
    /// Requests per outcome class label.
    pub outcomes: BTreeMap<String, u64>,
    /// Intended send to answer: what a user on the schedule waited (no coordinated omission).
    pub latency: Hist,
    /// Actual send to answer: what the target took.
    pub service_time: Hist,
    /// Intended to actual send: how far the harness lagged its own schedule.
    pub send_delay: Hist,
}

impl TierStats {
    /// The statistics of both `self`'s and `other`'s requests (exact; see [`Hist::merge`]).
    pub fn merge(&self, other: &TierStats) -> Result<TierStats, RecordError> {
        TierStats::merge_all([self, other])
    }

    /// The statistics of the requests of every one of `stats` (an error when it is empty).
    pub fn merge_all<'a, I>(stats: I) -> Result<TierStats, RecordError>
    where
        I: IntoIterator<Item = &'a TierStats>,
        I::IntoIter: Clone,
    {
        let stats = stats.into_iter();
        let mut outcomes = BTreeMap::new();
        let mut count = 0;
        for s in stats.clone() {
            count += s.count;
            for (k, v) in &s.outcomes {
                *outcomes.entry(k.clone()).or_insert(0) += v;
            }
        }
        Ok(TierStats {
            count,
            outcomes,
            latency: Hist::merge_all(stats.clone().map(|s| &s.latency))?,
            service_time: Hist::merge_all(stats.clone().map(|s| &s.service_time))?,
            send_delay: Hist::merge_all(stats.map(|s| &s.send_delay))?,
        })
    }
}

/// One statistics window.
///
/// Counts are attributed by the time that matters for them: `offered` and the per-tier
/// statistics by *intended* send time, `sent` by actual send time, `completed` by answer time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowStats {
    /// Start, seconds from run start.
    pub start_s: f64,
    /// End, seconds from run start (the last window may be shorter).
    pub end_s: f64,
    /// Requests the plan scheduled in the window.
    pub offered: u64,
    /// Requests actually sent in the window.
    pub sent: u64,
    /// Answers (of any outcome) received in the window.
    pub completed: u64,
    /// `offered` per second.
    pub offered_rate: f64,
    /// `sent` per second: the rate the harness achieved.
    pub achieved_rate: f64,
    /// Most requests in flight at once.
    pub in_flight_max: u64,
    /// Scheduled requests not sent because the in-flight cap was full.
    pub in_flight_cap_hits: u64,
    /// Per tier.
    pub per_tier: BTreeMap<String, TierStats>,
}

impl WindowStats {
    /// All tiers together (exact merge); `None` when the window has no tiers.
    pub fn overall(&self) -> Result<Option<TierStats>, RecordError> {
        if self.per_tier.is_empty() {
            return Ok(None);
        }
        TierStats::merge_all(self.per_tier.values()).map(Some)
    }
}

/// Statistics over a phase of the run; the record's `totals` is the phase spanning all of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseStats {
    /// Start, seconds from run start.
    pub start_s: f64,
    /// End, seconds from run start.
    pub end_s: f64,
    /// Requests the plan scheduled.
    pub offered: u64,
    /// Requests actually sent.
    pub sent: u64,
    /// Answers received (any outcome).
    pub completed: u64,
    /// `offered` per second.
    pub offered_rate: f64,
    /// `sent` per second.
    pub achieved_rate: f64,
    /// Most requests in flight at once.
    pub in_flight_max: u64,
    /// Scheduled requests not sent because the in-flight cap was full.
    pub in_flight_cap_hits: u64,
    /// Per tier.
    pub per_tier: BTreeMap<String, TierStats>,
    /// All tiers together.
    pub overall: TierStats,
}

/// Something that happened during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// When, seconds from run start.
    pub t_s: f64,
    /// What kind (`stage`, `fault_start`, `alert_firing`, `abort`, ...); open-ended so later
    /// issues add kinds without a format change.
    pub kind: String,
    /// What it concerns (a stage, fault or rule name).
    pub name: String,
    /// Free text for people.
    pub detail: String,
}

/// The rules a run evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesInfo {
    /// The rule files, as given.
    pub files: Vec<String>,
    /// The compression applied to every window, offset and `for`.
    pub time_scale: f64,
    /// Default evaluation interval after scaling, seconds.
    pub interval_s: f64,
    /// Rule evaluation errors (a rule that failed at some time), at most a few.
    pub errors: Vec<String>,
    /// The engine that evaluated them: `builtin`, `prometheus` or `both`.
    #[serde(default = "builtin")]
    pub engine: String,
    /// With `engine: both`: the alerts as the real Prometheus saw them (the record's `alerts`
    /// are the embedded engine's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prometheus_alerts: Vec<AlertRecord>,
    /// With Alertmanager: every notification its webhook delivered to the harness.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Notification>,
}

fn builtin() -> String {
    "builtin".into()
}

/// One alert notification Alertmanager delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// When the webhook received it, seconds from run start.
    pub t_s: f64,
    /// `firing` or `resolved`.
    pub status: String,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
}

/// One alert (an alert rule's label set) over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRecord {
    /// `alertname`.
    pub name: String,
    /// All its labels.
    pub labels: BTreeMap<String, String>,
    /// Its state changes in time order: `pending`, `firing`, `inactive`.
    pub transitions: Vec<AlertTransition>,
    /// Annotations as expanded when it last went pending or firing.
    pub annotations: BTreeMap<String, String>,
}

/// A state change of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTransition {
    /// When, seconds from run start.
    pub t_s: f64,
    /// The new state.
    pub state: String,
}

/// The verdict on one alert expectation (or on an alert that fired unexpectedly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationVerdict {
    /// The alert.
    pub alert: String,
    /// What was expected, for people (`fires within 30 s after oom.start`).
    pub description: String,
    /// Whether it held.
    pub passed: bool,
    /// What happened.
    pub detail: String,
    /// Time to fire (or to resolve) from the reference point, seconds, when it did.
    pub latency_s: Option<f64>,
    /// For a failure: the rule's sub-expressions evaluated at the time that mattered.
    pub explanation: Vec<String>,
}

/// An SLO over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloRecord {
    /// The SLO's name.
    pub name: String,
    /// Objective, percent.
    pub objective: f64,
    /// Good events over the run.
    pub good: f64,
    /// All events over the run.
    pub total: f64,
    /// `good / total`; `None` without events.
    pub sli: Option<f64>,
    /// Share of the budget the run spent, as if the run were the whole SLO window (above 1:
    /// overspent).
    pub budget_consumed: Option<f64>,
    /// `1 - budget_consumed`.
    pub budget_remaining: Option<f64>,
    /// Burn rates over the workbook's window pairs (scaled by the run's time scale) at the end
    /// of the run, and the highest seen at any evaluation.
    pub burn: Vec<BurnRecord>,
}

/// Burn rates over one window pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnRecord {
    /// Long window, seconds (scaled).
    pub long_s: f64,
    /// Short window, seconds (scaled).
    pub short_s: f64,
    /// The alerting factor.
    pub factor: f64,
    /// `page` or `ticket`.
    pub severity: String,
    /// Highest burn rate over the long window during the run.
    pub max_long: Option<f64>,
    /// Highest burn rate over the short window during the run.
    pub max_short: Option<f64>,
}

/// One fault of the drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRecord {
    /// Its name in the scenario.
    pub name: String,
    /// Fault kind (`gpu_oom`, `latency`, ...) or `command`.
    pub kind: String,
    /// How it was injected: `server`, `proxy` or `command`.
    pub via: String,
    /// Planned start, seconds from run start.
    pub planned_start_s: f64,
    /// Planned end, seconds from run start.
    pub planned_end_s: f64,
    /// When it was injected; `None` if it never was (the run ended first, or injection failed).
    pub injected_s: Option<f64>,
    /// When it was reverted (on schedule or by the rollback); `None` if it was never injected
    /// or never verifiably reverted.
    pub reverted_s: Option<f64>,
    /// The fault's parameters as sent, for people (`{"kind": "gpu_oom", "fraction": 0.9}`).
    pub spec: serde_json::Value,
}

/// One action of the fault injector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultJournalEntry {
    /// When, seconds from run start.
    pub t_s: f64,
    /// The fault (for `verify`: the target checked, `server` or `proxy`).
    pub fault: String,
    /// `inject`, `revert`, `rollback` or `verify`.
    pub action: String,
    /// Whether it worked.
    pub ok: bool,
    /// What the target said.
    pub detail: String,
}

/// How the final rollback went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRecord {
    /// Every fault was reverted and every target listed none afterwards.
    pub verified: bool,
    /// What could not be reverted or verified.
    pub problems: Vec<String>,
}

/// Over what a threshold was judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ThresholdWindow {
    /// The whole run.
    Run,
    /// Every sliding window of `length_s`; `worst_start_s` is where the observed (worst) value
    /// was, `None` when no window had data.
    Sliding {
        /// Window length, seconds.
        length_s: f64,
        /// Start of the worst window, seconds from run start.
        worst_start_s: Option<f64>,
    },
}

/// A threshold's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdVerdict {
    /// The threshold's name.
    pub name: String,
    /// What it requires, for people (`p95 latency of tier fast below 500 ms`).
    pub description: String,
    /// Whether it held.
    pub passed: bool,
    /// The value judged (the worst over sliding windows); `None` when there was nothing to
    /// judge.
    pub observed: Option<f64>,
    /// The limit.
    pub limit: f64,
    /// Unit of `observed` and `limit` (`ms`, `ratio`, `req/s`).
    pub unit: String,
    /// Over what it was judged.
    pub window: ThresholdWindow,
    /// Why it passed or failed, for people.
    pub detail: String,
}

/// Whether the numbers can be trusted: the harness itself must have kept its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// False when the harness fell behind or hit its in-flight cap.
    pub trustworthy: bool,
    /// Why not, with numbers; empty when trustworthy.
    pub reasons: Vec<String>,
    /// 99th percentile of send delay, ms.
    pub send_delay_p99_ms: f64,
    /// Largest send delay, ms.
    pub max_send_delay_ms: f64,
    /// Scheduled requests not sent because the in-flight cap was full.
    pub in_flight_cap_hits: u64,
}

/// The run's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// Whether every threshold and expectation held.
    pub passed: bool,
    /// The process exit code: 0 pass, 1 a threshold or expectation failed, 2 bad input,
    /// 3 target or infrastructure failure.
    pub exit_code: i32,
}

/// Reading or writing a record failed.
#[derive(Debug)]
pub enum RecordError {
    /// The file could not be read, written or renamed.
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`reading`, `writing`, ...).
        action: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or not a record of the expected shape.
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The record was written in a format version this build does not read.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u64,
        /// The version this build reads.
        supported: u32,
    },
    /// The file has no `version` field: it is not a run record.
    NotARecord {
        /// The file.
        path: PathBuf,
    },
    /// A histogram could not be encoded, decoded or merged.
    Histogram(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Io {
                path,
                action,
                source,
            } => write!(f, "{}: error {action}: {source}", path.display()),
            RecordError::Json {
                path,
                line,
                column,
                message,
            } => write!(f, "{}:{line}:{column}: {message}", path.display()),
            RecordError::UnsupportedVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{}: run record version {found} is not supported: this build of firedrill reads \
                 version {supported} only (re-run the scenario, or use the firedrill release that \
                 wrote it)",
                path.display()
            ),
            RecordError::NotARecord { path } => write!(
                f,
                "{}: not a firedrill run record: no top-level `version` field",
                path.display()
            ),
            RecordError::Histogram(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecordError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl RecordError {
    pub(crate) fn json(path: &Path, e: &serde_json::Error) -> RecordError {
        // serde_json appends " at line L column C" to its messages; the location is printed in
        // front instead, compiler style, so strip the duplicate.
        let mut message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        RecordError::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message,
        }
    }
}

/// Writes `value` as pretty JSON to `path` atomically: a temporary file beside it, synced, then
/// renamed into place, so a reader never sees half a record.
pub(crate) fn write_json<T: Serialize>(value: &T, path: &Path) -> Result<(), RecordError> {
    let io = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| RecordError::Io {
            path: p,
            action,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "record.json".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut w, value).map_err(|e| RecordError::Json {
            path: tmp.clone(),
            line: 0,
            column: 0,
            message: format!("cannot serialize record: {e}"),
        })?;
        w.write_all(b"\n").map_err(io("writing", &tmp))?;
        let file = w
            .into_inner()
            .map_err(|e| io("writing", &tmp)(e.into_error()))?;
        file.sync_all().map_err(io("flushing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("renaming into place", path))
    })();
    if result.is_err() {
        // Best effort: do not leave the temporary file behind; the original error matters.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Just the version, read before anything else so that a record from another version is refused
/// for its version, not for the first field this build does not know.
#[derive(Deserialize)]
struct VersionProbe {
    version: Option<serde_json::Value>,
}

impl RunRecord {
    /// Writes the record as pretty JSON to `path`, atomically: to a temporary file in the same
    /// directory, flushed to disk, then renamed over `path`. A crash never leaves a truncated
    /// record behind, and a reader never sees a half-written one.
    pub fn write(&self, path: &Path) -> Result<(), RecordError> {
        write_json(self, path)
    }

    /// Reads a record from `path`. Errors name the file; JSON errors give line and column; a
    /// record of another format version is refused, saying which version it is and which this
    /// build reads.
    pub fn read(path: &Path) -> Result<RunRecord, RecordError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecordError::Io {
            path: path.to_path_buf(),
            action: "reading",
            source,
        })?;
        RunRecord::from_json(&text, path)
    }

    /// Parses a record from JSON text; `path` is only used to name the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<RunRecord, RecordError> {
        let probe: VersionProbe =
            serde_json::from_str(text).map_err(|e| RecordError::json(path, &e))?;
        match probe.version {
            None => {
                return Err(RecordError::NotARecord {
                    path: path.to_path_buf(),
                })
            }
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(RECORD_VERSION)) => {
            }
            Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => {
                return Err(RecordError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found: n.as_u64().unwrap_or_default(),
                    supported: RECORD_VERSION,
                })
            }
            // Anything else (a string, a float, negative) falls through to the typed parse,
            // which names the field and the expected type with a position.
            Some(_) => {}
        }
        serde_json::from_str(text).map_err(|e| RecordError::json(path, &e))
    }
}

#[cfg(test)]
pub(crate) mod tests;
