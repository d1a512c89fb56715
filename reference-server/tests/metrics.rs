//! The live `/metrics` exposition over real HTTP, after real traffic: it matches the catalog
//! exactly, `promtool check metrics` finds nothing in it, the counters moved, and
//! `metric_units: seed_ms` exports the seeds' millisecond names instead.

mod common;
use common::*;

use reference_server::metrics::conformance::{promtool_check_metrics, PromtoolReport};
use reference_server::metrics::{catalog_problems, lookup, MetricUnits, CATALOG};
use serde_json::json;
use std::time::Duration;

/// promtool's report on `text`; `None` (after a skip notice) when promtool is not installed
/// and CI is not set.
fn promtool(test: &str, text: &str) -> Option<PromtoolReport> {
    let report = promtool_check_metrics(text).expect("running promtool");
    if report.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool not found (Debian package `prometheus`), and CI is set"
        );
        eprintln!("SKIP {test} (promtool part): promtool not installed");
    }
    report
}

/// One request of each kind the acceptance names: sync success, async job (a video model, so it
/// also checkpoints), pre-blocked, post-blocked, and a 400.
fn drive_traffic(s: &TestServer) {
    let (code, _, v) = generate(s, req("a lighthouse on a cliff at dawn", "turbo"));
    assert_eq!(code, 200, "sync: {v}");

    let mut body = req("a paper boat drifting down a river", "fast");
    body["mode"] = json!("async");
    body["model"] = json!("video-mini");
    body["steps"] = json!(12);
    let (code, _, v) = generate(s, body);
    assert_eq!(code, 202, "async: {v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let done = wait_terminal(s, &id, Duration::from_secs(120));
    assert_eq!(done["status"], "succeeded", "async: {done}");

    let (code, _, v) = generate(s, req("a naked man", "fast"));
    assert_eq!(code, 422, "pre-blocked: {v}");
    assert_eq!(v["error"]["stage"], "pre", "{v}");

    let (code, _, v) = generate(s, req("a sultry portrait", "fast"));
    assert_eq!(code, 422, "post-blocked: {v}");
    assert_eq!(v["error"]["stage"], "post", "{v}");

    let (code, _, v) = generate(s, json!({"prompt": "a quiet harbour", "steps": 0}));
    assert_eq!(code, 400, "bad request: {v}");
}

#[test]
fn live_exposition_matches_catalog_and_passes_promtool() {
    let s = start(tiny_config("metrics-base"));
    drive_traffic(&s);
    let text = scrape(&s);

    let problems = catalog_problems(&text, CATALOG, MetricUnits::Base);
    assert!(
        problems.is_empty(),
        "live /metrics disagrees with CATALOG:\n{}\n---\n{text}",
        problems.join("\n")
    );
    for spec in CATALOG.iter().filter(|s| s.seed_ms.is_some()) {
        let ms = spec.seed_ms_name().unwrap();
        assert!(
            !text.contains(&format!("{ms}_")) && !text.contains(&format!("{ms} ")),
            "{ms} exported with metric_units: base"
        );
    }

    let positive = |name: &str, labels: &[(&str, &str)], at_least: f64| {
        let v = metric_sum(&text, name, labels);
        assert!(v >= at_least, "{name}{labels:?} = {v}, want >= {at_least}");
    };
    positive("requests_total", &[("status", "success")], 1.0);
    positive("requests_total", &[("status", "blocked")], 2.0);
    positive("safety_blocks_total", &[("stage", "pre")], 1.0);
    positive("safety_blocks_total", &[("stage", "post")], 1.0);
    positive(
        "http_requests_total",
        &[("endpoint", "/v1/generations")],
        1.0,
    );
    positive(
        "http_requests_total",
        &[("endpoint", "/v1/generations"), ("status", "400")],
        1.0,
    );
    positive("warm_pool_requests_total", &[("result", "cold_start")], 1.0);
    assert!(metric_sum(&text, "gpu_memory_total_bytes", &[]) > 0.0);
    // The six millisecond histograms, observed in seconds.
    for (name, labels) in [
        ("diffusion_step_time_seconds_count", &[][..]),
        ("vae_decode_time_seconds_count", &[]),
        ("safety_check_time_seconds_count", &[("stage", "pre")]),
        ("safety_check_time_seconds_count", &[("stage", "post")]),
        ("cdn_upload_time_seconds_count", &[]),
        (
            "safety_classifier_latency_seconds_count",
            &[("classifier", "prompt_classifier")],
        ),
        (
            "safety_classifier_latency_seconds_count",
            &[("classifier", "image_classifier")],
        ),
        (
            "checkpoint_save_duration_seconds_count",
            &[("model", "video-mini")],
        ),
    ] {
        assert!(
            metric_sum(&text, name, labels) > 0.0,
            "{name}{labels:?} has no observations"
        );
    }
    // Seconds, not milliseconds: tiny models take well under a second per step and decode.
    let steps = metric_sum(&text, "diffusion_step_time_seconds_count", &[]);
    let step_sum = metric_sum(&text, "diffusion_step_time_seconds_sum", &[]);
    assert!(
        step_sum / steps < 1.0,
        "mean step {} looks like milliseconds",
        step_sum / steps
    );

    if let Some(report) = promtool("live_exposition_matches_catalog_and_passes_promtool", &text) {
        assert!(
            report.is_clean(),
            "promtool check metrics on the live exposition: exit {}\n{}",
            report.exit_code,
            report.output
        );
    }
}

#[test]
fn seed_ms_units_export_the_seed_names_in_milliseconds() {
    let mut cfg = tiny_config("metrics-seed-ms");
    cfg.metric_units = MetricUnits::SeedMs;
    let s = start(cfg);
    let (code, _, v) = generate(&s, req("a lighthouse on a cliff at dawn", "turbo"));
    assert_eq!(code, 200, "{v}");
    let text = scrape(&s);

    let problems = catalog_problems(&text, CATALOG, MetricUnits::SeedMs);
    assert!(
        problems.is_empty(),
        "live /metrics (seed_ms) disagrees with CATALOG:\n{}",
        problems.join("\n")
    );
    assert!(text.contains("# TYPE diffusion_step_time_ms histogram\n"));
    assert!(!text.contains("diffusion_step_time_seconds"));
    let spec = lookup("diffusion_step_time_ms").unwrap();
    let want: Vec<String> = spec
        .seed_ms
        .unwrap()
        .buckets
        .iter()
        .map(f64::to_string)
        .chain(["+Inf".to_string()])
        .collect();
    let got: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("diffusion_step_time_ms_bucket{model=\"sdxl-mini\","))
        .map(|l| {
            let le = l.split("le=\"").nth(1).unwrap();
            le[..le.find('"').unwrap()].to_string()
        })
        .collect();
    assert_eq!(got, want, "ms buckets");
    assert_eq!(want[0], "5");
    let count = metric_sum(&text, "diffusion_step_time_ms_count", &[]);
    let sum = metric_sum(&text, "diffusion_step_time_ms_sum", &[]);
    assert!(count > 0.0, "no diffusion steps observed");
    // Milliseconds, not seconds: a real denoising step takes well over a microsecond.
    assert!(sum / count > 0.001, "mean step {} ms", sum / count);

    if let Some(report) = promtool("seed_ms_units_export_the_seed_names_in_milliseconds", &text) {
        let mut names: Vec<&str> = report.findings().into_iter().map(|(n, _)| n).collect();
        names.sort();
        let mut want: Vec<&str> = CATALOG.iter().filter_map(|s| s.seed_ms_name()).collect();
        want.sort();
        assert_eq!(names, want, "promtool:\n{}", report.output);
    }
}
