//! The `capacity:` section: how `firedrill sweep` chooses its rates, runs each step to steady
//! state, and which rates it sizes the worker pool for.

use super::duration::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Capacity planning with `firedrill sweep`: the scenario's load (its mix and arrival process) at
/// a series of rates, each judged by the scenario's thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Rates to run, req/s, in order; when empty, the search finds the highest passing rate.
    #[serde(default)]
    pub rates: Vec<f64>,
    /// The search: double from `start` until a threshold breaks (or `max`), then bisect.
    #[serde(default)]
    pub search: CapacitySearch,
    /// Statistics window within a step.
    #[serde(default = "default_window")]
    pub window: Dur,
    /// The span that must be steady; a step's statistics are taken over it.
    #[serde(default = "default_measure")]
    pub measure: Dur,
    /// Relative drift of latency (and of the in-flight count) tolerated over the span.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Longest a step runs; a step not steady by then fails.
    #[serde(default = "default_max_step")]
    pub max_step: Dur,
    /// Pause between steps, after the target's queue has emptied.
    #[serde(default = "default_cooldown")]
    pub cooldown: Dur,
    /// Rates to size the worker pool for, req/s (default: the highest passing rate found).
    #[serde(default)]
    pub size_for: Vec<f64>,
    /// Largest worker count the sizing considers.
    #[serde(default = "default_max_workers")]
    pub max_workers: usize,
    /// Run each recommended configuration of the reference server and compare the predicted
    /// queue wait with the measured one.
    #[serde(default = "default_validate")]
    pub validate: bool,
    /// The steady span a check run measures (longer than `measure`: a p95 of queue wait needs
    /// more samples than a step's verdict).
    #[serde(default = "default_check_measure")]
    pub check_measure: Dur,
}

/// The search for the highest passing rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacitySearch {
    /// First rate, req/s.
    #[serde(default = "default_start")]
    pub start: f64,
    /// Highest rate tried, req/s.
    #[serde(default = "default_max")]
    pub max: f64,
    /// Bisection stops when the highest pass and lowest failure are this close, req/s.
    #[serde(default = "default_resolution")]
    pub resolution: f64,
}

impl Default for CapacitySearch {
    fn default() -> Self {
        CapacitySearch {
            start: default_start(),
            max: default_max(),
            resolution: default_resolution(),
        }
    }
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            rates: Vec::new(),
            search: CapacitySearch::default(),
            window: default_window(),
            measure: default_measure(),
            tolerance: default_tolerance(),
            max_step: default_max_step(),
            cooldown: default_cooldown(),
            size_for: Vec::new(),
            max_workers: default_max_workers(),
            validate: default_validate(),
            check_measure: default_check_measure(),
        }
    }
}

fn default_window() -> Dur {
    Dur(Duration::from_secs(2))
}
fn default_measure() -> Dur {
    Dur(Duration::from_secs(20))
}
fn default_tolerance() -> f64 {
    0.15
}
fn default_max_step() -> Dur {
    Dur(Duration::from_secs(120))
}
fn default_cooldown() -> Dur {
    Dur(Duration::from_secs(3))
}
fn default_max_workers() -> usize {
    64
}
fn default_validate() -> bool {
    true
}
fn default_check_measure() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_start() -> f64 {
    1.0
}
fn default_max() -> f64 {
    256.0
}
fn default_resolution() -> f64 {
    0.5
}

/// Checks the section; errors are `(field, message)`.
pub fn validate(c: &Capacity) -> Result<(), (String, String)> {
    let err = |f: &str, m: String| Err((format!("capacity.{f}"), m));
    for (i, r) in c.rates.iter().enumerate() {
        if !(r.is_finite() && *r > 0.0) {
            return err(
                &format!("rates[{i}]"),
                format!("must be a rate > 0 req/s, got {r}"),
            );
        }
    }
    for (i, r) in c.size_for.iter().enumerate() {
        if !(r.is_finite() && *r > 0.0) {
            return err(
                &format!("size_for[{i}]"),
                format!("must be a rate > 0 req/s, got {r}"),
            );
        }
    }
    let s = &c.search;
    for (f, v) in [
        ("search.start", s.start),
        ("search.max", s.max),
        ("search.resolution", s.resolution),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return err(f, format!("must be > 0 req/s, got {v}"));
        }
    }
    if s.max < s.start {
        return err(
            "search.max",
            format!("must be at least search.start ({}), got {}", s.start, s.max),
        );
    }
    if c.window.0.is_zero() {
        return err("window", "must be longer than zero".into());
    }
    for (field, span) in [("measure", c.measure), ("check_measure", c.check_measure)] {
        if span.0 < c.window.0 * 3 {
            return err(
                field,
                format!(
                    "must span at least three windows ({} each) to judge a trend",
                    c.window
                ),
            );
        }
    }
    if c.max_step.0 < c.measure.0 {
        return err(
            "max_step",
            format!("must be at least measure ({})", c.measure),
        );
    }
    if !(c.tolerance.is_finite() && c.tolerance > 0.0) {
        return err(
            "tolerance",
            format!("must be > 0 (0.15: 15%), got {}", c.tolerance),
        );
    }
    if c.max_workers == 0 {
        return err("max_workers", "must be at least 1".into());
    }
    Ok(())
}
