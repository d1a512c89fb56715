//! `firedrill sweep` end to end through the real binary on the embedded reference server: steps
//! run to steady state, an overloaded step is recognised as such, the answer, service times, a
//! sizing with its check run, and the documents; and the inputs a sweep refuses.

use reports::capacity::CapacityRecord;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_firedrill");

fn tmp(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sweep-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One worker, a tiny model, no batching: about 10–30 ms of work per request in a debug build.
fn scenario(dir: &Path, extra: &str) -> PathBuf {
    let weights = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weights");
    let text = format!(
        "version: 1\nname: sweep-e2e\nseed: 4\ntarget:\n  reference_server:\n    workers: 1\n    config:\n      weights_cache: {}\n      batching: {{max_batch: 1}}\n      default_resolution: 64x64\n      models:\n        - {{name: sdxl-mini, vocab: 4096, max_tokens: 32, text_dim: 32, text_layers: 1, encoders: [clip], latent_channels: 4, hidden: 32, blocks: 1, vae_channels: [16, 8], frames: 1, weights_seed: 11}}\nload:\n  arrival: {{process: poisson}}\n  mix:\n    tiers: {{turbo: 1}}\n    steps: {{'2': 1}}\n    modes: {{sync: 1}}\n    prompts: {{unsafe_share: 0}}\n  stages: [{{hold: 1, for: 5s}}]\nthresholds:\n  - name: turbo p95\n    latency: {{percentile: 95, tier: turbo, below: 2s}}\nrules:\n  files: [{prom}/slo-rules.yaml]\n  slos: {prom}/slos.yaml\ncapacity:\n  window: 1s\n  measure: 6s\n  max_step: 25s\n  cooldown: 1s\n  check_measure: 6s\n{extra}",
        weights.display(),
        prom = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../dashboards/prometheus")
            .display()
    );
    let p = dir.join("scenario.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn sweep(scenario: &Path, out: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(BIN)
        .arg("sweep")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn a_sweep_finds_the_passing_rate_sizes_it_and_checks_the_prediction() {
    let dir = tmp("e2e");
    // 3 req/s is light for one worker; 400 req/s is far past it.
    let s = scenario(&dir, "  rates: [3, 400]\n  size_for: [3]\n");
    let out = dir.join("out");
    let (code, stdout, stderr) = sweep(&s, &out, &[]);
    let r = CapacityRecord::read(&out.join("capacity.json"))
        .unwrap_or_else(|e| panic!("{e}\n{stdout}\n{stderr}"));
    assert_eq!(r.steps.len(), 2, "{stderr}");
    let (light, heavy) = (&r.steps[0], &r.steps[1]);
    assert_eq!(light.state, "steady", "{stderr}");
    assert!(light.passed, "{light:?}");
    assert!(
        (light.throughput - 3.0).abs() < 1.5,
        "throughput {}",
        light.throughput
    );
    assert!(light.measured_s >= 6.0 - 1e-9 && light.measured_s <= 6.0 + 1e-9);
    assert!(light.queue_wait["all"].count > 0);
    assert!(light.worker_utilization.unwrap() < 0.9);
    assert!(light.queue_depth_mean.is_some());
    // The overload is seen for what it is: the queue grew, or the server shed what its queue cap
    // could not hold (fast answers, but not to everyone).
    assert!(!heavy.passed);
    let shed = heavy
        .thresholds
        .iter()
        .any(|t| t.name == "served the offered rate" && !t.passed);
    assert!(heavy.state == "rising" || shed, "{heavy:?}");
    assert!(heavy.worker_utilization.unwrap() > 2.0 * light.worker_utilization.unwrap());
    // The SLOs of `rules.slos` judged each step on the scraped counters: the light step served
    // every request well.
    let slo = |st: &reports::capacity::StepRecord, name: &str| {
        st.thresholds
            .iter()
            .find(|t| t.name == format!("SLO {name}"))
            .cloned()
            .unwrap_or_else(|| panic!("no SLO {name} in {:?}", st.thresholds))
    };
    let avail = slo(light, "generation_availability");
    assert!(avail.passed && avail.observed == Some(1.0), "{avail:?}");
    assert!(slo(light, "generation_latency_turbo").passed);
    assert!(slo(heavy, "generation_availability").observed.is_some());
    assert_eq!(r.answer.max_passing_rate, Some(3.0));
    assert_eq!(r.answer.min_failing_rate, Some(400.0));
    // Worker time of the one model and tier, and a sizing for 3 req/s with its check.
    assert_eq!(r.service.len(), 1);
    assert!(r.service[0].service_ms.mean > 0.0);
    assert_eq!(r.sizing.len(), 1);
    assert_eq!(r.sizing[0].recommended, Some(1), "{:?}", r.sizing);
    assert_eq!(r.validation.len(), 1);
    let v = &r.validation[0];
    assert_eq!(v.workers, 1);
    assert!(v.step.queue_wait["all"].count > 0);
    assert!(v.relative_error.is_finite());
    // Judged: the model replaying the check's own schedule at the speed the check measured; the
    // prediction from the sweep alone beside it.
    assert!(v.adjusted_p95_wait_ms.is_finite() && v.predicted_p95_wait_ms.is_finite());
    if v.measured_p95_wait_ms > 0.0 {
        let e = (v.adjusted_p95_wait_ms - v.measured_p95_wait_ms) / v.measured_p95_wait_ms;
        assert!((e - v.relative_error).abs() < 1e-9, "{v:?}");
    }
    assert!(r.method.description.contains("Theil"));
    // The documents.
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("**Answer:**")
            && md.contains("Sizing for 3 req/s")
            && md.contains("at the check's speed"),
        "{md}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Capacity sweep") && html.contains("data:image/svg+xml;base64,"));
    for plot in [
        "capacity_latency",
        "capacity_utilization",
        "capacity_sizing",
    ] {
        assert!(
            out.join("plots").join(format!("{plot}.png")).is_file(),
            "{plot}"
        );
    }
    assert!(stdout.contains("report:"), "{stdout}");
    // Exit 0 only when the check was within tolerance; either way the code says which.
    assert_eq!(code, Some(if v.passed { 0 } else { 1 }), "{stderr}");
}

#[test]
fn a_sweep_refuses_what_it_cannot_measure() {
    let dir = tmp("bad");
    let s = scenario(&dir, "");
    // A closed model has no arrival rate.
    let text = std::fs::read_to_string(&s)
        .unwrap()
        .replace("load:\n", "load:\n  model: closed\n")
        .replace("  arrival: {process: poisson}\n", "");
    std::fs::write(&s, text).unwrap();
    let (code, _, stderr) = sweep(&s, &dir.join("out"), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("load.model"), "{stderr}");
    // Rates on the command line are checked like the scenario's.
    let s = scenario(&dir, "");
    let (code, _, stderr) = sweep(&s, &dir.join("out"), &["--rates", "2,-1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("capacity.rates[1]"), "{stderr}");
    // Nothing was started or written for either.
    assert!(!dir.join("out").join("capacity.json").exists());
}
