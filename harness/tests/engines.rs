//! The embedded rule engine against a real Prometheus (Debian's `prometheus` and
//! `prometheus-alertmanager`, which `.ci/run` installs): one drill evaluated by both at once,
//! the same alerts firing and resolving within one evaluation interval of each other, and
//! Alertmanager delivering every alert to the harness's webhook. Then Prometheus alone as the
//! judge of a drill's expectations.

mod common;

use reports::record::RunRecord;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_firedrill");

/// A sharp fault (every request blocked for 3 s) read by an alert without `for`, one with
/// `for`, and one on a recording rule: edges both engines must see at the same evaluations.
const RULES: &str = r#"groups:
  - name: differential
    rules:
      - record: drill:safety_blocks:rate2s
        expr: sum(rate(safety_blocks_total{stage="pre"}[2s]))
      - alert: SafetyBlocks
        expr: sum(increase(safety_blocks_total{stage="pre"}[2s])) > 0
        labels: {severity: page}
        annotations: {summary: '{{ $value | printf "%.1f" }} blocks in 2s'}
      - alert: SafetyBlocksHeld
        expr: drill:safety_blocks:rate2s > 1
        for: 1s
      - alert: NeverFires
        expr: sum(rate(safety_blocks_total{stage="post"}[2s])) > 1000
"#;

fn prometheus_present() -> bool {
    let found = ["prometheus", "prometheus-alertmanager"].iter().all(|b| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !found && std::env::var("FIREDRILL_SKIP_PROMETHEUS").as_deref() != Ok("1") {
        panic!(
            "these tests need Debian's prometheus and prometheus-alertmanager (apt-get install \
             prometheus prometheus-alertmanager; .ci/run does); FIREDRILL_SKIP_PROMETHEUS=1 skips"
        );
    }
    found
}

fn run(
    name: &str,
    engine: &str,
    alertmanager: bool,
    expect: &str,
) -> (Option<i32>, String, RunRecord) {
    let dir = common::tmp("engines", name);
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let text = format!(
        "version: 1\nname: {name}\ntarget:\n  reference_server:\n    workers: 1\n    config: {}\nload:\n  arrival: {{process: constant}}\n  mix: {{steps: {{'2': 1}}, prompts: {{unsafe_share: 0}}}}\n  stages: [{{name: steady, hold: 8, for: 12s}}]\nobserve: {{scrape_interval: 250ms}}\nfaults:\n  - {{name: storm, at: 3s, for: 3s, fault: {{kind: safety_spike, stage: pre, extra_block_fraction: 1.0}}}}\nrules:\n  files: [rules.yml]\n  interval: 500ms\n  engine: {engine}\n  alertmanager: {alertmanager}\nexpect:\n{expect}",
        common::tiny_server_config()
    );
    let s = dir.join("s.yaml");
    std::fs::write(&s, text).unwrap();
    let out = dir.join("out");
    let o = Command::new(BIN)
        .args(["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    let record = RunRecord::read(&out.join("record.json"))
        .unwrap_or_else(|e| panic!("no record: {e}\n{said}"));
    (o.status.code(), said, record)
}

const EXPECT: &str = "  - {alert: SafetyBlocks, fires: {after: storm.start, within: 2s}, resolves: {after: storm.end, within: 3s}}\n  - {alert: SafetyBlocksHeld, fires: {after: storm.start, within: 3s}, resolves: {after: storm.end, within: 4s}}\n  - {alert: NeverFires, never: true}\n";

#[test]
fn both_engines_fire_the_same_alerts_within_one_interval_and_alertmanager_delivers_them() {
    if !prometheus_present() {
        return;
    }
    let (code, said, r) = run("both", "both", true, EXPECT);
    assert_eq!(code, Some(0), "{said}");
    let rules = r.rules.as_ref().unwrap();
    assert_eq!(rules.engine, "both");
    assert!(rules.errors.is_empty(), "{:?}", rules.errors);
    // The embedded engine's alerts and Prometheus's, compared edge by edge.
    let agree: Vec<_> = r
        .expectations
        .iter()
        .filter(|e| {
            e.description
                .starts_with("fires and resolves under both engines")
        })
        .collect();
    let names: Vec<&str> = agree.iter().map(|e| e.alert.as_str()).collect();
    assert_eq!(names, ["SafetyBlocks", "SafetyBlocksHeld"], "{said}");
    for e in &agree {
        assert!(e.passed, "{e:?}");
        // The run's tolerance is an evaluation plus a scrape interval; the edges here are sharp
        // and scrapes are twice as dense as evaluations: within one evaluation interval.
        assert!(e.latency_s.unwrap() <= 0.5 + 1e-9, "{e:?}");
    }
    for name in ["SafetyBlocks", "SafetyBlocksHeld"] {
        let fired = |alerts: &[reports::record::AlertRecord]| {
            alerts
                .iter()
                .find(|a| a.name == name)
                .and_then(|a| a.transitions.iter().find(|t| t.state == "firing"))
                .map(|t| t.t_s)
        };
        let (ours, theirs) = (
            fired(&r.alerts).unwrap(),
            fired(&rules.prometheus_alerts).unwrap(),
        );
        assert!(
            (ours - theirs).abs() <= 0.5 + 1e-9,
            "{name}: {ours} vs {theirs}"
        );
        // The storm starts at 3 s.
        assert!((3.0..5.5).contains(&theirs), "{name} fired at {theirs}");
    }
    let p = rules
        .prometheus_alerts
        .iter()
        .find(|a| a.name == "SafetyBlocks")
        .unwrap();
    assert_eq!(p.labels["severity"], "page");
    assert!(
        p.annotations["summary"].ends_with("blocks in 2s"),
        "{:?}",
        p.annotations
    );
    // Alertmanager delivered each alert Prometheus fired, with its labels, and the resolutions.
    let delivered: Vec<_> = r
        .expectations
        .iter()
        .filter(|e| e.description == "is delivered through Alertmanager")
        .collect();
    assert_eq!(delivered.len(), 2, "{:?}", r.expectations);
    assert!(delivered.iter().all(|e| e.passed), "{delivered:?}");
    assert!(rules
        .notifications
        .iter()
        .any(|n| n.status == "resolved" && n.labels["alertname"] == "SafetyBlocks"));
}

#[test]
fn prometheus_alone_judges_the_expectations_and_says_why_one_failed() {
    if !prometheus_present() {
        return;
    }
    let expect =
        format!("{EXPECT}  - {{alert: NeverFires, fires: {{after: storm.start, within: 3s}}}}\n");
    let (code, said, r) = run("prometheus", "prometheus", false, &expect);
    assert_eq!(code, Some(1), "{said}");
    assert_eq!(r.rules.as_ref().unwrap().engine, "prometheus");
    assert!(
        said.contains("alert SafetyBlocks FIRING (prometheus)"),
        "{said}"
    );
    let by = |alert: &str, d: &str| {
        r.expectations
            .iter()
            .find(|e| e.alert == alert && e.description.starts_with(d))
            .unwrap_or_else(|| panic!("{alert} {d}: {:?}", r.expectations))
    };
    assert!(by("SafetyBlocks", "fires").passed);
    assert!(by("SafetyBlocks", "resolves").passed);
    assert!(by("SafetyBlocksHeld", "fires").passed);
    let failed = by("NeverFires", "fires");
    assert!(!failed.passed);
    // The why-not: the rule as Prometheus evaluated it, its parts on the harness's scrape.
    let why = failed.explanation.join("\n");
    assert!(why.contains("safety_blocks_total"), "{why}");
    assert!(r.rules.as_ref().unwrap().prometheus_alerts.is_empty());
}
