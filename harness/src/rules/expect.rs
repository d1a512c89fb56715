//! Judging alert expectations against what the alerts did. Pure: the alerts' state changes and
//! the resolved reference times in, verdicts out.

use reports::record::{AlertRecord, ExpectationVerdict};

/// What an expectation asks, with its times resolved (seconds from the run's start).
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Starts firing in `[from, from + within]`.
    Fires {
        from: f64,
        within: f64,
        label: String,
    },
    /// Stops firing in `[from, from + within]`.
    Resolves {
        from: f64,
        within: f64,
        label: String,
    },
    /// In this state at `at`.
    StateAt {
        at: f64,
        state: &'static str,
        label: String,
    },
    /// Never fires.
    Never,
}

/// An expectation ready to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The alert's name.
    pub alert: String,
    /// Labels an alert must carry to count.
    pub labels: std::collections::BTreeMap<String, String>,
    /// What it must do.
    pub check: Check,
}

fn matches(a: &AlertRecord, r: &Resolved) -> bool {
    a.name == r.alert && r.labels.iter().all(|(k, v)| a.labels.get(k) == Some(v))
}

/// The state of `a` at `t` (the last change at or before `t`; `inactive` before any).
pub fn state_at(a: &AlertRecord, t: f64) -> &str {
    a.transitions
        .iter()
        .take_while(|tr| tr.t_s <= t + 1e-9)
        .last()
        .map_or("inactive", |tr| tr.state.as_str())
}

fn describe(r: &Resolved) -> String {
    match &r.check {
        Check::Fires { within, label, .. } => format!("fires within {within} s after {label}"),
        Check::Resolves { within, label, .. } => {
            format!("resolves within {within} s after {label}")
        }
        Check::StateAt { state, label, .. } => format!("is {state} at {label}"),
        Check::Never => "never fires".into(),
    }
}

