//! `firedrill lint`: the deliberately broken rule file yields exactly the findings its comments
//! name, the shipped rules are clean against the catalog and against what the reference server
//! really exports, and the binary's exit codes.

use firedrill::rules::lint::{lint, Code, Exported, LintOptions, LintReport, RuleSource, Severity};
use reference_server::metrics::{MetricUnits, Metrics, WorkerLabels};
use reference_server::types::Tier;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn source(rel: &str) -> RuleSource {
    RuleSource::read(&root().join(rel)).unwrap_or_else(|e| panic!("{e}"))
}

fn shipped() -> Vec<RuleSource> {
    vec![
        source("dashboards/prometheus/alerts.yaml"),
        source("dashboards/prometheus/slo-rules.yaml"),
    ]
}

fn catalog() -> Exported {
    Exported::catalog(MetricUnits::Base)
}

fn show(r: &LintReport) -> String {
    r.findings
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `# expect: a, b` comments: the codes of the next `- alert:`/`- record:` line, by its number.
fn expectations(text: &str) -> BTreeMap<usize, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut pending: Option<Vec<String>> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(codes) = t.strip_prefix("# expect:") {
            pending = Some(codes.split(',').map(|c| c.trim().to_owned()).collect());
        } else if t.starts_with("- alert:") || t.starts_with("- record:") {
            if let Some(codes) = pending.take() {
                out.insert(i + 1, codes);
            }
        }
    }
    out
}

#[test]
fn the_broken_file_yields_exactly_the_expected_findings() {
    let src = source("harness/tests/lint/broken.yaml");
    let mut want = expectations(&src.text);
    for codes in want.values_mut() {
        codes.sort();
    }
    // One defect of every kind the catalog can show (unseen values need a record).
    let covered: Vec<&str> = want.values().flatten().map(String::as_str).collect();
    for code in Code::ALL {
        if code != Code::UnseenLabelValue {
            assert!(covered.contains(&code.as_str()), "broken.yaml lacks {code}");
        }
    }
    let r = lint(
        std::slice::from_ref(&src),
        &catalog(),
        &LintOptions::default(),
    );
    let mut got: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for f in &r.findings {
        let line = f.line.unwrap_or_else(|| panic!("no line: {f}"));
        got.entry(line)
            .or_default()
            .push(f.code.as_str().to_owned());
        assert!(
            f.group.as_deref() == Some("broken") && f.rule.is_some(),
            "{f}"
        );
        assert!(!f.message.is_empty() && !f.hint.is_empty(), "{f}");
        let warning = matches!(
            f.code,
            Code::ShortRange | Code::TemplateMissingLabel | Code::TemplateError
        );
        assert_eq!(f.severity == Severity::Warning, warning, "{f}");
    }
    for codes in got.values_mut() {
        codes.sort();
    }
    assert_eq!(got, want, "\n{}", show(&r));
    assert_eq!(r.summary.warnings, 5);
    assert_eq!(r.summary.errors, r.findings.len() - 5);
}

#[test]
fn the_seed_hints_say_what_to_select() {
    let r = lint(
        &[source("harness/tests/lint/broken.yaml")],
        &catalog(),
        &LintOptions::default(),
    );
    let text = show(&r);
    assert!(
        text.contains(
            "`generation_time_seconds` is a histogram: select `generation_time_seconds_bucket`"
        ),
        "{text}"
    );
    assert!(text.contains("metric_units: seed_ms"), "{text}");
    assert!(
        text.contains(
            "histogram_quantile(0.95, sum by (le) (rate(model_load_seconds_bucket[5m])))"
        ),
        "{text}"
    );
    assert!(text.contains("label of the rule"), "{text}");
}

#[test]
fn the_shipped_rules_are_clean_against_the_catalog() {
    let r = lint(&shipped(), &catalog(), &LintOptions::default());
    // No warnings either; a warning added here must be justified in the dashboards' comments.
    assert!(r.findings.is_empty(), "\n{}", show(&r));
    assert_eq!(r.summary.files, 2);
    assert!(r.summary.rules > 20);
}

#[test]
fn the_shipped_rules_survive_the_drills_time_scales() {
    // The drills scrape every second and compress the rules 20x (safety-spike) or 40x
    // (gpu-oom): 5m windows become 15s or 7.5s, still over two scrapes.
    for k in [20.0, 40.0] {
        let opts = LintOptions {
            scrape_interval: std::time::Duration::from_secs(1),
            time_scale: k,
        };
        let r = lint(&shipped(), &catalog(), &opts);
        assert!(r.findings.is_empty(), "time_scale {k}:\n{}", show(&r));
    }
    // Compressed 200x, a 5m window is 1.5s: every rate over 5m is flagged.
    let opts = LintOptions {
        scrape_interval: std::time::Duration::from_secs(1),
        time_scale: 200.0,
    };
    let r = lint(&shipped(), &catalog(), &opts);
    assert!(
        r.summary.warnings > 0 && r.summary.errors == 0,
        "\n{}",
        show(&r)
    );
    assert!(r.findings.iter().all(|f| f.code == Code::ShortRange));
}

