//! The alerting side of a scenario: which rule files to evaluate during the run (`rules:`), how
//! much to compress their time (`time_scale`), and what the alerts must do (`expect:`): fire
//! within a window after an event, resolve within a window after one, be pending or firing at a
//! time, or never fire. Any other alert that fires fails the run unless `rules.allow` names it.

use super::{Dur, Scenario};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Rule files evaluated during the run, on the scraped series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Prometheus rule files, relative to the scenario file.
    pub files: Vec<PathBuf>,
    /// Evaluation interval of groups that set none, at real (unscaled) length.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Divide every `for`, `keep_firing_for`, range, offset, subquery and interval in the rules
    /// by this (a 5-minute alert proven in 15 s at 20). Latency thresholds are untouched.
    #[serde(default = "one")]
    pub time_scale: f64,
    /// Alerts that may fire without an expectation.
    #[serde(default)]
    pub allow: Vec<String>,
    /// An SLO spec (see `dashboards/prometheus/slos.yaml`), relative to the scenario file: each
    /// SLO's SLI, error budget and burn rates over the run go into the record.
    #[serde(default)]
    pub slos: Option<PathBuf>,
    /// Which engine evaluates the rules: `builtin` (the embedded one), `prometheus` (Debian's
    /// binary on 127.0.0.1 scraping the target; its alert states judge), or `both` (the embedded
    /// engine judges, Prometheus runs beside it, and every alert must fire and resolve under both
    /// within one evaluation plus one scrape interval of each other).
    #[serde(default)]
    pub engine: RuleEngine,
    /// With `engine: prometheus` or `both`: run Alertmanager with a webhook receiver in the
    /// harness; every alert that fires must be delivered.
    #[serde(default)]
    pub alertmanager: bool,
}

/// Which engine evaluates a drill's rules.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum RuleEngine {
    /// The embedded PromQL engine.
    #[default]
    Builtin,
    /// A real Prometheus.
    Prometheus,
    /// Both, compared.
    Both,
}

impl RuleEngine {
    /// `builtin`, `prometheus` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleEngine::Builtin => "builtin",
            RuleEngine::Prometheus => "prometheus",
            RuleEngine::Both => "both",
        }
    }

    /// Whether the embedded engine runs.
    pub fn builtin(self) -> bool {
        self != RuleEngine::Prometheus
    }

    /// Whether a real Prometheus runs.
    pub fn prometheus(self) -> bool {
        self != RuleEngine::Builtin
    }
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(15))
}

fn one() -> f64 {
    1.0
}

/// A point on the run's clock: `at` from the start, or from `after` (`NAME.start`, `NAME.end`
/// of a stage or fault) plus `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// An event: `STAGE.start`, `STAGE.end`, `FAULT.start`, `FAULT.end`.
    #[serde(default)]
    pub after: Option<String>,
    /// Offset from the event (or from the run's start).
    #[serde(default)]
    pub at: Option<Dur>,
    /// How long after that point the alert has (for `fires` and `resolves`).
    #[serde(default)]
    pub within: Option<Dur>,
}

/// What one alert must do; give one or more of `fires`, `resolves`, `pending_at`, `firing_at`,
/// or `never: true`. Or, with `slo` instead of `alert`, what an SLO's error budget must do:
/// `budget_remaining: {at_least: 0.5}`, and/or its burn-rate alert (`burn_alert: page`) with the
/// same timing fields as an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The alert's name (or give `slo`).
    #[serde(default)]
    pub alert: String,
    /// An SLO of the `rules.slos` spec, by name.
    #[serde(default)]
    pub slo: Option<String>,
    /// The SLO's error budget left at the end of the run (the run taken as the SLO's window):
    /// at least this fraction of it, in [0, 1].
    #[serde(default)]
    pub budget_remaining: Option<AtLeast>,
    /// The SLO's generated burn-rate alert (`SLOBurnRatePage` or `SLOBurnRateTicket` with its
    /// `slo` label), judged by `fires`, `resolves`, `pending_at`, `firing_at` or `never`.
    #[serde(default)]
    pub burn_alert: Option<BurnSeverity>,
    /// Only alerts with these labels count (`{severity: page}`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// It starts firing within `within` after the point.
    #[serde(default)]
    pub fires: Option<When>,
    /// It stops firing within `within` after the point (and stays resolved to the run's end).
    #[serde(default)]
    pub resolves: Option<When>,
    /// It is pending at the point.
    #[serde(default)]
    pub pending_at: Option<When>,
    /// It is firing at the point.
    #[serde(default)]
    pub firing_at: Option<When>,
    /// It never fires during the run.
    #[serde(default)]
    pub never: bool,
}

/// A lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AtLeast {
    /// The least value that passes.
    pub at_least: f64,
}

/// Which of an SLO's burn-rate alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BurnSeverity {
    /// `SLOBurnRatePage`: the fast windows (1h/5m at 14.4x, 6h/30m at 6x).
    Page,
    /// `SLOBurnRateTicket`: the slow window (3d/6h at 1x).
    Ticket,
}

impl Expectation {
    /// The alert this expectation judges and the labels it must carry: `alert` and `labels`,
    /// or an SLO's burn-rate alert (`SLOBurnRatePage{slo="NAME"}`); `None` for a budget-only
    /// expectation.
    pub fn alert_target(&self) -> Option<(String, std::collections::BTreeMap<String, String>)> {
        if !self.alert.is_empty() {
            return Some((self.alert.clone(), self.labels.clone()));
        }
        let (slo, sev) = (self.slo.as_ref()?, self.burn_alert?);
        let mut labels = self.labels.clone();
        labels.insert("slo".into(), slo.clone());
        let name = match sev {
            BurnSeverity::Page => "SLOBurnRatePage",
            BurnSeverity::Ticket => "SLOBurnRateTicket",
        };
        Some((name.into(), labels))
    }
}

