//! Alerting rules' state over time, with Prometheus's semantics: an alert is pending from the
//! first evaluation its expression returns its label set, firing once it has been active for
//! `for`, and resolved at the first evaluation without it (or, with `keep_firing_for`, once it has
//! been missing that long). Pure: each evaluation's time and result come in as arguments.

use std::collections::BTreeMap;

/// Label names and values, sorted by name.
pub type LabelMap = BTreeMap<String, String>;

/// The state of one alert (one label set of one rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    /// Not active.
    Inactive,
    /// Active for less than `for`.
    Pending,
    /// Active for at least `for`.
    Firing,
}

impl AlertState {
    /// `inactive`, `pending` or `firing` (the `alertstate` label's values).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// What an alerting rule says about timing and labels (the expression is evaluated elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// `alertname`.
    pub name: String,
    /// How long an alert stays pending before it fires, ms.
    pub for_ms: i64,
    /// How long a firing alert keeps firing after its expression stops returning it, ms.
    pub keep_firing_for_ms: i64,
    /// Labels added to (and overriding) the result's labels.
    pub labels: LabelMap,
}

/// One alert of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Its labels: the result's (without `__name__`), the rule's, and `alertname`.
    pub labels: LabelMap,
    /// Pending or firing (inactive alerts are dropped).
    pub state: AlertState,
    /// When it became active, ms.
    pub active_at: i64,
    /// When it started firing, ms.
    pub fired_at: Option<i64>,
    /// The sample value of its last evaluation.
    pub value: f64,
    /// Since when its expression has not returned it while `keep_firing_for` holds it, ms.
    pub missing_since: Option<i64>,
}

/// A change of an alert's state at an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The alert's labels.
    pub labels: LabelMap,
    /// State before.
    pub from: AlertState,
    /// State after.
    pub to: AlertState,
    /// The evaluation time, ms.
    pub at: i64,
    /// The value at that evaluation (NaN when it resolved).
    pub value: f64,
}

/// The alerts of one rule across evaluations.
#[derive(Debug, Clone)]
pub struct AlertTracker {
    rule: AlertRule,
    alerts: BTreeMap<Vec<(String, String)>, Alert>,
}

impl AlertTracker {
    /// A tracker with no active alerts.
    pub fn new(rule: AlertRule) -> AlertTracker {
        AlertTracker {
            rule,
            alerts: BTreeMap::new(),
        }
    }

    /// The rule.
    pub fn rule(&self) -> &AlertRule {
        &self.rule
    }

    /// The pending and firing alerts, in label order.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// The labels an alert gets from one result series.
    pub fn alert_labels(&self, series: &LabelMap) -> LabelMap {
        let mut l: LabelMap = series
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in &self.rule.labels {
            l.insert(k.clone(), v.clone());
        }
        l.insert("alertname".into(), self.rule.name.clone());
        l
    }

    /// Applies one evaluation at `t` whose expression returned `result` (labels, value); returns
    /// the state changes, in label order.
    pub fn eval(&mut self, t: i64, result: &[(LabelMap, f64)]) -> Vec<Transition> {
        let mut changes = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (series, value) in result {
            let labels = self.alert_labels(series);
            let key: Vec<(String, String)> = labels.clone().into_iter().collect();
            seen.insert(key.clone());
            match self.alerts.get_mut(&key) {
                Some(a) => {
                    a.value = *value;
                    a.missing_since = None;
                }
                None => {
                    self.alerts.insert(
                        key,
                        Alert {
                            labels: labels.clone(),
                            state: AlertState::Pending,
                            active_at: t,
                            fired_at: None,
                            value: *value,
                            missing_since: None,
                        },
                    );
                    changes.push(Transition {
                        labels,
                        from: AlertState::Inactive,
                        to: AlertState::Pending,
                        at: t,
                        value: *value,
                    });
                }
            }
        }
        let mut gone = Vec::new();
        for (key, a) in self.alerts.iter_mut() {
            if seen.contains(key) {
                // Prometheus: active for at least `for` (0 fires at the first evaluation).
                if a.state == AlertState::Pending && t - a.active_at >= self.rule.for_ms {
                    a.state = AlertState::Firing;
                    a.fired_at = Some(t);
                    changes.push(Transition {
                        labels: a.labels.clone(),
                        from: AlertState::Pending,
                        to: AlertState::Firing,
                        at: t,
                        value: a.value,
                    });
                }
                continue;
            }
            if a.state == AlertState::Firing && self.rule.keep_firing_for_ms > 0 {
                let since = *a.missing_since.get_or_insert(t);
                if t - since < self.rule.keep_firing_for_ms {
                    continue;
                }
            }
            changes.push(Transition {
                labels: a.labels.clone(),
                from: a.state,
                to: AlertState::Inactive,
                at: t,
                value: f64::NAN,
            });
            gone.push(key.clone());
        }
        for k in gone {
            self.alerts.remove(&k);
        }
        // Pending entries were pushed before firing ones; keep one order for callers.
        changes.sort_by(|a, b| a.labels.cmp(&b.labels).then(a.to.cmp(&b.to)));
        changes
    }

