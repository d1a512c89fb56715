//! Prometheus rules generated from an SLO spec: per SLO, recording rules for the SLI's error ratio
//! over every window the alerts use, and the SRE workbook's multi-window, multi-burn-rate alerts
//! (`SLOBurnRatePage`, `SLOBurnRateTicket`). Windows are written at their real length; a drill's
//! `time_scale` compresses them when it loads the rules.

use super::budget::{BurnWindow, BURN_WINDOWS};
use super::spec::{Slo, SloFile};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A Prometheus rule file.
#[derive(Debug, Serialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, Serialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Serialize)]
struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    expr: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// A duration as PromQL writes it (`5m`, `1h`, `3d`, `90s`).
pub fn promql_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || s == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// A number without float noise (`1 - 0.999` prints as `0.001`).
fn number(x: f64) -> String {
    let r = (x * 1e12).round() / 1e12;
    let s = format!("{r}");
    if s.contains('e') {
        format!("{x}")
    } else {
        s
    }
}

/// The name of the recording rule for the error ratio over `w`.
pub fn error_ratio_record(w: Duration) -> String {
    format!("slo:sli_error:ratio_rate{}", promql_duration(w))
}

fn windows() -> Vec<Duration> {
    let mut w: Vec<Duration> = BURN_WINDOWS
        .iter()
        .flat_map(|b| [b.short, b.long])
        .collect();
    w.sort();
    w.dedup();
    w
}

fn condition(slo: &str, w: &BurnWindow, budget: f64) -> String {
    let limit = format!("({} * {})", number(w.factor), number(budget));
    format!(
        "({long}{{slo=\"{slo}\"}} > {limit} and {short}{{slo=\"{slo}\"}} > {limit})",
        long = error_ratio_record(w.long),
        short = error_ratio_record(w.short),
    )
}

fn group(service: &str, s: &Slo) -> Group {
    let (good, total) = s.selectors();
    let budget = s.error_budget();
    let mut base = BTreeMap::from([
        ("service".to_owned(), service.to_owned()),
        ("slo".to_owned(), s.name.clone()),
    ]);
    let mut rules: Vec<Rule> = windows()
        .into_iter()
        .map(|w| {
            let r = promql_duration(w);
            Rule {
                record: Some(error_ratio_record(w)),
                alert: None,
                // No traffic gives NaN, which no alert condition holds for.
                expr: format!("1 - (sum(rate({good}[{r}])) / sum(rate({total}[{r}])))"),
                labels: base.clone(),
                annotations: BTreeMap::new(),
            }
        })
        .collect();
    rules.push(Rule {
        record: Some("slo:objective:ratio".into()),
        alert: None,
        expr: format!("vector({})", number(s.objective / 100.0)),
        labels: base.clone(),
        annotations: BTreeMap::new(),
    });
    base.extend(s.labels.clone());
    for severity in ["page", "ticket"] {
        let conds: Vec<String> = BURN_WINDOWS
            .iter()
            .filter(|w| w.severity == severity)
            .map(|w| condition(&s.name, w, budget))
            .collect();
        let pairs: Vec<String> = BURN_WINDOWS
            .iter()
            .filter(|w| w.severity == severity)
            .map(|w| {
                format!(
                    "{}x over {} and {}",
                    number(w.factor),
                    promql_duration(w.long),
                    promql_duration(w.short)
                )
            })
            .collect();
        let mut labels = base.clone();
        labels.insert("severity".into(), severity.into());
        rules.push(Rule {
            record: None,
            alert: Some(format!(
                "SLOBurnRate{}",
                if severity == "page" { "Page" } else { "Ticket" }
            )),
            expr: conds.join("\nor\n"),
            labels,
            annotations: BTreeMap::from([
                (
                    "summary".to_owned(),
                    format!(
                        "SLO {} ({}% over {}) is burning its error budget ({})",
                        s.name,
                        number(s.objective),
                        promql_duration(s.window.0),
                        pairs.join("; ")
                    ),
                ),
                (
                    "description".to_owned(),
                    "Error ratio {{ $value | humanizePercentage }} over the long window.".into(),
                ),
            ]),
        });
    }
    Group {
        name: format!("slo-{}", s.name),
        rules,
    }
}

