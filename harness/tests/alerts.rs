//! Alert rules evaluated during a run, through the real binary and the embedded server: an alert
//! that follows a fault fires and resolves within its windows; an alert that cannot fire fails
//! the run with the why-not; an alert that fires without an expectation fails it too.

mod common;

use reports::record::RunRecord;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_firedrill");

const RULES: &str = "groups:\n  - name: drill\n    rules:\n      - alert: SafetyBlocks\n        expr: sum(increase(safety_blocks_total{stage=\"pre\"}[2s])) > 0\n        labels: {severity: page}\n        annotations: {summary: '{{ $value }} blocks'}\n      - alert: CannotFire\n        expr: sum(rate(generation_failures_nonexistent_total[5m])) > 0\n      - alert: AlwaysFires\n        expr: vector(1) > 0\n";

fn run(name: &str, expect: &str, allow: &str) -> (Option<i32>, String, RunRecord) {
    let dir = common::tmp("alerts", name);
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let text = format!(
        "version: 1\nname: {name}\ntarget:\n  reference_server:\n    workers: 1\n    config: {}\nload:\n  arrival: {{process: constant}}\n  mix: {{steps: {{'2': 1}}, prompts: {{unsafe_share: 0}}}}\n  stages: [{{name: steady, hold: 8, for: 9s}}]\nobserve: {{scrape_interval: 250ms}}\nfaults:\n  - {{name: storm, at: 2s, for: 3s, fault: {{kind: safety_spike, stage: pre, extra_block_fraction: 1.0}}}}\nrules:\n  files: [rules.yml]\n  interval: 500ms\n  allow: [{allow}]\nexpect:\n{expect}",
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
    (
        o.status.code(),
        said,
        RunRecord::read(&out.join("record.json")).unwrap(),
    )
}

#[test]
fn an_alert_follows_its_fault_within_the_windows() {
    let expect = "  - {alert: SafetyBlocks, fires: {after: storm.start, within: 2s}, resolves: {after: storm.end, within: 3s}}\n  - {alert: CannotFire, never: true}\n";
    let (code, said, r) = run("follows", expect, "AlwaysFires");
    assert_eq!(code, Some(0), "{said}");
    let fired = &r.expectations[0];
    assert!(fired.passed, "{fired:?}");
    let t = fired.latency_s.unwrap();
    assert!((0.0..=2.0).contains(&t), "time to fire {t}");
    assert!(r.expectations[1].passed, "{:?}", r.expectations[1]);
    let a = r.alerts.iter().find(|a| a.name == "SafetyBlocks").unwrap();
    assert_eq!(a.labels["severity"], "page");
    assert!(
        a.annotations["summary"].ends_with("blocks"),
        "{:?}",
        a.annotations
    );
    let states: Vec<&str> = a.transitions.iter().map(|t| t.state.as_str()).collect();
    assert_eq!(
        states,
        ["pending", "firing", "inactive"],
        "{:?}",
        a.transitions
    );
    assert!(
        r.alerts.iter().any(|a| a.name == "AlwaysFires"),
        "allowed, still recorded"
    );
    assert!(r.rules.as_ref().unwrap().errors.is_empty(), "{:?}", r.rules);
}

#[test]
fn an_alert_that_cannot_fire_fails_the_run_and_says_why() {
    let expect = "  - {alert: CannotFire, fires: {after: storm.start, within: 3s}}\n";
    let (code, said, r) = run("whynot", expect, "SafetyBlocks");
    assert_eq!(code, Some(1), "{said}");
    let v = &r.expectations[0];
    assert!(!v.passed);
    assert_eq!(v.detail, "never went pending or firing");
    let why = v.explanation.join("\n");
    assert!(
        why.contains("generation_failures_nonexistent_total"),
        "{why}"
    );
    assert!(why.contains("no series"), "{why}");
    assert!(
        said.contains("CannotFire") && said.contains("no series"),
        "{said}"
    );
    // The linter said so before the run (against the catalog) and after it (against what was
    // scraped): the rule's metric does not exist.
    assert!(
        said.contains("lint before the run") && said.contains("unknown-metric"),
        "{said}"
    );
    assert!(r.events.iter().any(|e| e.kind == "lint"
        && e.name == "unknown-metric"
        && e.detail.contains("CannotFire")));
    // AlwaysFires is neither expected nor allowed here: a second failure.
    let u = r
        .expectations
        .iter()
        .find(|e| e.alert == "AlwaysFires")
        .unwrap();
    assert!(!u.passed && u.detail.starts_with("fired at"), "{u:?}");
}
