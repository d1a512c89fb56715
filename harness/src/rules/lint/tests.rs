//! Unit tests of the lint: each check on a small rule file against the catalog.

use super::*;

fn lint_text(text: &str) -> LintReport {
    lint(
        &[RuleSource {
            path: "t.yaml".into(),
            text: text.into(),
        }],
        &Exported::catalog(MetricUnits::Base),
        &LintOptions::default(),
    )
}

fn alert(expr: &str) -> String {
    format!("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: '{expr}'\n")
}

fn codes(r: &LintReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code.as_str()).collect()
}

#[test]
fn clean_rules_have_no_findings() {
    let r = lint_text(&alert(
        "histogram_quantile(0.95, sum by (le, tier) (rate(generation_time_seconds_bucket{tier=\"fast\"}[5m]))) > 25",
    ));
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.summary.rules, 1);
}

#[test]
fn each_check_fires() {
    let cases = [
        ("rate(no_such_metric_total[5m]) > 0", "unknown-metric"),
        ("rate(requests_total{zone=\"a\"}[5m]) > 0", "unknown-label"),
        ("rate(queue_depth[5m]) > 0", "rate-over-gauge"),
        (
            "histogram_quantile(0.9, generation_time_seconds) > 1",
            "quantile-not-bucket",
        ),
        (
            "histogram_quantile(0.9, sum by (tier) (rate(generation_time_seconds_bucket[5m]))) > 1",
            "quantile-without-le",
        ),
        (
            "histogram_quantile(0.9, sum by (le) (generation_time_seconds_bucket)) > 1",
            "quantile-without-rate",
        ),
        ("rate(requests_total[20s]) > 0", "short-range"),
        ("max_over_time(queue_depth[20s:5s]) > 0", "short-range"),
        ("rate(requests_total[5m) > 0", "parse-error"),
    ];
    for (expr, code) in cases {
        let r = lint_text(&alert(expr));
        assert!(codes(&r).contains(&code), "{expr}: {:#?}", r.findings);
    }
}

#[test]
fn unknown_metric_hints() {
    let r = lint_text(&alert("diffusion_step_time_ms_count > 0"));
    assert!(r.findings[0].hint.contains("seed_ms"), "{:#?}", r.findings);
    let r = lint_text(&alert("requets_total > 0"));
    assert!(
        r.findings[0].hint.contains("requests_total"),
        "{:#?}",
        r.findings
    );
    // Inside absent() a missing metric is a warning: the alert always fires.
    let r = lint_text(&alert("absent(nope)"));
    assert_eq!(r.findings[0].severity, Severity::Warning);
    // A regex over names that matches something is fine; one matching nothing is not.
    assert!(lint_text(&alert("{__name__=~\"requests_.*\"} > 0"))
        .findings
        .is_empty());
    assert_eq!(
        codes(&lint_text(&alert("{__name__=~\"zzz.*\"} > 0"))),
        ["unknown-metric"]
    );
}

