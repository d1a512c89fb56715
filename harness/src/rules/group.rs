//! Rule groups at work: each group evaluated every interval on the run's clock, its rules in
//! order. Recording rules write their results back into the store (with staleness markers for
//! series that disappear, as Prometheus writes them); alerting rules move their alerts through
//! pending, firing and resolved, and write `ALERTS` and `ALERTS_FOR_STATE`. Pure apart from the
//! store it is handed; time is an argument.

use super::alerting::{AlertRule, AlertState, AlertTracker, LabelMap, Transition};
use super::rulefile::{parse_duration, RuleFile};
use super::scale::{scale_expr, scale_ms};
use super::template::{expand, TemplateData};
use super::{parse, Engine, Value};
use crate::scrape::store::stale_nan;
use crate::scrape::{Labels, SeriesStore};
use promql_parser::parser::Expr;
use std::collections::{BTreeMap, BTreeSet};

/// One alert state change, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// The rule's group.
    pub group: String,
    /// The change.
    pub transition: Transition,
    /// The annotations expanded at this evaluation (empty when the alert resolved).
    pub annotations: BTreeMap<String, String>,
}

enum Kind {
    Record {
        name: String,
        labels: LabelMap,
        /// Label sets written at the last evaluation, to mark stale when they go.
        last: BTreeSet<Labels>,
    },
    Alert {
        tracker: AlertTracker,
        annotations: BTreeMap<String, String>,
        last: BTreeSet<Labels>,
    },
}

struct LoadedRule {
    expr: Expr,
    /// The expression as evaluated (after `time_scale`), for explanations.
    query: String,
    kind: Kind,
}

struct Group {
    name: String,
    interval_ms: i64,
    next_ms: i64,
    rules: Vec<LoadedRule>,
}

/// Every group of some rule files.
pub struct RuleSet {
    groups: Vec<Group>,
    /// Errors of the last evaluations (a rule that failed at some time), for the record.
    pub errors: Vec<String>,
}

/// A rule as evaluated, for explanations and listings.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInfo {
    /// Its group.
    pub group: String,
    /// `record` or `alert` name.
    pub name: String,
    /// Whether it is an alerting rule.
    pub alert: bool,
    /// The expression after `time_scale`.
    pub query: String,
    /// `for` after `time_scale`, ms.
    pub for_ms: i64,
}

