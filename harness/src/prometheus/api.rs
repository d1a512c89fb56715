//! Reading a real Prometheus's alert states: `/api/v1/rules` polled often, each group's alerts
//! compared with what they were at the group's previous evaluation, changes stamped with that
//! group's `lastEvaluation` on the run's clock. Pure: responses come in as bytes.

use crate::rules::alerting::{AlertState, LabelMap, Transition};
use crate::rules::group::AlertEvent;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    groups: Vec<Group>,
}

/// One rule group as `/api/v1/rules` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// When it was last evaluated (RFC 3339).
    #[serde(rename = "lastEvaluation")]
    pub last_evaluation: String,
    /// Its rules.
    pub rules: Vec<Rule>,
}

/// One rule as `/api/v1/rules` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Rule {
    /// `alerting` or `recording`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The alert's or recorded series' name.
    pub name: String,
    /// `ok`, `err` or `unknown`.
    #[serde(default)]
    pub health: String,
    /// The last evaluation's error.
    #[serde(default, rename = "lastError")]
    pub last_error: String,
    /// Alerting rules: the active alerts.
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

/// One active alert.
#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    /// Its labels, `alertname` included.
    pub labels: LabelMap,
    /// Its annotations, expanded.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
    /// The sample value, as Prometheus prints it.
    #[serde(default)]
    pub value: String,
}

/// Parses a `/api/v1/rules` answer.
pub fn parse_rules(body: &[u8]) -> Result<Vec<Group>, String> {
    let r: Response =
        serde_json::from_slice(body).map_err(|e| format!("/api/v1/rules answer: {e}"))?;
    if r.status != "success" {
        return Err(format!(
            "/api/v1/rules: {}",
            r.error.unwrap_or_else(|| r.status.clone())
        ));
    }
    Ok(r.data.map(|d| d.groups).unwrap_or_default())
}

