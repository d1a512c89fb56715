//! `firedrill run` end to end through the real binary: the embedded reference server as a child
//! process, a record that a report can be built from, and exit codes 0, 1, 2.

use reports::record::RunRecord;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_firedrill");

fn tmp(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A scenario on the embedded server with a tiny model (fast in debug builds); every success
/// downloads its image, so a served request is a whole journey.
fn scenario(dir: &Path, stages: &str, thresholds: &str) -> PathBuf {
    let weights = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weights");
    let text = format!(
        "version: 1\nname: e2e\nseed: 3\ntarget:\n  reference_server:\n    workers: 1\n    config:\n      weights_cache: {}\n      default_resolution: 64x64\n      models:\n        - {{name: sdxl-mini, vocab: 4096, max_tokens: 32, text_dim: 32, text_layers: 1, encoders: [clip], latent_channels: 4, hidden: 32, blocks: 1, vae_channels: [16, 8], frames: 1, weights_seed: 11}}\nload:\n  arrival: {{process: poisson}}\n  mix:\n    tiers: {{turbo: 1, fast: 1}}\n    steps: {{'2': 1}}\n    modes: {{sync: 1, async: 1}}\n  poll_interval: 50ms\n  fetch_image: true\n  stages:\n{stages}\nobserve:\n  scrape_interval: 500ms\n{thresholds}",
        weights.display()
    );
    let p = dir.join("scenario.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(scenario: &Path, out: &Path) -> (Option<i32>, String, String) {
    let o = Command::new(BIN)
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .arg("--window")
        .arg("1s")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn a_passing_run_writes_a_complete_record() {
    let dir = tmp("pass");
    let s = scenario(&dir, "    - {hold: 10, for: 4s}", "thresholds:\n  - name: p95\n    latency: {percentile: 95, below: 5s}\n  - name: errors\n    error_rate: {below: 0.01}\n");
    let out = dir.join("out");
    let (code, stdout, stderr) = run(&s, &out);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("PASS"), "{stdout}");
    let r = RunRecord::read(&out.join("record.json")).unwrap();
    assert_eq!(r.scenario.name, "e2e");
    assert!(r.verdict.passed);
    assert!(r.totals.completed >= 20, "{} completed", r.totals.completed);
    let served: u64 = ["ok", "blocked_post"]
        .iter()
        .filter_map(|k| r.outcomes.get(*k))
        .sum();
    assert_eq!(served, r.totals.completed, "{:?}", r.outcomes);
    // (The tiny test model's images fool the image classifier now and then: blocks are answers.)
    assert!(
        r.outcomes.get("ok").copied().unwrap_or(0) * 2 >= r.totals.completed,
        "{:?}",
        r.outcomes
    );
    assert!(r.windows.len() >= 4);
    assert!(r
        .thresholds
        .iter()
        .all(|t| t.passed && t.observed.is_some()));
    assert!(r.trust.trustworthy, "{:?}", r.trust.reasons);
    // Scraped series: the synthetic `up` and the server's own metrics.
    let series = r.series.to_string();
    assert!(series.contains("\"__name__\":\"up\""), "no up series");
    assert!(series.contains("requests_total"));
    assert!(out.join("summary.md").exists());
    assert!(out.join("reference-server.log").metadata().unwrap().len() > 0);
}

#[test]
fn a_baseline_in_the_scenario_gates_the_run_on_regressions() {
    let dir = tmp("baseline");
    let stages = "    - {hold: 20, for: 5s}";
    let s = scenario(&dir, stages, "");
    let (code, stdout, stderr) = run(&s, &dir.join("base"));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    // The same build against it: no regression (generous tolerance: a shared test machine).
    let gate = "baseline: {record: base/record.json, tolerance: 1.0, min_samples: 30}\n";
    let s = scenario(&dir, stages, gate);
    let (code, stdout, stderr) = run(&s, &dir.join("same"));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let r = RunRecord::read(&dir.join("same/record.json")).unwrap();
    let t = r
        .thresholds
        .iter()
        .find(|t| t.name == "no regression against the baseline")
        .unwrap();
    assert!(t.passed, "{t:?}");
    // Every decode 300 ms slower: p95 several times the baseline's, flagged, exit 1.
    let slow = format!("{gate}faults:\n  - {{name: slow, at: 0s, for: 5s, fault: {{kind: stage_latency, stage: vae_decode, added_ms: 300}}}}\n");
    let s = scenario(&dir, stages, &slow);
    let (code, stdout, _) = run(&s, &dir.join("slow"));
    assert_eq!(code, Some(1), "{stdout}");
    let r = RunRecord::read(&dir.join("slow/record.json")).unwrap();
    let t = r
        .thresholds
        .iter()
        .find(|t| t.name == "no regression against the baseline")
        .unwrap();
    assert!(!t.passed && t.detail.contains("p95"), "{t:?}");
    assert!(!r.verdict.passed);
    // A baseline that is not there is bad input, before anything runs.
    let s = scenario(&dir, stages, "baseline: {record: nowhere.json}\n");
    let (code, _, stderr) = run(&s, &dir.join("missing"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("baseline.record"), "{stderr}");
}

#[test]
fn a_breached_threshold_exits_1() {
    let dir = tmp("fail");
    let s = scenario(
        &dir,
        "    - {hold: 5, for: 2s}",
        "thresholds:\n  - name: impossible\n    latency: {percentile: 50, below: 1ms}\n",
    );
    let (code, stdout, _) = run(&s, &dir.join("out"));
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED") && stdout.contains("impossible"),
        "{stdout}"
    );
    let r = RunRecord::read(&dir.join("out/record.json")).unwrap();
    assert!(!r.verdict.passed);
    assert_eq!(r.verdict.exit_code, 1);
}

#[test]
fn an_abort_threshold_stops_the_run_early() {
    let dir = tmp("abort");
    let text = "version: 1\nname: dead\ntarget: {url: {base: 'http://127.0.0.1:9'}}\nload:\n  arrival: {process: constant}\n  stages: [{hold: 20, for: 60s}]\nthresholds:\n  - name: errors\n    error_rate: {below: 0.1}\n    abort: true\n";
    let s = dir.join("dead.yaml");
    std::fs::write(&s, text).unwrap();
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = run(&s, &dir.join("out"));
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(started.elapsed().as_secs() < 30, "did not abort early");
    assert!(stderr.contains("aborting"), "{stderr}");
    let r = RunRecord::read(&dir.join("out/record.json")).unwrap();
    assert!(r.events.iter().any(|e| e.name == "aborted"));
    assert!(r.outcomes.get("connection_error").copied().unwrap_or(0) > 0);
}

#[test]
fn ctrl_c_stops_the_load_and_the_server_and_still_writes_the_record() {
    let dir = tmp("sigint");
    let s = scenario(&dir, "    - {hold: 5, for: 120s}", "");
    let out = dir.join("out");
    let child = Command::new(BIN)
        .arg("run")
        .arg(&s)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the server's config is written and traffic flows.
    let started = std::time::Instant::now();
    while !out.join("reference-server.log").exists() || started.elapsed().as_secs() < 4 {
        assert!(started.elapsed().as_secs() < 60, "the run never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child with SIGINT.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(started.elapsed().as_secs() < 60, "did not stop promptly");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let r = RunRecord::read(&out.join("record.json")).unwrap();
    assert!(r.events.iter().any(|e| e.name == "interrupted"));
    assert!(r.totals.completed > 0);
    // The server is gone: its log ends with the drain, and nothing listens on its port.
    let url = r.target.url.trim_start_matches("http://").to_owned();
    assert!(
        std::net::TcpStream::connect(url).is_err(),
        "the reference server outlived the run"
    );
}