/// The Prometheus rule file (YAML) for every SLO of `file`.
pub fn generate(file: &SloFile) -> String {
    let rf = RuleFile {
        groups: file.slos.iter().map(|s| group(&file.service, s)).collect(),
    };
    let body = serde_yaml_ng::to_string(&rf).unwrap_or_default();
    format!("# Generated by `firedrill slo rules`; do not edit. Multi-window, multi-burn-rate\n# alerts of the SRE workbook (14.4x 1h/5m and 6x 6h/30m page, 1x 3d/6h ticket).\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "version: 1\nservice: svc\nslos:\n  - name: avail\n    objective: 99.9\n    window: 720h\n    sli:\n      events: {good: 'requests_total{status=\"success\"}', total: requests_total}\n  - name: turbo_latency\n    objective: 99\n    window: 720h\n    sli:\n      latency: {histogram: generation_time_seconds, below: 10s, labels: {tier: turbo}}\n";

    #[test]
    fn durations_print_as_promql() {
        assert_eq!(promql_duration(Duration::from_secs(300)), "5m");
        assert_eq!(promql_duration(Duration::from_secs(3 * 86_400)), "3d");
        assert_eq!(promql_duration(Duration::from_secs(90)), "90s");
        assert_eq!(promql_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(number(1.0 - 0.999), "0.001");
    }

    #[test]
    fn rules_carry_every_window_and_the_workbook_pairs() {
        let text = generate(&SloFile::parse(FILE).unwrap());
        for w in ["5m", "30m", "1h", "6h", "3d"] {
            assert!(
                text.contains(&format!("record: slo:sli_error:ratio_rate{w}")),
                "{w}"
            );
        }
        assert!(text.contains("(slo:sli_error:ratio_rate1h{slo=\"avail\"} > (14.4 * 0.001) and slo:sli_error:ratio_rate5m{slo=\"avail\"} > (14.4 * 0.001))"), "{text}");
        assert!(text.contains("(slo:sli_error:ratio_rate3d{slo=\"turbo_latency\"} > (1 * 0.01) and slo:sli_error:ratio_rate6h{slo=\"turbo_latency\"} > (1 * 0.01))"), "{text}");
        assert!(
            text.contains("generation_time_seconds_bucket{tier=\"turbo\",le=~\"10(\\\\.0)?\"}[5m]"),
            "{text}"
        );
    }

    /// promtool (Debian's `prometheus` package, installed by `.ci/run`) accepts the rules.
    #[test]
    fn promtool_accepts_the_generated_rules() {
        let text = generate(&SloFile::parse(FILE).unwrap());
        let dir = std::env::temp_dir().join(format!("fd-slo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("slo.rules.yml");
        std::fs::write(&path, &text).unwrap();
        let program = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
        let out = match std::process::Command::new(program)
            .args(["check", "rules"])
            .arg(&path)
            .output()
        {
            Ok(o) => o,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("CI").is_none() =>
            {
                eprintln!("promtool not installed: skipped");
                return;
            }
            Err(e) => panic!("running promtool: {e}"),
        };
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "promtool refused the rules:\n{said}\n{text}"
        );
        assert!(said.contains("SUCCESS: 16 rules found"), "{said}");
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    /// `dashboards/prometheus/slo-rules.yaml` is what `firedrill slo rules` makes of
    /// `dashboards/prometheus/slos.yaml`.
    #[test]
    fn the_shipped_slo_rules_are_generated_from_the_shipped_slos() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus");
        let spec = SloFile::load(&dir.join("slos.yaml")).unwrap();
        assert_eq!(spec.slos.len(), 3);
        let want = generate(&spec);
        let path = dir.join("slo-rules.yaml");
        if std::env::var("UPDATE_DOCS").as_deref() == Ok("1") {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "dashboards/prometheus/slo-rules.yaml is out of date; run \
             `UPDATE_DOCS=1 cargo test -p firedrill --lib slo` and commit it"
        );
    }
}
