//! Scenario files: YAML, versioned, every field typed. `Scenario::load` parses and validates;
//! every error names the file, line, column and field path and says what was expected.

pub mod alerts;
pub mod capacity;
mod duration;
pub mod faults;
mod inputs;
mod locate;

pub use alerts::{Expectation, Rules, When};
pub use duration::Dur;
pub use faults::{CommandEntry, FaultEntry};
pub use inputs::read_inputs;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The scenario format version this build reads.
pub const SCENARIO_VERSION: u32 = 1;

/// A load test scenario: the target, the load, what to observe, and the thresholds to judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Format version; must be 1.
    pub version: u32,
    /// Short name, used in reports.
    pub name: String,
    /// What the scenario proves, for people.
    #[serde(default)]
    pub description: String,
    /// One seed makes the whole plan reproducible.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// What to drive.
    pub target: Target,
    /// The traffic.
    pub load: Load,
    /// What to scrape.
    #[serde(default)]
    pub observe: Observe,
    /// Pass/fail conditions on the client-side measurements.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// Faults on the load's timeline, each reverted when it ends and on every exit path.
    #[serde(default)]
    pub faults: Vec<FaultEntry>,
    /// Alert rules evaluated during the run on the scraped series.
    #[serde(default)]
    pub rules: Option<Rules>,
    /// What the alerts must do.
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// A previous run to compare this one with, as a threshold of the run (see
    /// `firedrill compare`).
    #[serde(default)]
    pub baseline: Option<Baseline>,
    /// Capacity planning: the rates `firedrill sweep` runs and what it sizes for.
    #[serde(default)]
    pub capacity: Option<capacity::Capacity>,
}

fn default_seed() -> u64 {
    1
}

/// The system under test: exactly one of `reference_server` and `url`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The reference server, started by the harness as a child process on 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_server: Option<ReferenceServerTarget>,
    /// Any HTTP service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<UrlTarget>,
}

/// The embedded reference server and its config overrides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceServerTarget {
    /// Number of GPU workers.
    #[serde(default)]
    pub workers: Option<usize>,
    /// CPU threads each worker's tensor compute may use (`RAYON_NUM_THREADS` of the server
    /// process). Unset: candle's default, every core, shared by all workers, so busy workers
    /// slow each other. 1: each worker computes on one thread, like one GPU each (capacity
    /// planning wants that: workers that scale).
    #[serde(default)]
    pub compute_threads: Option<usize>,
    /// Any other server config fields (see `reference-server --print-config`), merged over the
    /// defaults.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// A service reached by URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UrlTarget {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// Metrics URL; default: base + `observe.metrics_path`.
    #[serde(default)]
    pub metrics: Option<String>,
    /// Environment variable holding the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Base URL of the target's admin fault API (`/admin/faults`), for server-side faults.
    #[serde(default)]
    pub admin: Option<String>,
    /// Environment variable holding the admin token.
    #[serde(default)]
    pub admin_token_env: Option<String>,
}

/// Open or closed workload model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoadModel {
    /// Requests leave at their intended times whatever the target does (stage values are rates).
    #[default]
    Open,
    /// A fixed number of users, each sending, waiting for the answer, thinking (stage values are users).
    Closed,
}

/// The arrival process of the open model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "process")]
pub enum Arrival {
    /// Evenly spaced at the stage's rate.
    Constant,
    /// Poisson: exponential gaps at the stage's rate.
    #[default]
    Poisson,
    /// Gamma gaps: `burstiness` is the squared coefficient of variation (1 = Poisson, > 1 burstier).
    Gamma {
        /// Squared coefficient of variation of the gaps.
        burstiness: f64,
    },
    /// Replay a trace: one send time (seconds from start) per line; stage rates are ignored.
    Replay {
        /// The trace file, relative to the scenario file.
        file: PathBuf,
    },
}