/// Milliseconds since the Unix epoch of an RFC 3339 time (`2026-11-23T15:42:55.123456789Z`,
/// or with a `+01:00` offset, as Go prints times). `None` for anything else, including Go's zero
/// time of a group not evaluated yet.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if y < 1970 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        let digits = &frac[..n];
        ms = format!("{digits:0<3}")[..3].parse().ok()?;
        rest = &frac[n..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let v = o[1..3].parse::<i64>().ok()? * 60 + o[4..6].parse::<i64>().ok()?;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Follows the alerts of every group across polls and turns them into state changes, stamped
/// with the evaluation that made them (ms on the run's clock, from `epoch_ms`: the wall-clock
/// time of the run's start). A poll interval shorter than the groups' intervals sees every
/// evaluation.
#[derive(Debug, Default)]
pub struct Follower {
    epoch_ms: i64,
    seen: HashMap<(String, String), String>,
    states: HashMap<(String, String), BTreeMap<LabelMap, AlertState>>,
    /// Rule errors seen (`group: rule: error`), each once.
    pub errors: Vec<String>,
}

/// What one poll found.
#[derive(Debug, Default, PartialEq)]
pub struct Observed {
    /// Alert state changes.
    pub events: Vec<AlertEvent>,
    /// Groups evaluated for the first time: (name, evaluation time on the run's clock, ms).
    pub first_evaluations: Vec<(String, i64)>,
}

impl Follower {
    /// A follower for a run that started at `epoch_ms` (Unix ms).
    pub fn new(epoch_ms: i64) -> Follower {
        Follower {
            epoch_ms,
            ..Follower::default()
        }
    }

    /// Takes one `/api/v1/rules` snapshot.
    pub fn observe(&mut self, groups: &[Group]) -> Observed {
        let mut out = Observed::default();
        for g in groups {
            let key = (g.file.clone(), g.name.clone());
            let Some(at_unix) = rfc3339_ms(&g.last_evaluation) else {
                continue;
            };
            if self.seen.get(&key) == Some(&g.last_evaluation) {
                continue;
            }
            let at = at_unix - self.epoch_ms;
            if self
                .seen
                .insert(key.clone(), g.last_evaluation.clone())
                .is_none()
            {
                out.first_evaluations.push((g.name.clone(), at));
            }
            for r in g.rules.iter().filter(|r| r.kind == "alerting") {
                if r.health == "err" && !r.last_error.is_empty() {
                    let e = format!("{}: {}: {}", g.name, r.name, r.last_error);
                    if !self.errors.contains(&e) {
                        self.errors.push(e);
                    }
                }
                let now: BTreeMap<LabelMap, (AlertState, &Alert)> = r
                    .alerts
                    .iter()
                    .map(|a| {
                        let st = if a.state == "firing" {
                            AlertState::Firing
                        } else {
                            AlertState::Pending
                        };
                        (a.labels.clone(), (st, a))
                    })
                    .collect();
                let before = self
                    .states
                    .entry((g.name.clone(), r.name.clone()))
                    .or_default();
                for (labels, (st, a)) in &now {
                    let from = before.get(labels).copied().unwrap_or(AlertState::Inactive);
                    if from != *st {
                        out.events.push(AlertEvent {
                            group: g.name.clone(),
                            transition: Transition {
                                labels: labels.clone(),
                                from,
                                to: *st,
                                at,
                                value: a.value.parse().unwrap_or(f64::NAN),
                            },
                            annotations: a.annotations.clone(),
                        });
                    }
                }
                for (labels, from) in before.iter() {
                    if !now.contains_key(labels) {
                        out.events.push(AlertEvent {
                            group: g.name.clone(),
                            transition: Transition {
                                labels: labels.clone(),
                                from: *from,
                                to: AlertState::Inactive,
                                at,
                                value: f64::NAN,
                            },
                            annotations: BTreeMap::new(),
                        });
                    }
                }
                *before = now.into_iter().map(|(l, (st, _))| (l, st)).collect();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_as_go_prints_it() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2024-01-15T14:32:15.123456789Z"),
            Some(1_705_329_135_123)
        );
        assert_eq!(
            rfc3339_ms("2024-01-15T15:32:15.1+01:00"),
            Some(1_705_329_135_100)
        );
        // Go's zero time: a group not evaluated yet.
        assert_eq!(rfc3339_ms("0001-01-01T00:00:00Z"), None);
        assert_eq!(rfc3339_ms("yesterday"), None);
    }

    fn snapshot(eval: &str, alerts: &str) -> Vec<Group> {
        let body = format!(
            r#"{{"status":"success","data":{{"groups":[{{"name":"g","file":"f.yml","interval":1,"lastEvaluation":"{eval}","rules":[
            {{"type":"alerting","name":"A","health":"ok","alerts":[{alerts}]}},
            {{"type":"recording","name":"r","health":"ok"}}]}}]}}}}"#
        );
        parse_rules(body.as_bytes()).unwrap()
    }

    #[test]
    fn alerts_move_through_pending_and_firing_at_their_evaluation_times() {
        let mut f = Follower::new(1_000_000);
        let alert = |st: &str| {
            format!(
                r#"{{"labels":{{"alertname":"A","worker":"w0"}},"annotations":{{"summary":"s"}},"state":"{st}","value":"4e+00"}}"#
            )
        };
        let o = f.observe(&snapshot("1970-01-01T00:16:41Z", ""));
        assert_eq!(o.first_evaluations, vec![("g".to_owned(), 1000)]);
        assert!(o.events.is_empty());
        let o = f.observe(&snapshot("1970-01-01T00:16:42Z", &alert("pending")));
        assert_eq!(o.events.len(), 1);
        let t = &o.events[0].transition;
        assert_eq!(
            (t.from, t.to, t.at, t.value),
            (AlertState::Inactive, AlertState::Pending, 2000, 4.0)
        );
        assert_eq!(o.events[0].annotations["summary"], "s");
        // The same evaluation polled again changes nothing.
        assert!(f
            .observe(&snapshot("1970-01-01T00:16:42Z", &alert("firing")))
            .events
            .is_empty());
        let o = f.observe(&snapshot("1970-01-01T00:16:43Z", &alert("firing")));
        assert_eq!(o.events[0].transition.to, AlertState::Firing);
        assert_eq!(o.events[0].transition.from, AlertState::Pending);
        let o = f.observe(&snapshot("1970-01-01T00:16:44.500Z", ""));
        let t = &o.events[0].transition;
        assert_eq!(
            (t.from, t.to, t.at),
            (AlertState::Firing, AlertState::Inactive, 4500)
        );
        assert!(o.first_evaluations.is_empty());
    }

    #[test]
    fn a_failed_answer_says_why() {
        let e = parse_rules(br#"{"status":"error","errorType":"x","error":"boom"}"#).unwrap_err();
        assert!(e.contains("boom"), "{e}");
        assert!(parse_rules(b"<html>").is_err());
    }
}