fn to_map(l: &Labels) -> LabelMap {
    l.iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn to_labels(m: &LabelMap) -> Labels {
    Labels::new(m.iter().map(|(k, v)| (k.clone(), v.clone())))
}

impl RuleSet {
    /// Loads `files`: expressions parsed and, with `time_scale` k, every window, offset, `for`,
    /// `keep_firing_for` and group interval divided by k. Groups without an interval use
    /// `default_interval_ms` (already scaled by the caller if it wants). First evaluations are at
    /// `start_ms + interval`.
    pub fn load(
        files: &[(String, RuleFile)],
        default_interval_ms: i64,
        time_scale: f64,
        start_ms: i64,
    ) -> Result<RuleSet, String> {
        let mut groups = Vec::new();
        for (path, f) in files {
            for (gi, g) in f.groups.iter().enumerate() {
                let at = |what: &str| format!("{path}: groups[{gi}] ({}): {what}", g.name);
                let interval_ms = match &g.interval {
                    Some(d) => scale_ms(parse_duration(d).map_err(|e| at(&e))?, time_scale),
                    None => default_interval_ms,
                }
                .max(1);
                let mut rules = Vec::new();
                for (ri, r) in g.rules.iter().enumerate() {
                    let at = |what: &str| {
                        format!("{path}: groups[{gi}].rules[{ri}] ({}): {what}", r.name())
                    };
                    let mut expr = parse(&r.expr).map_err(|e| at(&e.message))?;
                    scale_expr(&mut expr, time_scale);
                    let query = expr.to_string();
                    let mut labels: LabelMap = g.labels.clone().into_iter().collect();
                    labels.extend(r.labels.clone());
                    let kind = match (&r.record, &r.alert) {
                        (Some(name), _) => Kind::Record {
                            name: name.clone(),
                            labels,
                            last: BTreeSet::new(),
                        },
                        (None, Some(name)) => {
                            let ms = |d: &Option<String>| -> Result<i64, String> {
                                d.as_deref()
                                    .map(parse_duration)
                                    .transpose()
                                    .map(|v| scale_ms(v.unwrap_or(0), time_scale))
                                    .map_err(|e| at(&e))
                            };
                            Kind::Alert {
                                tracker: AlertTracker::new(AlertRule {
                                    name: name.clone(),
                                    for_ms: ms(&r.for_)?,
                                    keep_firing_for_ms: ms(&r.keep_firing_for)?,
                                    labels,
                                }),
                                annotations: r.annotations.clone(),
                                last: BTreeSet::new(),
                            }
                        }
                        (None, None) => return Err(at("needs `record` or `alert`")),
                    };
                    rules.push(LoadedRule { expr, query, kind });
                }
                groups.push(Group {
                    name: g.name.clone(),
                    interval_ms,
                    next_ms: start_ms + interval_ms,
                    rules,
                });
            }
        }
        Ok(RuleSet {
            groups,
            errors: Vec::new(),
        })
    }

    /// The rules as evaluated.
    pub fn rules(&self) -> Vec<RuleInfo> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.rules.iter().map(|r| {
                    let (name, alert, for_ms) = match &r.kind {
                        Kind::Record { name, .. } => (name.clone(), false, 0),
                        Kind::Alert { tracker, .. } => {
                            (tracker.rule().name.clone(), true, tracker.rule().for_ms)
                        }
                    };
                    RuleInfo {
                        group: g.name.clone(),
                        name,
                        alert,
                        query: r.query.clone(),
                        for_ms,
                    }
                })
            })
            .collect()
    }

    /// The longest evaluation interval of any group, ms.
    pub fn longest_interval_ms(&self) -> i64 {
        self.groups.iter().map(|g| g.interval_ms).max().unwrap_or(0)
    }

    /// Puts the groups named `name` on the phase of an evaluation at `at_ms` (a real
    /// Prometheus's, under `engine: both`): the next evaluation is the first on that phase after
    /// the last one done, so both engines evaluate the same instants of the same data.
    pub fn align(&mut self, name: &str, at_ms: i64) {
        for g in self.groups.iter_mut().filter(|g| g.name == name) {
            let last = g.next_ms - g.interval_ms;
            g.next_ms = at_ms + ((last - at_ms).div_euclid(g.interval_ms) + 1) * g.interval_ms;
        }
    }

    /// The earliest time a group is due.
    pub fn next_due(&self) -> Option<i64> {
        self.groups.iter().map(|g| g.next_ms).min()
    }

    /// Evaluates every group due at or before `now_ms` (each at its own due times, in order),
    /// writing into `store`; returns the alert state changes.
    pub fn eval_due(
        &mut self,
        engine: &Engine,
        store: &mut SeriesStore,
        now_ms: i64,
    ) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for g in &mut self.groups {
            while g.next_ms <= now_ms {
                let t = g.next_ms;
                for r in &mut g.rules {
                    let result = match engine.instant_query_expr(store, &r.expr, t) {
                        Ok(Value::Vector(v)) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
                        Ok(Value::Scalar { v, .. }) => vec![(Labels::empty(), v)],
                        Ok(_) => {
                            self.errors.push(format!(
                                "{}: rule {:?} at {t} ms: not a vector",
                                g.name, r.query
                            ));
                            Vec::new()
                        }
                        Err(e) => {
                            self.errors
                                .push(format!("{}: rule {:?} at {t} ms: {e}", g.name, r.query));
                            Vec::new()
                        }
                    };
                    eval_rule(&g.name, r, t, result, store, &mut events);
                }
                g.next_ms += g.interval_ms;
            }
        }
        events
    }

    /// The alerts pending or firing now, by rule: (alertname, labels, state).
    pub fn active_alerts(&self) -> Vec<(String, LabelMap, AlertState)> {
        let mut out = Vec::new();
        for g in &self.groups {
            for r in &g.rules {
                if let Kind::Alert { tracker, .. } = &r.kind {
                    for a in tracker.alerts() {
                        out.push((tracker.rule().name.clone(), a.labels.clone(), a.state));
                    }
                }
            }
        }
        out
    }
}

fn write(store: &mut SeriesStore, labels: Labels, t: i64, v: f64) {
    // An out-of-order write can only come from two rules recording the same series; Prometheus
    // drops it as well.
    let _ = store.append(labels, t, v);
}