/// The traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Open (arrival rate) or closed (users).
    #[serde(default)]
    pub model: LoadModel,
    /// How sends are spaced (open model).
    #[serde(default)]
    pub arrival: Arrival,
    /// The timeline of rates (open) or user counts (closed).
    pub stages: Vec<Stage>,
    /// What each request asks for.
    #[serde(default)]
    pub mix: Mix,
    /// A request not answered by then counts as a client timeout.
    #[serde(default = "default_timeout")]
    pub request_timeout: Dur,
    /// At most this many requests in flight; more are recorded as not sent and the run is marked
    /// untrustworthy.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Closed model: pause between a user's answer and its next request.
    #[serde(default)]
    pub think_time: Dur,
    /// Async requests: how often to poll a job's status.
    #[serde(default = "default_poll")]
    pub poll_interval: Dur,
    /// Journeys: after a generation succeeds, download its image (`image_url`) as a user would;
    /// latency runs to the end of the download and a failed download counts as `http_error`.
    #[serde(default)]
    pub fetch_image: bool,
}

fn default_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(60))
}
fn default_in_flight() -> usize {
    512
}
fn default_poll() -> Dur {
    Dur(std::time::Duration::from_millis(200))
}

/// One stage of the timeline: exactly one of `hold`, `ramp`, `step`, `spike`, lasting `for`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Name for reports and fault timing (`after: attack.start`).
    #[serde(default)]
    pub name: Option<String>,
    /// How long the stage lasts.
    #[serde(rename = "for")]
    pub duration: Dur,
    /// Hold this rate (or user count).
    #[serde(default)]
    pub hold: Option<f64>,
    /// Ramp linearly from the previous stage's final value (or `from`) to this one.
    #[serde(default)]
    pub ramp: Option<f64>,
    /// Start value of a ramp or step (default: where the previous stage ended, else 0).
    #[serde(default)]
    pub from: Option<f64>,
    /// Climb in `steps` equal plateaus from `from` to this value.
    #[serde(default)]
    pub step: Option<f64>,
    /// Number of plateaus of a `step` stage.
    #[serde(default)]
    pub steps: Option<u32>,
    /// Rise linearly to this peak at mid-stage and fall back to the previous value.
    #[serde(default)]
    pub spike: Option<f64>,
    /// Overrides of the request mix during this stage (an attack raises `unsafe_share`).
    #[serde(default)]
    pub mix: Option<Mix>,
}

/// What requests ask for; each weighted map picks one key per request by weight.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Tier weights (`turbo`, `fast`, `relax`).
    #[serde(default)]
    pub tiers: BTreeMap<String, f64>,
    /// Model weights.
    #[serde(default)]
    pub models: BTreeMap<String, f64>,
    /// Step-count weights; the key `default` leaves steps to the tier.
    #[serde(default)]
    pub steps: BTreeMap<String, f64>,
    /// Resolution weights (`WxH`).
    #[serde(default)]
    pub resolutions: BTreeMap<String, f64>,
    /// `sync` / `async` weights.
    #[serde(default)]
    pub modes: BTreeMap<String, f64>,
    /// Prompt corpora.
    #[serde(default)]
    pub prompts: Option<Prompts>,
}

/// Where prompts come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prompts {
    /// A file with one prompt per line (relative to the scenario); default: the built-in corpus.
    #[serde(default)]
    pub corpus: Option<PathBuf>,
    /// Share of requests that use an unsafe prompt (explicit or subtle), 0..1.
    #[serde(default)]
    pub unsafe_share: f64,
}

/// What to scrape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observe {
    /// How often to scrape the target's metrics.
    #[serde(default = "default_scrape")]
    pub scrape_interval: Dur,
    /// Metrics path on the target.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
}

fn default_scrape() -> Dur {
    Dur(std::time::Duration::from_secs(1))
}
fn default_metrics_path() -> String {
    "/metrics".into()
}

impl Default for Observe {
    fn default() -> Self {
        Observe {
            scrape_interval: default_scrape(),
            metrics_path: default_metrics_path(),
        }
    }
}

/// A pass/fail condition: exactly one of `latency`, `error_rate`, `throughput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Name in reports and JUnit.
    pub name: String,
    /// A latency percentile (from intended send time) must stay below a limit.
    #[serde(default)]
    pub latency: Option<LatencyThreshold>,
    /// The share of requests in some outcome classes must stay below a limit.
    #[serde(default)]
    pub error_rate: Option<ErrorRateThreshold>,
    /// Achieved throughput must stay above a limit.
    #[serde(default)]
    pub throughput: Option<ThroughputThreshold>,
    /// Judge over the whole run (default) or every sliding window of this length.
    #[serde(default)]
    pub window: Option<Dur>,
    /// Stop the run as soon as it is breached.
    #[serde(default)]
    pub abort: bool,
}

