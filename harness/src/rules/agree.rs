//! Two checks a drill with a real Prometheus adds: that the embedded engine and Prometheus agree
//! (every alert fires and resolves under both, the same number of times, within a tolerance: one
//! evaluation interval plus one scrape interval, since each scrapes the target at its own
//! instants), and that every alert Prometheus fired was delivered by Alertmanager.
//! Pure: alert records and notifications in, verdicts out.

use reports::record::{AlertRecord, ExpectationVerdict, Notification};
use std::collections::BTreeMap;

/// One stretch of firing: when it started and, unless it lasted to the end, when it stopped.
type Episode = (f64, Option<f64>);

fn episodes(a: &AlertRecord) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    for t in &a.transitions {
        let firing = out.last().is_some_and(|e| e.1.is_none());
        if t.state == "firing" && !firing {
            out.push((t.t_s, None));
        } else if t.state != "firing" && firing {
            if let Some(e) = out.last_mut() {
                e.1 = Some(t.t_s);
            }
        }
    }
    out
}

fn show(e: &[Episode]) -> String {
    let parts: Vec<String> = e
        .iter()
        .map(|(f, r)| match r {
            Some(r) => format!("{f:.1}–{r:.1} s"),
            None => format!("{f:.1} s–end"),
        })
        .collect();
    if parts.is_empty() {
        "never".into()
    } else {
        parts.join(", ")
    }
}

fn key_text(labels: &BTreeMap<String, String>) -> String {
    let l: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{{{}}}", l.join(", "))
}

/// Compares the alerts of the embedded engine with Prometheus's, label set by label set. An edge
/// one engine saw and the other did not is forgiven only within `tolerance_s` of the run's end
/// (`end_s`), where the other may simply not have evaluated yet.
pub fn agreement(
    builtin: &[AlertRecord],
    prometheus: &[AlertRecord],
    tolerance_s: f64,
    end_s: f64,
) -> Vec<ExpectationVerdict> {
    // Per label set: the embedded engine's episodes, and Prometheus's.
    type Both = (Vec<Episode>, Vec<Episode>);
    let mut keys: BTreeMap<&BTreeMap<String, String>, Both> = BTreeMap::new();
    for a in builtin {
        keys.entry(&a.labels).or_default().0 = episodes(a);
    }
    for a in prometheus {
        keys.entry(&a.labels).or_default().1 = episodes(a);
    }
    let near_end = |t: f64| end_s - t <= tolerance_s;
    let mut out = Vec::new();
    for (labels, (ours, theirs)) in keys {
        if ours.is_empty() && theirs.is_empty() {
            continue;
        }
        // Drop a last episode only one engine started near the end.
        let (mut ours, mut theirs) = (ours, theirs);
        if ours.len() == theirs.len() + 1 && ours.last().is_some_and(|e| near_end(e.0)) {
            ours.pop();
        } else if theirs.len() == ours.len() + 1 && theirs.last().is_some_and(|e| near_end(e.0)) {
            theirs.pop();
        }
        let mut worst: f64 = 0.0;
        let mut problem = None;
        if ours.len() != theirs.len() {
            problem = Some(format!(
                "fired {} time(s) under the embedded engine, {} under Prometheus",
                ours.len(),
                theirs.len()
            ));
        }
        for (a, b) in ours.iter().zip(&theirs) {
            worst = worst.max((a.0 - b.0).abs());
            match (a.1, b.1) {
                (Some(x), Some(y)) => worst = worst.max((x - y).abs()),
                (Some(x), None) | (None, Some(x)) if !near_end(x) => {
                    problem.get_or_insert_with(|| {
                        format!("resolved at {x:.1} s under one engine only")
                    });
                }
                _ => {}
            }
        }
        if problem.is_none() && worst > tolerance_s + 1e-9 {
            problem = Some(format!("edges {worst:.2} s apart, more than the interval"));
        }
        let name = labels.get("alertname").cloned().unwrap_or_default();
        let detail = format!(
            "{} embedded: {}; Prometheus: {}{}",
            key_text(labels),
            show(&ours),
            show(&theirs),
            problem
                .as_ref()
                .map_or(String::new(), |p| format!(" ({p})"))
        );
        out.push(ExpectationVerdict {
            alert: name,
            description: format!("fires and resolves under both engines within {tolerance_s} s"),
            passed: problem.is_none(),
            detail,
            latency_s: Some(worst),
            explanation: Vec::new(),
        });
    }
    out
}