/// Judges one expectation.
pub fn judge(r: &Resolved, alerts: &[AlertRecord]) -> ExpectationVerdict {
    let mine: Vec<&AlertRecord> = alerts.iter().filter(|a| matches(a, r)).collect();
    let verdict = |passed: bool, detail: String, latency_s: Option<f64>| ExpectationVerdict {
        alert: r.alert.clone(),
        description: describe(r),
        passed,
        detail,
        latency_s,
        explanation: Vec::new(),
    };
    let firings = || {
        let mut v: Vec<f64> = mine
            .iter()
            .flat_map(|a| {
                a.transitions
                    .iter()
                    .filter(|t| t.state == "firing")
                    .map(|t| t.t_s)
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    match &r.check {
        Check::Fires { from, within, .. } => {
            let end = from + within;
            if let Some(t) = firings()
                .into_iter()
                .find(|t| *t >= from - 1e-9 && *t <= end + 1e-9)
            {
                return verdict(
                    true,
                    format!("fired {:.1} s after", t - from),
                    Some(t - from),
                );
            }
            let already = mine.iter().any(|a| state_at(a, *from) == "firing");
            let detail = match firings().first() {
                _ if already => format!("was already firing at {from:.1} s"),
                Some(t) => format!(
                    "did not fire between {from:.1} s and {end:.1} s (first fired at {t:.1} s)"
                ),
                None if mine.is_empty() => "never went pending or firing".into(),
                None => "went pending but never fired".into(),
            };
            verdict(false, detail, None)
        }
        Check::Resolves { from, within, .. } => {
            let end = from + within;
            let resolutions: Vec<f64> = mine
                .iter()
                .flat_map(|a| {
                    a.transitions
                        .windows(2)
                        .filter(|w| w[0].state == "firing" && w[1].state == "inactive")
                        .map(|w| w[1].t_s)
                })
                .collect();
            if let Some(t) = resolutions
                .iter()
                .copied()
                .find(|t| *t >= from - 1e-9 && *t <= end + 1e-9)
            {
                return verdict(
                    true,
                    format!("resolved {:.1} s after", t - from),
                    Some(t - from),
                );
            }
            let detail = if firings().is_empty() {
                "never fired, so it could not resolve".to_owned()
            } else if mine.iter().any(|a| state_at(a, end) == "firing") {
                format!("still firing at {end:.1} s")
            } else {
                format!("did not resolve between {from:.1} s and {end:.1} s")
            };
            verdict(false, detail, None)
        }
        Check::StateAt { at, state, .. } => {
            let seen: Vec<&str> = mine.iter().map(|a| state_at(a, *at)).collect();
            if seen.contains(state) {
                verdict(true, format!("{state} at {at:.1} s"), None)
            } else {
                let was = seen.first().copied().unwrap_or("inactive");
                verdict(false, format!("{was} at {at:.1} s"), None)
            }
        }
        Check::Never => match firings().first() {
            None => verdict(true, "never fired".into(), None),
            Some(t) => verdict(false, format!("fired at {t:.1} s"), Some(*t)),
        },
    }
}

/// Verdicts for alerts that fired with no expectation naming them and not on the allow list.
pub fn unexpected(
    alerts: &[AlertRecord],
    expected: &[Resolved],
    allow: &[String],
) -> Vec<ExpectationVerdict> {
    let mut out: Vec<ExpectationVerdict> = Vec::new();
    for a in alerts {
        // Expected means named by an expectation whose labels it carries: a page for another
        // SLO is not the page the drill expects.
        if allow.contains(&a.name) || expected.iter().any(|r| matches(a, r)) {
            continue;
        }
        let Some(t) = a.transitions.iter().find(|t| t.state == "firing") else {
            continue;
        };
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        out.push(ExpectationVerdict {
            alert: a.name.clone(),
            description: "no alert fires unexpected (add an expectation or rules.allow)".into(),
            passed: false,
            detail: format!("fired at {:.1} s {{{}}}", t.t_s, labels.join(", ")),
            latency_s: None,
            explanation: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reports::record::AlertTransition;

    fn alert(name: &str, changes: &[(f64, &str)]) -> AlertRecord {
        AlertRecord {
            name: name.into(),
            labels: [
                ("alertname".to_owned(), name.to_owned()),
                ("severity".to_owned(), "page".to_owned()),
            ]
            .into(),
            transitions: changes
                .iter()
                .map(|(t, s)| AlertTransition {
                    t_s: *t,
                    state: (*s).into(),
                })
                .collect(),
            annotations: Default::default(),
        }
    }

    fn exp(check: Check) -> Resolved {
        Resolved {
            alert: "A".into(),
            labels: Default::default(),
            check,
        }
    }

    #[test]
    fn fires_and_resolves_windows() {
        let a = [alert(
            "A",
            &[(12.0, "pending"), (15.0, "firing"), (40.0, "inactive")],
        )];
        let fires = |from, within| {
            exp(Check::Fires {
                from,
                within,
                label: "x".into(),
            })
        };
        let v = judge(&fires(10.0, 10.0), &a);
        assert!(v.passed && v.latency_s == Some(5.0), "{v:?}");
        assert!(!judge(&fires(10.0, 4.0), &a).passed);
        let late = judge(&fires(20.0, 10.0), &a);
        assert!(
            !late.passed && late.detail.contains("already firing"),
            "{late:?}"
        );
        let res = |from, within| {
            exp(Check::Resolves {
                from,
                within,
                label: "x".into(),
            })
        };
        assert_eq!(judge(&res(35.0, 10.0), &a).latency_s, Some(5.0));
        assert!(judge(&res(20.0, 10.0), &a).detail.contains("still firing"));
        let st = |at, state| {
            exp(Check::StateAt {
                at,
                state,
                label: "x".into(),
            })
        };
        assert!(judge(&st(13.0, "pending"), &a).passed);
        assert!(judge(&st(20.0, "firing"), &a).passed);
        assert!(!judge(&st(50.0, "firing"), &a).passed);
        assert!(!judge(&exp(Check::Never), &a).passed);
        assert!(judge(&exp(Check::Never), &[]).passed);
        let never = judge(
            &fires(0.0, 100.0),
            &[alert("A", &[(1.0, "pending"), (2.0, "inactive")])],
        );
        assert_eq!(never.detail, "went pending but never fired");
    }

    #[test]
    fn labels_narrow_and_unexpected_alerts_are_reported() {
        let a = [
            alert("A", &[(1.0, "firing")]),
            alert("B", &[(2.0, "firing")]),
            alert("C", &[(3.0, "pending")]),
        ];
        let mut e = exp(Check::Never);
        e.labels.insert("severity".into(), "ticket".into());
        assert!(judge(&e, &a).passed, "A is a page, not a ticket");
        let u = unexpected(&a, &[exp(Check::Never)], &[]);
        assert_eq!(u.len(), 1, "B fired unexpected; C only went pending");
        assert_eq!(u[0].alert, "B");
        // An expectation on A's tickets does not cover A's pages.
        assert_eq!(unexpected(&a, &[e.clone()], &["B".into()]).len(), 1);
        assert!(unexpected(&a, &[], &["A".into(), "B".into()]).is_empty());
    }
}