/// A latency percentile limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyThreshold {
    /// Percentile, e.g. 95 or 99.9.
    pub percentile: f64,
    /// Only this tier (default: all requests).
    #[serde(default)]
    pub tier: Option<String>,
    /// The limit.
    pub below: Dur,
}

/// An error-rate limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateThreshold {
    /// Outcome classes that count (default: every error class).
    #[serde(default)]
    pub classes: Vec<String>,
    /// The limit, as a fraction 0..1.
    pub below: f64,
}

/// A throughput floor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThroughputThreshold {
    /// Successful requests per second at least.
    pub above: f64,
}

/// A scenario error, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    /// The file, when the scenario came from one.
    pub file: Option<PathBuf>,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
    /// Dotted field path.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.position) {
            (Some(p), Some((l, c))) => write!(f, "{}:{l}:{c}: ", p.display())?,
            (Some(p), None) => write!(f, "{}: ", p.display())?,
            (None, Some((l, c))) => write!(f, "line {l} column {c}: ",)?,
            (None, None) => {}
        }
        if !self.field.is_empty() && self.field != "." {
            write!(f, "field `{}`: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// The tiers, models and outcome classes a scenario may name.
/// A baseline run: this run fails if it regresses against it beyond the tolerances, with the
/// noise-aware verdict of `firedrill compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// The baseline's `record.json`, relative to the scenario file.
    pub record: PathBuf,
    /// Relative latency slowdown (p50/p95/p99 per tier) and throughput drop tolerated.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Absolute error-rate rise tolerated (0.01: one point).
    #[serde(default = "default_error_tolerance")]
    pub error_tolerance: f64,
    /// Tiers with fewer requests than this in either run are not judged.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
}

fn default_tolerance() -> f64 {
    0.1
}

fn default_error_tolerance() -> f64 {
    0.01
}

fn default_min_samples() -> u64 {
    100
}

pub const TIERS: [&str; 3] = ["turbo", "fast", "relax"];

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: Some(path.to_owned()),
            position: None,
            field: String::new(),
            message: format!("cannot read scenario: {e}"),
        })?;
        Scenario::parse(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Parses and validates scenario text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.to_string();
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            // The YAML library prefixes some messages with the path, which is reported apart.
            if let Some(rest) = message.strip_prefix(&format!("{field}: ")) {
                message = rest.to_owned();
            }
            let position = inner
                .location()
                .map(|l| (l.line(), l.column()))
                .or_else(|| locate::locate(text, &locate::parse_path(&field)));
            ScenarioError {
                file: None,
                position,
                field,
                message,
            }
        })?;
        scenario
            .validate()
            .map_err(|(field, message)| ScenarioError {
                file: None,
                position: locate::locate(text, &locate::parse_path(&field)),
                field,
                message,
            })?;
        Ok(scenario)
    }

    /// Semantic checks serde cannot express: the first problem, as (field path, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_owned(), m));
        if self.version != SCENARIO_VERSION {
            return err(
                "version",
                format!("unsupported scenario version {}; this firedrill reads version {SCENARIO_VERSION}", self.version),
            );
        }
        if self.name.trim().is_empty() {
            return err("name", "must not be empty".into());
        }
        match (&self.target.reference_server, &self.target.url) {
            (Some(_), Some(_)) => {
                return err(
                    "target.url",
                    "a target is either reference_server or url, not both".into(),
                )
            }
            (None, None) => return err("target", "needs reference_server or url".into()),
            (None, Some(u)) => {
                if !(u.base.starts_with("http://") || u.base.starts_with("https://")) {
                    return err(
                        "target.url.base",
                        format!("expected an http:// URL, got {:?}", u.base),
                    );
                }
                if let Some(m) = &u.metrics {
                    if !m.starts_with("http://") {
                        return err(
                            "target.url.metrics",
                            format!("expected an http:// URL, got {m:?}"),
                        );
                    }
                }
            }
            (Some(r), None) => {
                if r.workers == Some(0) {
                    return err(
                        "target.reference_server.workers",
                        "must be at least 1".into(),
                    );
                }
                if r.compute_threads == Some(0) {
                    return err(
                        "target.reference_server.compute_threads",
                        "must be at least 1".into(),
                    );
                }
            }
        }
        let l = &self.load;
        if let Arrival::Gamma { burstiness } = l.arrival {
            if !(burstiness.is_finite() && burstiness > 0.0) {
                return err(
                    "load.arrival.burstiness",
                    format!("must be a positive number, got {burstiness}"),
                );
            }
        }
        if l.stages.is_empty() {
            return err("load.stages", "at least one stage is required".into());
        }
        let unit = if l.model == LoadModel::Closed {
            "user count"
        } else {
            "rate"
        };
        for (i, s) in l.stages.iter().enumerate() {
            let f = |name: &str| format!("load.stages[{i}].{name}");
            let kinds: Vec<&str> = [
                ("hold", s.hold),
                ("ramp", s.ramp),
                ("step", s.step),
                ("spike", s.spike),
            ]
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
            match kinds.len() {
                0 => {
                    return err(
                        &format!("load.stages[{i}]"),
                        "needs one of hold, ramp, step or spike".into(),
                    )
                }
                1 => {}
                _ => {
                    return err(
                        &f(kinds[1]),
                        format!("a stage has one kind; this one has {}", kinds.join(" and ")),
                    )
                }
            }
            if s.duration.0.is_zero() {
                return err(&f("for"), "a stage must last longer than zero".into());
            }
            for (name, v) in [
                ("hold", s.hold),
                ("ramp", s.ramp),
                ("step", s.step),
                ("spike", s.spike),
                ("from", s.from),
            ] {
                if let Some(v) = v {
                    if !v.is_finite() || v < 0.0 {
                        return err(
                            &f(name),
                            format!("{unit} must be a non-negative number, got {v}"),
                        );
                    }
                    if l.model == LoadModel::Closed && v.fract() != 0.0 {
                        return err(
                            &f(name),
                            format!("the closed model counts whole users, got {v}"),
                        );
                    }
                }
            }
            if s.steps.is_some() && s.step.is_none() {
                return err(&f("steps"), "only a step stage has steps".into());
            }
            if s.step.is_some() && s.steps.unwrap_or(1) == 0 {
                return err(&f("steps"), "must be at least 1".into());
            }
            if s.from.is_some() && s.ramp.is_none() && s.step.is_none() {
                return err(
                    &f("from"),
                    "only ramp and step stages start from a value".into(),
                );
            }
            if let Some(mix) = &s.mix {
                validate_mix(mix, &f("mix"))?;
            }
        }
        validate_mix(&l.mix, "load.mix")?;
        if l.request_timeout.0.is_zero() {
            return err("load.request_timeout", "must be longer than zero".into());
        }
        if l.max_in_flight == 0 {
            return err("load.max_in_flight", "must be at least 1".into());
        }
        if l.poll_interval.0.is_zero() {
            return err("load.poll_interval", "must be longer than zero".into());
        }
        if self.observe.scrape_interval.0.is_zero() {
            return err("observe.scrape_interval", "must be longer than zero".into());
        }
        if !self.observe.metrics_path.starts_with('/') {
            return err(
                "observe.metrics_path",
                format!("must start with /, got {:?}", self.observe.metrics_path),
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.thresholds.iter().enumerate() {
            let f = |name: &str| format!("thresholds[{i}].{name}");
            if !names.insert(t.name.as_str()) {
                return err(&f("name"), format!("duplicate threshold name {:?}", t.name));
            }
            let kinds = [
                t.latency.is_some(),
                t.error_rate.is_some(),
                t.throughput.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return err(
                    &format!("thresholds[{i}]"),
                    "needs exactly one of latency, error_rate or throughput".into(),
                );
            }
            if let Some(lat) = &t.latency {
                if !(lat.percentile > 0.0 && lat.percentile < 100.0) {
                    return err(
                        &f("latency.percentile"),
                        format!("must be within (0, 100), got {}", lat.percentile),
                    );
                }
                if let Some(tier) = &lat.tier {
                    if !TIERS.contains(&tier.as_str()) {
                        return err(
                            &f("latency.tier"),
                            format!("unknown tier {tier:?}; expected turbo, fast or relax"),
                        );
                    }
                }
            }
            if let Some(e) = &t.error_rate {
                if !(0.0..=1.0).contains(&e.below) {
                    return err(
                        &f("error_rate.below"),
                        format!("must be a fraction within [0, 1], got {}", e.below),
                    );
                }
                for (j, c) in e.classes.iter().enumerate() {
                    if !crate::outcome::OutcomeClass::ALL
                        .iter()
                        .any(|k| k.as_str() == c)
                    {
                        let known: Vec<&str> = crate::outcome::OutcomeClass::ALL
                            .iter()
                            .map(|k| k.as_str())
                            .collect();
                        return err(
                            &f(&format!("error_rate.classes[{j}]")),
                            format!(
                                "unknown outcome class {c:?}; expected one of {}",
                                known.join(", ")
                            ),
                        );
                    }
                }
            }
            if let Some(tp) = &t.throughput {
                if !(tp.above.is_finite() && tp.above >= 0.0) {
                    return err(
                        &f("throughput.above"),
                        format!("must be a non-negative rate, got {}", tp.above),
                    );
                }
            }
            if t.window.is_some_and(|w| w.0.is_zero()) {
                return err(&f("window"), "must be longer than zero".into());
            }
        }
        faults::validate(self)?;
        if let Some(b) = &self.baseline {
            for (field, v) in [
                ("baseline.tolerance", b.tolerance),
                ("baseline.error_tolerance", b.error_tolerance),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err((
                        field.into(),
                        format!("must be a number >= 0 (0.1: 10%), got {v}"),
                    ));
                }
            }
        }
        if let Some(c) = &self.capacity {
            capacity::validate(c)?;
        }
        alerts::validate(self)
    }
}