    /// The `ALERTS` (value 1) and `ALERTS_FOR_STATE` (value: `active_at` in seconds) series of
    /// the current alerts, as Prometheus writes them after each evaluation.
    pub fn state_series(&self) -> Vec<(LabelMap, f64)> {
        let mut out = Vec::new();
        for a in self.alerts.values() {
            let mut l = a.labels.clone();
            l.insert("__name__".into(), "ALERTS".into());
            l.insert("alertstate".into(), a.state.as_str().into());
            out.push((l, 1.0));
            let mut l = a.labels.clone();
            l.insert("__name__".into(), "ALERTS_FOR_STATE".into());
            out.push((l, a.active_at as f64 / 1000.0));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(for_ms: i64, keep: i64) -> AlertTracker {
        AlertTracker::new(AlertRule {
            name: "High".into(),
            for_ms,
            keep_firing_for_ms: keep,
            labels: LabelMap::from([("severity".into(), "page".into())]),
        })
    }

    fn series(instance: &str) -> LabelMap {
        LabelMap::from([
            ("__name__".into(), "up".into()),
            ("instance".into(), instance.into()),
        ])
    }

    fn states(t: &AlertTracker) -> Vec<(String, AlertState)> {
        t.alerts()
            .map(|a| (a.labels["instance"].clone(), a.state))
            .collect()
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let mut t = rule(60_000, 0);
        let a = [(series("a"), 1.0)];
        let c = t.eval(0, &a);
        assert_eq!(
            (c[0].from, c[0].to),
            (AlertState::Inactive, AlertState::Pending)
        );
        assert_eq!(c[0].labels["alertname"], "High");
        assert_eq!(c[0].labels["severity"], "page");
        assert!(!c[0].labels.contains_key("__name__"));
        assert!(t.eval(30_000, &a).is_empty());
        // Exactly `for` after it became active: firing (Prometheus uses >=).
        let c = t.eval(60_000, &a);
        assert_eq!((c[0].to, c[0].at), (AlertState::Firing, 60_000));
        assert_eq!(t.alerts().next().unwrap().fired_at, Some(60_000));
        let c = t.eval(90_000, &[]);
        assert_eq!(
            (c[0].from, c[0].to),
            (AlertState::Firing, AlertState::Inactive)
        );
        assert!(states(&t).is_empty());
    }

    #[test]
    fn a_pending_alert_that_goes_away_never_fires_and_starts_over() {
        let mut t = rule(60_000, 0);
        let a = [(series("a"), 1.0)];
        t.eval(0, &a);
        let c = t.eval(30_000, &[]);
        assert_eq!(
            (c[0].from, c[0].to),
            (AlertState::Pending, AlertState::Inactive)
        );
        t.eval(45_000, &a);
        assert!(t.eval(90_000, &a).is_empty(), "45 s active, not yet 60");
        assert_eq!(t.eval(105_000, &a)[0].to, AlertState::Firing);
    }

    #[test]
    fn for_zero_fires_at_the_first_evaluation() {
        let mut t = rule(0, 0);
        let c = t.eval(5_000, &[(series("a"), 2.0)]);
        let to: Vec<AlertState> = c.iter().map(|c| c.to).collect();
        assert_eq!(to, vec![AlertState::Pending, AlertState::Firing]);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert_through_a_gap() {
        let mut t = rule(0, 60_000);
        let a = [(series("a"), 1.0)];
        t.eval(0, &a);
        assert!(t.eval(15_000, &[]).is_empty());
        assert!(
            t.eval(60_000, &[]).is_empty(),
            "missing since 15 s: 45 s < 60 s"
        );
        // Back before the hold ran out: the hold restarts next time it goes missing.
        assert!(t.eval(70_000, &a).is_empty());
        assert!(t.eval(100_000, &[]).is_empty());
        let c = t.eval(160_000, &[]);
        assert_eq!((c[0].to, c[0].at), (AlertState::Inactive, 160_000));
    }

    #[test]
    fn label_sets_are_separate_alerts_and_state_series_follow_prometheus() {
        let mut t = rule(10_000, 0);
        t.eval(0, &[(series("a"), 1.0)]);
        t.eval(5_000, &[(series("a"), 1.0), (series("b"), 3.0)]);
        t.eval(10_000, &[(series("a"), 1.0), (series("b"), 3.0)]);
        assert_eq!(
            states(&t),
            vec![
                ("a".into(), AlertState::Firing),
                ("b".into(), AlertState::Pending)
            ]
        );
        let s = t.state_series();
        let alerts: Vec<(&str, &str, f64)> = s
            .iter()
            .map(|(l, v)| {
                (
                    l["__name__"].as_str(),
                    l.get("alertstate").map_or("", |s| s.as_str()),
                    *v,
                )
            })
            .collect();
        assert_eq!(
            alerts,
            vec![
                ("ALERTS", "firing", 1.0),
                ("ALERTS_FOR_STATE", "", 0.0),
                ("ALERTS", "pending", 1.0),
                ("ALERTS_FOR_STATE", "", 5.0),
            ]
        );
    }
}
