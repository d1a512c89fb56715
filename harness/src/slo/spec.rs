//! The SLO spec, in the spirit of Sloth: a name, an objective over a window, and an SLI given as a
//! pair of good and total counters or as a latency threshold on a histogram's buckets.
//!
//! ```yaml
//! version: 1
//! service: reference-server
//! slos:
//!   - name: generation_availability
//!     objective: 99.9          # percent of events that must be good
//!     window: 30d
//!     sli:
//!       events: {good: 'requests_total{status="success"}', total: 'requests_total{status!~"blocked|rate_limited"}'}
//!   - name: turbo_latency
//!     objective: 99
//!     window: 30d
//!     sli:
//!       latency: {histogram: generation_time_seconds, below: 10s, labels: {tier: turbo}}
//! ```

use crate::scenario::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The SLO file format version this build reads.
pub const SLO_VERSION: u32 = 1;

/// A file of SLOs for one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SloFile {
    /// Format version; must be 1.
    pub version: u32,
    /// The service the SLOs are about (a label on every generated series).
    pub service: String,
    /// The objectives.
    pub slos: Vec<Slo>,
}

/// One objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Name, `[a-z0-9_]`; the `slo` label of the generated series and alerts.
    pub name: String,
    /// For people.
    #[serde(default)]
    pub description: String,
    /// Percent of events that must be good, e.g. 99.9.
    pub objective: f64,
    /// The compliance window, e.g. `30d` written as `720h`.
    pub window: Dur,
    /// How good and total events are counted.
    pub sli: Sli,
    /// Extra labels on the generated alerts (`severity` is set per alert).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The indicator: exactly one of `events` and `latency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sli {
    /// Good and total event counters (series selectors of counters).
    #[serde(default)]
    pub events: Option<EventsSli>,
    /// Requests faster than a threshold, from a classic histogram.
    #[serde(default)]
    pub latency: Option<LatencySli>,
}

/// Good and total counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsSli {
    /// Selector of the good events' counter, e.g. `requests_total{status="success"}`.
    pub good: String,
    /// Selector of all events' counter.
    pub total: String,
}

/// A latency threshold on a histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencySli {
    /// The histogram's name (without `_bucket`), e.g. `generation_time_seconds`.
    pub histogram: String,
    /// Good means at most this long; must be one of the histogram's bucket bounds.
    pub below: Dur,
    /// Label matchers narrowing the histogram (`{tier: fast}`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Slo {
    /// The error budget: the share of events allowed to be bad (0.001 for 99.9%).
    pub fn error_budget(&self) -> f64 {
        1.0 - self.objective / 100.0
    }

    /// The good and total selectors of the SLI.
    pub fn selectors(&self) -> (String, String) {
        if let Some(e) = &self.sli.events {
            return (e.good.clone(), e.total.clone());
        }
        let l = self.sli.latency.as_ref().expect("validated: one SLI kind");
        let mut matchers: Vec<String> = l
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        let total = format!("{}_count{{{}}}", l.histogram, matchers.join(","));
        // Prometheus 3 stores `le="10"` as `le="10.0"`; the regex matches either form.
        let secs = l.below.secs();
        let bound = if secs.fract() == 0.0 {
            format!("{secs:.0}(\\\\.0)?")
        } else {
            format!("{secs}").replace('.', "\\\\.")
        };
        matchers.push(format!("le=~\"{bound}\""));
        let good = format!("{}_bucket{{{}}}", l.histogram, matchers.join(","));
        (good, total)
    }
}