/// Resolves `after` + `at` to a time from the run's start; `Err` names what is unknown.
pub fn resolve(s: &Scenario, w: &When) -> Result<Duration, String> {
    let base = match &w.after {
        None => Duration::ZERO,
        Some(r) => {
            let (who, edge) = r
                .rsplit_once('.')
                .ok_or_else(|| format!("expected NAME.start or NAME.end, got {r:?}"))?;
            let mut t = Duration::ZERO;
            let mut span = None;
            for (i, st) in s.load.stages.iter().enumerate() {
                let name = st.name.clone().unwrap_or_else(|| format!("stage{}", i + 1));
                if name == who {
                    span = Some((t, t + st.duration.0));
                }
                t += st.duration.0;
            }
            if span.is_none() {
                span = super::faults::timeline(s)
                    .faults()
                    .iter()
                    .find(|f| f.name == who)
                    .map(|f| (f.start, f.end()));
            }
            let (a, b) = span.ok_or_else(|| format!("{who:?} is neither a stage nor a fault"))?;
            match edge {
                "start" => a,
                "end" => b,
                e => return Err(format!("expected {who}.start or {who}.end, got .{e}")),
            }
        }
    };
    Ok(base + w.at.map_or(Duration::ZERO, |d| d.0))
}

/// Checks `rules:` and `expect:` against the rest of the scenario.
pub fn validate(s: &Scenario) -> Result<(), (String, String)> {
    if let Some(r) = &s.rules {
        if r.files.is_empty() {
            return Err(("rules.files".into(), "name at least one rule file".into()));
        }
        if !(r.time_scale.is_finite() && r.time_scale >= 1.0) {
            return Err((
                "rules.time_scale".into(),
                format!(
                    "must be a number >= 1 (a compression), got {}",
                    r.time_scale
                ),
            ));
        }
        if r.interval.0.is_zero() {
            return Err(("rules.interval".into(), "must be longer than zero".into()));
        }
        if r.alertmanager && !r.engine.prometheus() {
            return Err((
                "rules.alertmanager".into(),
                "Alertmanager receives from a real Prometheus: set engine: prometheus or both"
                    .into(),
            ));
        }
    } else if !s.expect.is_empty() {
        return Err((
            "expect".into(),
            "expectations need `rules:` to evaluate".into(),
        ));
    }
    for (i, e) in s.expect.iter().enumerate() {
        let f = |n: &str| format!("expect[{i}].{n}");
        let any = e.fires.is_some()
            || e.resolves.is_some()
            || e.pending_at.is_some()
            || e.firing_at.is_some();
        match (&e.slo, e.alert.trim().is_empty()) {
            (Some(_), false) => {
                return Err((
                    f("slo"),
                    "give `alert` or `slo`, not both (an SLO's alerts: burn_alert)".into(),
                ))
            }
            (None, true) => {
                return Err((
                    f("alert"),
                    "name the alert (or give `slo` for an error budget)".into(),
                ))
            }
            (Some(slo), true) => {
                if s.rules.as_ref().is_none_or(|r| r.slos.is_none()) {
                    return Err((
                        f("slo"),
                        format!("{slo:?}: SLO expectations need `rules.slos`, the SLO spec"),
                    ));
                }
                if let Some(b) = e.budget_remaining {
                    if !(0.0..=1.0).contains(&b.at_least) {
                        return Err((
                            f("budget_remaining.at_least"),
                            format!("a fraction of the budget in [0, 1], got {}", b.at_least),
                        ));
                    }
                }
                match (e.budget_remaining.is_some(), e.burn_alert.is_some()) {
                    (false, false) => {
                        return Err((
                            format!("expect[{i}]"),
                            "an SLO expectation needs budget_remaining or burn_alert".into(),
                        ))
                    }
                    (true, false) if any || e.never => {
                        return Err((
                            f("burn_alert"),
                            "timing (fires, resolves, ...) applies to an alert: add burn_alert: page or ticket".into(),
                        ))
                    }
                    (true, false) => continue,
                    _ => {}
                }
            }
            (None, false) => {
                if e.budget_remaining.is_some() || e.burn_alert.is_some() {
                    return Err((
                        f("slo"),
                        "budget_remaining and burn_alert belong to an SLO: name it with `slo`"
                            .into(),
                    ));
                }
            }
        }
        if e.never && any {
            return Err((
                f("never"),
                "`never` cannot be combined with fires, resolves, pending_at or firing_at".into(),
            ));
        }
        if !e.never && !any {
            return Err((
                format!("expect[{i}]"),
                "needs one of fires, resolves, pending_at, firing_at or never: true".into(),
            ));
        }
        for (k, w) in [("fires", &e.fires), ("resolves", &e.resolves)] {
            if let Some(w) = w {
                if w.within.is_none_or(|d| d.0.is_zero()) {
                    return Err((
                        f(&format!("{k}.within")),
                        "give the window the alert has, e.g. within: 30s".into(),
                    ));
                }
            }
        }
        for (k, w) in [
            ("fires", &e.fires),
            ("resolves", &e.resolves),
            ("pending_at", &e.pending_at),
            ("firing_at", &e.firing_at),
        ] {
            if let Some(w) = w {
                resolve(s, w).map_err(|m| (f(&format!("{k}.after")), m))?;
            }
        }
    }
    Ok(())
}