/// For every alert that fired: a `firing` notification with its labels arrived at the webhook.
pub fn delivered(alerts: &[AlertRecord], notes: &[Notification]) -> Vec<ExpectationVerdict> {
    let mut out = Vec::new();
    for a in alerts {
        let Some(&(fired, _)) = episodes(a).first() else {
            continue;
        };
        let note = notes
            .iter()
            .find(|n| n.status == "firing" && n.labels == a.labels);
        let resolved = notes
            .iter()
            .find(|n| n.status == "resolved" && n.labels == a.labels);
        out.push(ExpectationVerdict {
            alert: a.name.clone(),
            description: "is delivered through Alertmanager".into(),
            passed: note.is_some(),
            detail: match note {
                Some(n) => format!(
                    "{} fired at {fired:.1} s, delivered at {:.1} s{}",
                    key_text(&a.labels),
                    n.t_s,
                    resolved.map_or(String::new(), |r| format!(
                        ", its resolution at {:.1} s",
                        r.t_s
                    ))
                ),
                None => format!(
                    "{} fired at {fired:.1} s and no notification reached the webhook",
                    key_text(&a.labels)
                ),
            },
            latency_s: note.map(|n| n.t_s - fired),
            explanation: Vec::new(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reports::record::AlertTransition;

    fn alert(worker: &str, changes: &[(f64, &str)]) -> AlertRecord {
        let labels: BTreeMap<String, String> = [("alertname", "A"), ("worker", worker)]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        AlertRecord {
            name: "A".into(),
            labels,
            transitions: changes
                .iter()
                .map(|&(t_s, s)| AlertTransition {
                    t_s,
                    state: s.into(),
                })
                .collect(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn engines_agree_within_the_interval_and_not_beyond() {
        let ours = [alert(
            "w0",
            &[(5.0, "pending"), (10.0, "firing"), (20.0, "inactive")],
        )];
        let close = [alert(
            "w0",
            &[(5.4, "pending"), (10.4, "firing"), (20.9, "inactive")],
        )];
        let v = agreement(&ours, &close, 1.0, 60.0);
        assert_eq!(v.len(), 1);
        assert!(v[0].passed, "{}", v[0].detail);
        assert!((v[0].latency_s.unwrap() - 0.9).abs() < 1e-9);
        let late = [alert("w0", &[(11.5, "firing"), (20.0, "inactive")])];
        let v = agreement(&ours, &late, 1.0, 60.0);
        assert!(!v[0].passed);
        assert!(v[0].detail.contains("1.50 s apart"), "{}", v[0].detail);
        // Another label set is another alert: fired under one engine only.
        let other = [alert("w1", &[(10.0, "firing")])];
        let v = agreement(&ours, &other, 1.0, 60.0);
        assert_eq!(v.iter().filter(|v| !v.passed).count(), 2);
        // Pending only, under both: nothing to compare.
        let p = [alert("w0", &[(5.0, "pending"), (6.0, "inactive")])];
        assert!(agreement(&p, &p, 1.0, 60.0).is_empty());
    }

    #[test]
    fn an_edge_one_engine_has_not_reached_at_the_end_is_forgiven() {
        let ours = [alert("w0", &[(10.0, "firing"), (59.5, "inactive")])];
        let theirs = [alert("w0", &[(10.2, "firing")])];
        assert!(agreement(&ours, &theirs, 1.0, 60.0)[0].passed);
        let ours = [alert(
            "w0",
            &[(10.0, "firing"), (30.0, "inactive"), (59.8, "firing")],
        )];
        let theirs = [alert("w0", &[(10.2, "firing"), (30.1, "inactive")])];
        assert!(agreement(&ours, &theirs, 1.0, 60.0)[0].passed);
        // Far from the end it is a disagreement.
        let theirs = [alert("w0", &[(10.2, "firing")])];
        let ours = [alert("w0", &[(10.0, "firing"), (30.0, "inactive")])];
        assert!(!agreement(&ours, &theirs, 1.0, 60.0)[0].passed);
    }

    #[test]
    fn every_fired_alert_needs_a_firing_notification_with_its_labels() {
        let a = [alert("w0", &[(10.0, "firing"), (20.0, "inactive")])];
        let note = |status: &str, t_s: f64, w: &str| Notification {
            t_s,
            status: status.into(),
            labels: alert(w, &[]).labels,
        };
        let v = delivered(
            &a,
            &[note("firing", 10.6, "w0"), note("resolved", 21.0, "w0")],
        );
        assert!(v[0].passed);
        assert!((v[0].latency_s.unwrap() - 0.6).abs() < 1e-9);
        assert!(
            v[0].detail.contains("resolution at 21.0 s"),
            "{}",
            v[0].detail
        );
        let v = delivered(
            &a,
            &[note("firing", 10.6, "w1"), note("resolved", 21.0, "w0")],
        );
        assert!(!v[0].passed);
        assert!(delivered(&[alert("w0", &[(1.0, "pending")])], &[]).is_empty());
    }
}