#[test]
fn recorded_series_exist_with_their_labels() {
    let text = "groups:
  - name: g
    rules:
      - record: tier:requests:rate5m
        expr: sum by (tier) (rate(requests_total[5m]))
        labels:
          slo: avail
      - alert: A
        expr: tier:requests:rate5m{slo=\"avail\"} > 1
        annotations:
          summary: '{{ $labels.tier }}'
      - alert: B
        expr: tier:requests:rate5m{slo=\"latency\", model=\"m\"} > 1
";
    let r = lint_text(text);
    assert_eq!(codes(&r), ["impossible-label-value"], "{:#?}", r.findings);
    assert_eq!(r.findings[0].rule.as_deref(), Some("B"));
    assert_eq!(r.findings[0].line, Some(12));
}

#[test]
fn templates_see_only_the_result_labels() {
    let text = "groups:
  - name: g
    rules:
      - alert: A
        expr: sum by (tier) (queue_depth) > 1
        labels:
          severity: page
        annotations:
          summary: '{{ $labels.tier }} {{ $labels.model_required }} {{ $labels.severity }}'
          bad: '{{ query \"up\" }}'
";
    let r = lint_text(text);
    let msgs: Vec<String> = r.findings.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        codes(&r),
        [
            "template-error",
            "template-missing-label",
            "template-missing-label"
        ],
        "{msgs:#?}"
    );
    assert!(msgs[2].contains("model_required") || msgs[1].contains("model_required"));
    assert!(r
        .findings
        .iter()
        .any(|f| f.hint.contains("label of the rule")));
}

#[test]
fn structure_errors_name_group_and_rule_and_the_rest_is_still_linted() {
    let text = "groups:
  - name: g
    rules:
      - alert: A
        expr: up == 0
        for: 5 minutes
      - alert: B
        expr: rate(queue_depth[5m]) > 0
";
    let r = lint_text(text);
    assert_eq!(
        codes(&r),
        ["rule-file", "rate-over-gauge"],
        "{:#?}",
        r.findings
    );
    assert_eq!(r.findings[0].group.as_deref(), Some("g"));
    assert_eq!(r.findings[0].rule.as_deref(), Some("A"));
    assert_eq!(r.findings[0].line, Some(4));
    // Not a rule file at all: one finding, nothing else.
    let r = lint_text("groups:\n  - name: g\n    rulez: []\n");
    assert_eq!(codes(&r), ["rule-file"]);
    assert_eq!(r.findings[0].line, Some(3));
    let r = lint_text(": : :\n\t- [");
    assert_eq!(codes(&r), ["rule-file"]);
}

#[test]
fn time_scale_divides_windows_first() {
    let opts = LintOptions {
        scrape_interval: Duration::from_secs(1),
        time_scale: 20.0,
    };
    let src = |e: &str| RuleSource {
        path: "t".into(),
        text: alert(e),
    };
    let cat = Exported::catalog(MetricUnits::Base);
    // 5m / 20 = 15s >= 2s; 30s / 20 = 1.5s < 2s.
    assert!(lint(&[src("rate(requests_total[5m]) > 0")], &cat, &opts)
        .findings
        .is_empty());
    let r = lint(&[src("rate(requests_total[30s]) > 0")], &cat, &opts);
    assert_eq!(codes(&r), ["short-range"]);
    assert!(r.findings[0].hint.contains("[40s]"), "{}", r.findings[0]);
}

#[test]
fn record_mode_checks_values_seen() {
    use crate::scrape::{Labels, Series, SeriesStore};
    let store = SeriesStore::from_series([Series::new(
        Labels::new([
            ("__name__", "requests_total"),
            ("tier", "fast"),
            ("job", "j"),
        ]),
        vec![(0, 1.0)],
    )])
    .unwrap_or_default();
    let e = Exported::from_store(&store);
    let r = lint(
        &[RuleSource {
            path: "t".into(),
            text: alert("rate(requests_total{tier=\"fsat\"}[5m]) > 0 or rate(queue_depth[5m]) > 0"),
        }],
        &e,
        &LintOptions::default(),
    );
    assert_eq!(
        codes(&r),
        ["unseen-label-value", "unknown-metric"],
        "{:#?}",
        r.findings
    );
    assert_eq!(r.findings[0].severity, Severity::Warning);
    assert!(r.findings[0].hint.contains("tier=\"fast\""));
    assert!(r.findings[1].message.contains("was not exported"));
}

#[test]
fn odd_inputs_never_panic() {
    for text in [
        "",
        "groups: []",
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: x\n",
        "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: b\n      - record: b\n        expr: a\n      - alert: c\n        expr: histogram_quantile(0.5, a)\n",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: 'up @ NaN'\n",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: ''\n",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: 'count_values(\"v\", {__name__=~\".+\"}) > 0'\n        annotations:\n          a: '{{ $labels.v }} {{'\n",
    ] {
        let _ = lint_text(text);
    }
}

#[test]
fn extreme_settings_never_panic() {
    for (scrape, k) in [
        (Duration::ZERO, 1.0),
        (Duration::MAX, 1e300),
        (Duration::from_secs(15), f64::NAN),
        (Duration::from_secs(15), -3.0),
        (Duration::from_secs(15), 1e-300),
    ] {
        let opts = LintOptions {
            scrape_interval: scrape,
            time_scale: k,
        };
        let _ = lint(
            &[RuleSource {
                path: "t".into(),
                text: alert("rate(requests_total[5m:1s]) > 0"),
            }],
            &Exported::catalog(MetricUnits::Base),
            &opts,
        );
    }
}

#[test]
fn durations_print_as_prometheus_writes_them() {
    assert_eq!(fmt_ms(Duration::from_secs(90)), "1m30s");
    assert_eq!(fmt_ms(Duration::from_millis(250)), "250ms");
    assert_eq!(fmt_ms(Duration::ZERO), "0s");
}

/// Random token soup, seeded, as alert expressions and templates: lint never panics.
#[test]
fn token_soup_never_panics() {
    const TOKENS: [&str; 40] = [
        "requests_total",
        "queue_depth",
        "generation_time_seconds_bucket",
        "rec:x",
        "{",
        "}",
        "tier",
        "le",
        "=",
        "=~",
        "\"fast\"",
        "(",
        ")",
        "[5m]",
        "[1s:]",
        "by (le)",
        "without (tier)",
        "on (tier)",
        "group_left (model)",
        "sum",
        "rate",
        "histogram_quantile",
        "label_replace",
        "count_values",
        "absent",
        ",",
        "0.9",
        "\"v\"",
        "or",
        "and",
        "/",
        ">",
        "bool",
        "-",
        "topk",
        "{__name__=~\"q.*\"}",
        "{or}",
        "offset 1m",
        "@ 10",
        "[0s]",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let cat = Exported::catalog(MetricUnits::Base);
    for _ in 0..1500 {
        let mut q = String::new();
        let n = 1 + (next() % 10) as usize;
        for _ in 0..n {
            q.push_str(TOKENS[(next() % TOKENS.len() as u64) as usize]);
            q.push(' ');
        }
        let text = format!(
            "groups:\n  - name: g\n    rules:\n      - record: rec:x\n        expr: {q:?}\n      - alert: A\n        expr: {q:?}\n        annotations:\n          s: {:?}\n",
            format!("{{{{ $labels.tier }}}} {q}")
        );
        let _ = lint(
            &[RuleSource {
                path: "t".into(),
                text,
            }],
            &cat,
            &LintOptions::default(),
        );
    }
}