/// What the reference server really exports at start (every series it creates up front),
/// scraped into a store as a run does.
fn scraped() -> Exported {
    let m = Metrics::new(MetricUnits::Base);
    let worker = |i: u32| WorkerLabels {
        worker_id: format!("w{i}"),
        gpu_index: "0".into(),
        gpu_type: "modelled-cpu".into(),
        region: "local".into(),
    };
    m.init_series(
        &[Tier::Turbo, Tier::Fast, Tier::Relax],
        &["mini-sd"],
        &[worker(0), worker(1)],
    );
    let exposition = firedrill::scrape::parse(&m.encode()).unwrap_or_else(|e| panic!("{e}"));
    let mut store = firedrill::scrape::SeriesStore::new();
    store.ingest_scrape(
        1_000,
        "reference-server",
        "127.0.0.1:1",
        Ok::<_, String>(&exposition),
        std::time::Duration::from_millis(3),
    );
    Exported::from_store(&store)
}

#[test]
fn record_mode_checks_what_was_scraped() {
    let e = scraped();
    // The shipped rules select only what the server exports from its first scrape on.
    let r = lint(&shipped(), &e, &LintOptions::default());
    assert_eq!(r.summary.errors, 0, "\n{}", show(&r));
    assert_eq!(r.summary.warnings, 0, "\n{}", show(&r));

    let text = "groups:
  - name: g
    rules:
      - alert: Typo
        expr: sum(rate(requests_total{tier=\"trubo\"}[5m])) > 1
      - alert: Gauge
        expr: rate(queue_depth[5m]) > 1
";
    let r = lint(
        &[RuleSource {
            path: "t.yaml".into(),
            text: text.into(),
        }],
        &e,
        &LintOptions::default(),
    );
    let codes: Vec<Code> = r.findings.iter().map(|f| f.code).collect();
    assert_eq!(
        codes,
        [Code::UnseenLabelValue, Code::RateOverGauge],
        "\n{}",
        show(&r)
    );
    assert!(
        r.findings[0].hint.contains("tier=\"turbo\""),
        "{}",
        r.findings[0]
    );
}

/// A scratch directory of this test process.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("firedrill-lint-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
    d
}

fn firedrill(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_exits_0_1_or_2() {
    let (code, out, _) = firedrill(&[
        "lint",
        "dashboards/prometheus/alerts.yaml",
        "dashboards/prometheus/slo-rules.yaml",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("lint: 0 errors, 0 warnings"), "{out}");

    let (code, out, _) = firedrill(&["lint", "harness/tests/lint/broken.yaml"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("harness/tests/lint/broken.yaml:21: broken/Unparsable: error[parse-error]: "),
        "{out}"
    );
    assert!(out.contains("\n    hint: "), "{out}");
    assert!(
        out.lines().last().unwrap_or("").starts_with("lint: "),
        "{out}"
    );

    // The seed's rules as written are not a rule file.
    let (code, out, _) = firedrill(&["lint", "harness/tests/lint/seed-000-alerts.yaml"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error[rule-file]"), "{out}");

    // Warnings alone pass.
    let dir = scratch("exit");
    let warn = dir.join("warn.yaml");
    std::fs::write(
        &warn,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(requests_total[20s]) > 0\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let warn = warn.to_string_lossy().into_owned();
    let (code, out, _) = firedrill(&["lint", &warn]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning[short-range]"), "{out}");
    // ... unless the scrape interval makes the window fine: then nothing at all.
    let (code, out, _) = firedrill(&["lint", "--scrape-interval", "5s", &warn]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");

    // Unreadable input: exit 2, reasons on stderr.
    let (code, _, err) = firedrill(&["lint", "no/such/rules.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("no/such/rules.yaml"), "{err}");
    let (code, _, err) = firedrill(&["lint", "--record", "no/such/record.json", &warn]);
    assert_eq!(code, 2);
    assert!(err.contains("record.json"), "{err}");
    let bad = dir.join("record.json");
    std::fs::write(&bad, "{\"version\": 1}").unwrap_or_else(|e| panic!("{e}"));
    let (code, _, _) = firedrill(&["lint", "--record", &bad.to_string_lossy(), &warn]);
    assert_eq!(code, 2);
    let (code, _, _) = firedrill(&["lint", "--time-scale", "0", &warn]);
    assert_eq!(code, 2);
    let _ = std::fs::remove_dir_all(&dir);
}