fn validate_mix(m: &Mix, at: &str) -> Result<(), (String, String)> {
    let weights =
        |name: &str, map: &BTreeMap<String, f64>, key_ok: &dyn Fn(&str) -> Result<(), String>| {
            for (k, w) in map {
                let f = format!("{at}.{name}.{k}");
                key_ok(k).map_err(|m| (f.clone(), m))?;
                if !w.is_finite() || *w < 0.0 {
                    return Err((f, format!("weight must be a non-negative number, got {w}")));
                }
            }
            if !map.is_empty() && map.values().sum::<f64>() <= 0.0 {
                return Err((
                    format!("{at}.{name}"),
                    "weights must not all be zero".into(),
                ));
            }
            Ok(())
        };
    weights("tiers", &m.tiers, &|k| {
        if TIERS.contains(&k) {
            Ok(())
        } else {
            Err(format!("unknown tier {k:?}; expected turbo, fast or relax"))
        }
    })?;
    weights("models", &m.models, &|k| {
        if k.is_empty() {
            Err("empty model name".into())
        } else {
            Ok(())
        }
    })?;
    weights("steps", &m.steps, &|k| {
        if k == "default" || k.parse::<u32>().is_ok_and(|n| n > 0) {
            Ok(())
        } else {
            Err(format!(
                "expected a positive step count or `default`, got {k:?}"
            ))
        }
    })?;
    weights("resolutions", &m.resolutions, &|k| {
        let ok = k.split_once('x').is_some_and(|(w, h)| {
            w.parse::<u32>().is_ok_and(|w| w > 0) && h.parse::<u32>().is_ok_and(|h| h > 0)
        });
        if ok {
            Ok(())
        } else {
            Err(format!("expected WxH such as 256x256, got {k:?}"))
        }
    })?;
    weights("modes", &m.modes, &|k| {
        if k == "sync" || k == "async" {
            Ok(())
        } else {
            Err(format!("expected sync or async, got {k:?}"))
        }
    })?;
    if let Some(p) = &m.prompts {
        if !(0.0..=1.0).contains(&p.unsafe_share) {
            return Err((
                format!("{at}.prompts.unsafe_share"),
                format!("must be a fraction within [0, 1], got {}", p.unsafe_share),
            ));
        }
    }
    Ok(())
}

/// The JSON Schema of the scenario format (for editor completion).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Scenario)).unwrap_or_default()
}