impl SloFile {
    /// Parses and validates SLO YAML; errors name the field path and, where known, the line.
    pub fn parse(text: &str) -> Result<SloFile, String> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let f: SloFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            format!("field `{path}`: {}", e.into_inner())
        })?;
        f.validate()
            .map_err(|(field, m)| format!("field `{field}`: {m}"))?;
        Ok(f)
    }

    /// Reads and validates an SLO file.
    pub fn load(path: &std::path::Path) -> Result<SloFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        SloFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Semantic checks: the first problem as (field path, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.version != SLO_VERSION {
            return Err((
                "version".into(),
                format!(
                    "unsupported version {}; this firedrill reads {SLO_VERSION}",
                    self.version
                ),
            ));
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if self.service.trim().is_empty() {
            return Err(("service".into(), "must not be empty".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.slos.iter().enumerate() {
            let f = |n: &str| format!("slos[{i}].{n}");
            if !name_ok(&s.name) {
                return Err((f("name"), format!("expected [a-z0-9_]+, got {:?}", s.name)));
            }
            if !seen.insert(&s.name) {
                return Err((f("name"), format!("duplicate SLO {:?}", s.name)));
            }
            if !(s.objective > 0.0 && s.objective < 100.0) {
                return Err((
                    f("objective"),
                    format!(
                        "a percentage strictly between 0 and 100, got {}",
                        s.objective
                    ),
                ));
            }
            if s.window.0.is_zero() {
                return Err((f("window"), "must be longer than zero".into()));
            }
            match (&s.sli.events, &s.sli.latency) {
                (Some(e), None) => {
                    for (k, v) in [("good", &e.good), ("total", &e.total)] {
                        promql_selector(v).map_err(|m| (f(&format!("sli.events.{k}")), m))?;
                    }
                }
                (None, Some(l)) => {
                    if l.below.0.is_zero() {
                        return Err((f("sli.latency.below"), "must be longer than zero".into()));
                    }
                    if l.histogram.ends_with("_bucket") {
                        return Err((
                            f("sli.latency.histogram"),
                            "give the histogram's name without `_bucket`".into(),
                        ));
                    }
                }
                _ => {
                    return Err((
                        f("sli"),
                        "needs exactly one of `events` and `latency`".into(),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Checks that `s` reads as a series selector: a metric name with optional `{...}` matchers.
fn promql_selector(s: &str) -> Result<(), String> {
    let s = s.trim();
    let name_end = s.find('{').unwrap_or(s.len());
    let name = &s[..name_end];
    let valid_name = !name.is_empty()
        && name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
    if !valid_name {
        return Err(format!(
            "expected a series selector such as requests_total{{status=\"success\"}}, got {s:?}"
        ));
    }
    if name_end < s.len() && !s.ends_with('}') {
        return Err(format!("unclosed `{{` in {s:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "version: 1\nservice: svc\nslos:\n  - name: avail\n    objective: 99.9\n    window: 720h\n    sli:\n      events: {good: 'requests_total{status=\"success\"}', total: requests_total}\n  - name: turbo_latency\n    objective: 99\n    window: 720h\n    sli:\n      latency: {histogram: generation_time_seconds, below: 10s, labels: {tier: turbo}}\n";

    #[test]
    fn parses_and_derives_selectors() {
        let f = SloFile::parse(FILE).unwrap();
        assert!((f.slos[0].error_budget() - 0.001).abs() < 1e-12);
        let (good, total) = f.slos[1].selectors();
        assert_eq!(
            good,
            r#"generation_time_seconds_bucket{tier="turbo",le=~"10(\\.0)?"}"#
        );
        assert_eq!(total, r#"generation_time_seconds_count{tier="turbo"}"#);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let bad = FILE.replace("objective: 99.9", "objective: 100");
        assert!(SloFile::parse(&bad)
            .unwrap_err()
            .contains("slos[0].objective"));
        let bad = FILE.replace("total: requests_total", "total: '{oops'");
        assert!(SloFile::parse(&bad)
            .unwrap_err()
            .contains("slos[0].sli.events.total"));
        let bad = FILE.replace("objective: 99\n", "objective: 99\n    colour: red\n");
        assert!(SloFile::parse(&bad).unwrap_err().contains("colour"));
    }
}