fn eval_rule(
    group: &str,
    r: &mut LoadedRule,
    t: i64,
    result: Vec<(Labels, f64)>,
    store: &mut SeriesStore,
    events: &mut Vec<AlertEvent>,
) {
    match &mut r.kind {
        Kind::Record { name, labels, last } => {
            let mut now = BTreeSet::new();
            for (l, v) in result {
                let mut out = l;
                out.set("__name__", name.clone());
                for (k, val) in labels.iter() {
                    out.set(k.clone(), val.clone());
                }
                now.insert(out.clone());
                write(store, out, t, v);
            }
            for gone in last.difference(&now) {
                write(store, gone.clone(), t, stale_nan());
            }
            *last = now;
        }
        Kind::Alert {
            tracker,
            annotations,
            last,
        } => {
            let input: Vec<(LabelMap, f64)> = result.iter().map(|(l, v)| (to_map(l), *v)).collect();
            for tr in tracker.eval(t, &input) {
                let expanded = if tr.to == AlertState::Inactive {
                    BTreeMap::new()
                } else {
                    let data = TemplateData {
                        labels: tr.labels.clone(),
                        value: tr.value,
                    };
                    annotations
                        .iter()
                        .map(|(k, text)| {
                            let v = expand(text, &data)
                                .unwrap_or_else(|e| format!("<error expanding template: {e}>"));
                            (k.clone(), v)
                        })
                        .collect()
                };
                events.push(AlertEvent {
                    group: group.to_owned(),
                    transition: tr,
                    annotations: expanded,
                });
            }
            let mut now = BTreeSet::new();
            for (l, v) in tracker.state_series() {
                let l = to_labels(&l);
                now.insert(l.clone());
                write(store, l, t, v);
            }
            for gone in last.difference(&now) {
                write(store, gone.clone(), t, stale_nan());
            }
            *last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(name: &str, points: &[(i64, f64)]) -> SeriesStore {
        let mut s = SeriesStore::new();
        for &(t, v) in points {
            s.append(Labels::new([("__name__", name), ("job", "api")]), t, v)
                .unwrap();
        }
        s
    }

    const RULES: &str = "groups:\n  - name: g\n    interval: 10s\n    rules:\n      - record: job:errors:rate1m\n        expr: sum by (job) (rate(errors_total[1m]))\n      - alert: ErrorsHigh\n        expr: job:errors:rate1m > 1\n        for: 30s\n        labels: {severity: page}\n        annotations: {summary: '{{ $labels.job }} at {{ $value }}/s'}\n";

    fn load(k: f64) -> RuleSet {
        let f = RuleFile::parse(RULES).unwrap();
        RuleSet::load(&[("r.yml".into(), f)], 60_000, k, 0).unwrap()
    }

    #[test]
    fn recording_feeds_alerting_and_the_alert_fires_after_for() {
        // A counter growing 2/s for 3 minutes, then flat.
        let pts: Vec<(i64, f64)> = (0..=36)
            .map(|i| (i * 5_000, if i <= 24 { (i * 10) as f64 } else { 240.0 }))
            .collect();
        let mut store = store_with("errors_total", &pts);
        let mut rs = load(1.0);
        let engine = Engine::default();
        let mut events = Vec::new();
        for now in (0..=180_000).step_by(1_000) {
            events.extend(rs.eval_due(&engine, &mut store, now));
        }
        let seq: Vec<(i64, AlertState)> = events
            .iter()
            .map(|e| (e.transition.at, e.transition.to))
            .collect();
        // rate() divides the window's increase by the whole minute: with the counter starting at
        // 0 s, the 1m rate is 20/60 at 10 s, 60/60 at 30 s (not above 1), 80/60 at 40 s: pending
        // at 40 s, firing 30 s later. The counter stops at 120 s; at 150 s the window holds 25 s
        // of growth (about 0.9/s): resolved.
        assert_eq!(seq[0], (40_000, AlertState::Pending));
        assert_eq!(seq[1], (70_000, AlertState::Firing));
        assert_eq!(seq[2].1, AlertState::Inactive);
        assert_eq!(seq[2].0, 150_000, "{seq:?}");
        assert_eq!(events[1].annotations["summary"], "api at 2/s");
        // The recording rule's series and ALERTS exist in the store.
        let v = engine
            .instant_query(&store, "job:errors:rate1m", 60_000)
            .unwrap();
        assert!(
            matches!(v, Value::Vector(ref s) if s.len() == 1 && (s[0].v - 2.0).abs() < 1e-9),
            "{v:?}"
        );
        let firing = engine
            .instant_query(&store, "ALERTS{alertstate=\"firing\"}", 100_000)
            .unwrap();
        assert!(matches!(firing, Value::Vector(ref s) if s.len() == 1));
        // After resolution ALERTS is stale, so the selector finds nothing (no 5-minute ghost).
        let after = engine
            .instant_query(&store, "ALERTS", seq[2].0 + 1_000)
            .unwrap();
        assert!(
            matches!(after, Value::Vector(ref s) if s.is_empty()),
            "{after:?}"
        );
    }

    #[test]
    fn time_scale_compresses_windows_for_and_intervals() {
        let rs = load(10.0);
        let info = rs.rules();
        assert_eq!(info[0].query, "sum by (job) (rate(errors_total[6s]))");
        assert_eq!(info[1].for_ms, 3_000);
        assert_eq!(rs.next_due(), Some(1_000));
    }

    #[test]
    fn align_moves_the_next_evaluation_onto_another_phase_without_skipping() {
        let mut rs = load(10.0);
        assert_eq!(rs.longest_interval_ms(), 1_000);
        // Next due at 1000 (last "done" at 0); Prometheus evaluated at -2300: phase 700.
        rs.align("g", -2_300);
        assert_eq!(rs.next_due(), Some(700));
        rs.align("g", 5_100);
        assert_eq!(rs.next_due(), Some(100));
        rs.align("nope", 0);
        assert_eq!(rs.next_due(), Some(100));
    }

    #[test]
    fn a_bad_expression_is_refused_with_its_place() {
        let f = RuleFile::parse(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n",
        )
        .unwrap();
        let e = RuleSet::load(&[("r.yml".into(), f)], 60_000, 1.0, 0)
            .err()
            .unwrap();
        assert!(e.contains("r.yml: groups[0].rules[0] (A)"), "{e}");
    }
}
