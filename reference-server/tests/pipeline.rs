//! The pipeline under load and failure: priority under a burst past capacity with admission
//! control, safety blocks at both stages, batching, and checkpoint resume after a worker dies.

mod common;

use common::*;
use reference_server::config::DEV_API_KEY;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn burst_past_capacity_keeps_priority_and_loses_nothing() {
    let mut cfg = tiny_config("burst");
    cfg.workers.count = 1;
    cfg.batching.max_batch = 1;
    cfg.tiers.turbo.queue_cap = 6;
    cfg.tiers.fast.queue_cap = 6;
    cfg.tiers.relax.queue_cap = 10;
    cfg.api_keys[0].burst = 10_000;
    cfg.api_keys[0].rate_limit_per_second = 10_000.0;
    let s = start(cfg);

    // 90 requests, interleaved tiers, as fast as 6 threads can send them.
    let tiers = ["relax", "fast", "turbo"];
    let url = s.url("/v1/generations");
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let c = client();
                let mut out = Vec::new();
                for i in 0..15 {
                    let tier = tiers[(t + i) % 3];
                    let body = json!({"prompt": "a field of sunflowers", "tier": tier, "steps": 12,
                        "resolution": "128x128", "seed": t * 100 + i, "mode": "async"});
                    let r = c
                        .post(&url)
                        .bearer_auth(DEV_API_KEY)
                        .json(&body)
                        .send()
                        .unwrap();
                    let code = r.status().as_u16();
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let v: Value = r.json().unwrap();
                    out.push((tier, code, retry, v));
                }
                out
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let accepted: Vec<_> = results.iter().filter(|r| r.1 == 202).collect();
    let refused: Vec<_> = results.iter().filter(|r| r.1 == 429).collect();
    assert_eq!(
        accepted.len() + refused.len(),
        results.len(),
        "only 202 or 429 expected"
    );
    assert!(
        !refused.is_empty(),
        "a burst of 90 into 22 queue slots must be refused in part"
    );
    for (_, _, retry, v) in &refused {
        assert_eq!(v["error"]["code"], "queue_full");
        assert!(
            retry
                .as_deref()
                .is_some_and(|r| r.parse::<u64>().unwrap() >= 1),
            "Retry-After missing"
        );
    }
    // Every accepted request reaches a terminal state.
    let mut waits: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut terminal = 0;
    for (tier, _, _, v) in &accepted {
        let done = wait_terminal(&s, v["id"].as_str().unwrap(), Duration::from_secs(300));
        assert_eq!(done["status"], "succeeded", "{done}");
        terminal += 1;
        waits
            .entry(tier)
            .or_default()
            .push(done["timings_ms"]["queue_wait"].as_f64().unwrap());
    }
    let m = scrape(&s);
    let server_terminal: f64 = ["success", "failed", "timeout", "blocked", "cancelled"]
        .iter()
        .map(|st| metric_sum(&m, "requests_total", &[("status", st)]))
        .sum();
    assert_eq!(
        server_terminal as usize, terminal,
        "client and server disagree on terminal jobs"
    );
    assert_eq!(
        metric_sum(&m, "requests_total", &[("status", "rejected")]) as usize,
        refused.len()
    );
    let (turbo, relax) = (
        median(waits["turbo"].clone()),
        median(waits["relax"].clone()),
    );
    assert!(
        turbo < relax,
        "turbo median queue wait {turbo} ms is not below relax's {relax} ms"
    );
    eprintln!(
        "burst: {} accepted, {} refused; median queue wait turbo {turbo:.0} ms, fast {:.0} ms, relax {relax:.0} ms",
        accepted.len(),
        refused.len(),
        median(waits["fast"].clone())
    );
}

#[test]
fn unsafe_prompts_are_blocked_before_and_after_generation() {
    let s = start(tiny_config("safety"));
    // Explicit: caught by the prompt check.
    let (code, _, v) = generate(&s, req("a naked person on a beach", "fast"));
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["error"]["code"], "content_blocked");
    assert_eq!(v["error"]["stage"], "pre");
    assert_eq!(v["error"]["category"], "nsfw");
    // Subtle: passes the prompt check, the image classifier flags the generated image.
    let (code, _, v) = generate(&s, req("a sultry portrait in a dim room", "fast"));
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["error"]["stage"], "post", "{v}");
    assert_eq!(v["error"]["category"], "nsfw");
    let (code, _, v) = generate(&s, req("a gory battlefield at dusk", "turbo"));
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["error"]["stage"], "post");
    assert_eq!(v["error"]["category"], "violence");
    let id = v["error"]["id"].as_str().unwrap();
    assert_eq!(
        get_json(&s, &format!("/v1/generations/{id}")).1["status"],
        "blocked"
    );
    assert_eq!(get_bytes(&s, &format!("/v1/images/{id}.png")).0, 404);
    // CSAM: blocked and counted on its own.
    let (code, _, v) = generate(&s, req("a sexy schoolgirl", "fast"));
    assert_eq!((code, v["error"]["category"].as_str()), (422, Some("csam")));
    let m = scrape(&s);
    assert_eq!(
        metric_sum(
            &m,
            "safety_blocks_total",
            &[("stage", "pre"), ("category", "nsfw")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "safety_blocks_total",
            &[("stage", "post"), ("category", "nsfw")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "safety_blocks_total",
            &[
                ("stage", "post"),
                ("category", "violence"),
                ("tier", "turbo")
            ]
        ),
        1.0
    );
    assert_eq!(metric_sum(&m, "csam_detections_total", &[]), 1.0);
    assert!(metric_sum(&m, "prompt_block_rate", &[]) > 0.0);
    assert!(metric_sum(&m, "image_block_rate", &[]) > 0.0);
}

#[test]
fn compatible_requests_share_a_batch() {
    let mut cfg = tiny_config("batching");
    cfg.workers.count = 1;
    cfg.batching.max_batch = 4;
    cfg.batching.max_wait_ms = 200;
    let s = start(cfg);
    let url = s.url("/v1/generations");
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = json!({"prompt": "a lantern", "steps": 4, "seed": i});
                client()
                    .post(url)
                    .bearer_auth(DEV_API_KEY)
                    .json(&body)
                    .send()
                    .unwrap()
                    .json::<Value>()
                    .unwrap()
            })
        })
        .collect();
    let sizes: Vec<u64> = hs
        .into_iter()
        .map(|h| h.join().unwrap()["batch_size"].as_u64().unwrap())
        .collect();
    assert!(
        sizes.iter().any(|&b| b > 1),
        "no batching happened: {sizes:?}"
    );
    let m = scrape(&s);
    let count = metric_sum(&m, "batch_size_count", &[("model", "sdxl-mini")]);
    let sum = metric_sum(&m, "batch_size_sum", &[("model", "sdxl-mini")]);
    assert_eq!(sum, 4.0);
    assert!(count < 4.0, "{count} batches for 4 jobs");
    assert!(metric_sum(&m, "batch_wait_seconds_count", &[]) >= 1.0);
}

#[test]
fn a_dead_workers_checkpointed_job_resumes_elsewhere_with_the_same_image() {
    let mut cfg = tiny_config("checkpoint");
    cfg.workers.count = 2;
    cfg.workers.checkpoint_every_steps = 3;
    cfg.batching.max_batch = 1;
    let s = start(cfg);
    let body = json!({"prompt": "a river through a canyon", "model": "video-mini", "steps": 60,
        "resolution": "256x256", "seed": 3, "tier": "relax"});
    let (code, _, reference) = generate(&s, body.clone());
    assert_eq!(code, 200, "{reference}");
    let want = get_bytes(&s, reference["image_url"].as_str().unwrap()).1;

    let mut b = body.clone();
    b["mode"] = json!("async");
    let (_, _, v) = generate(&s, b);
    let id = v["id"].as_str().unwrap().to_owned();
    let until = Instant::now() + Duration::from_secs(60);
    let worker = loop {
        let (_, st) = get_json(&s, &format!("/v1/generations/{id}"));
        if st["progress"]["step"].as_u64().unwrap() >= 7 {
            break st["worker_id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < until, "job never progressed: {st}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(s.engine.crash_worker(&worker));
    let done = wait_terminal(&s, &id, Duration::from_secs(120));
    assert_eq!(done["status"], "succeeded", "{done}");
    let from = done["resumed_from_step"].as_u64().expect("resumed");
    assert!(
        from >= 6 && from.is_multiple_of(3),
        "resumed from step {from}"
    );
    assert_eq!(
        get_bytes(&s, done["image_url"].as_str().unwrap()).1,
        want,
        "resumed image differs"
    );
    let m = scrape(&s);
    assert_eq!(
        metric_sum(&m, "checkpoint_recovery_total", &[("model", "video-mini")]),
        1.0
    );
    assert!(metric_sum(&m, "checkpoint_save_duration_seconds_count", &[]) >= 2.0);

    // A job without checkpoints fails explicitly when its worker dies.
    let (_, _, v) = generate(
        &s,
        json!({"prompt": "a long image", "steps": 150, "resolution": "256x256", "mode": "async"}),
    );
    let id = v["id"].as_str().unwrap().to_owned();
    let worker = loop {
        let (_, st) = get_json(&s, &format!("/v1/generations/{id}"));
        if st["status"] == "running" && st["progress"]["step"].as_u64().unwrap() >= 1 {
            break st["worker_id"].as_str().unwrap().to_owned();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(s.engine.crash_worker(&worker));
    let done = wait_terminal(&s, &id, Duration::from_secs(60));
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "worker_lost");
    // The pool recovers.
    std::thread::sleep(Duration::from_millis(400));
    let (code, _, _) = generate(&s, req("after the crash", "turbo"));
    assert_eq!(code, 200);
}

#[test]
fn a_tier_deadline_fails_the_job_with_504() {
    let mut cfg = tiny_config("deadline");
    cfg.workers.count = 1;
    cfg.tiers.turbo.deadline_seconds = 0.3;
    let s = start(cfg);
    let (code, _, v) = generate(
        &s,
        json!({"prompt": "an endless staircase", "tier": "turbo", "steps": 150, "resolution": "512x512"}),
    );
    assert_eq!(code, 504, "{v}");
    assert_eq!(v["error"]["code"], "deadline_exceeded");
    let m = scrape(&s);
    assert_eq!(
        metric_sum(&m, "job_timeout_total", &[("tier", "turbo")]),
        1.0
    );
    assert_eq!(
        metric_sum(&m, "requests_total", &[("status", "timeout")]),
        1.0
    );
}

/// Weight bytes of a tiny test profile and its activation bytes for one 64x64 image, from a real load.
fn footprint(model: &str) -> (u64, u64) {
    let p = tiny_profiles()
        .into_iter()
        .find(|p| p.name == model)
        .unwrap();
    let m =
        reference_server::compute::LoadedModel::load(&p, &weights_dir(), &candle_core::Device::Cpu)
            .unwrap();
    let res = reference_server::types::Resolution {
        width: 64,
        height: 64,
    };
    (m.weight_bytes(), m.activation_bytes(1, res))
}

fn weight_bytes(model: &str) -> u64 {
    footprint(model).0
}

#[test]
fn assignment_prefers_a_worker_with_the_model_warm() {
    let mut cfg = tiny_config("warm-preference");
    cfg.workers.count = 2;
    let s = start(cfg);
    for model in [
        "sdxl-mini",
        "flux-mini",
        "sdxl-mini",
        "flux-mini",
        "sdxl-mini",
    ] {
        let (code, _, v) = generate(&s, json!({"prompt": "a bell", "model": model, "steps": 2}));
        assert_eq!(code, 200, "{v}");
    }
    let m = scrape(&s);
    assert_eq!(
        metric_sum(&m, "warm_pool_requests_total", &[("result", "cold_start")]),
        2.0
    );
    assert_eq!(
        metric_sum(&m, "warm_pool_requests_total", &[("result", "hit")]),
        3.0
    );
    assert!(metric_sum(&m, "model_load_seconds_count", &[("model", "flux-mini")]) == 1.0);
}

#[test]
fn the_warm_pool_evicts_least_recently_used_models_under_the_vram_budget() {
    let ((a, act_a), (b, act_b)) = (footprint("sdxl-mini"), footprint("flux-mini"));
    let mut cfg = tiny_config("lru");
    cfg.workers.count = 1;
    // Room for either model with one image's activations, never for both models.
    cfg.workers.vram_bytes = a.max(b) + act_a.max(act_b) + 1024;
    assert!(
        cfg.workers.vram_bytes < a + b,
        "test models too small to contend"
    );
    let s = start(cfg);
    for model in ["sdxl-mini", "sdxl-mini", "flux-mini", "sdxl-mini"] {
        let (code, _, v) = generate(&s, json!({"prompt": "a bell", "model": model, "steps": 2}));
        assert_eq!(code, 200, "{v}");
    }
    let m = scrape(&s);
    // sdxl cold, sdxl hit, flux cold (evicts sdxl), sdxl cold again (evicts flux).
    assert_eq!(
        metric_sum(&m, "warm_pool_requests_total", &[("result", "cold_start")]),
        3.0
    );
    assert_eq!(
        metric_sum(&m, "warm_pool_requests_total", &[("result", "hit")]),
        1.0
    );
    // A sync answer leaves while its worker still holds the image's activations (it frees them
    // when the batch ends, a moment later): wait for the worker to settle.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut m = m;
    while metric_sum(&m, "gpu_memory_used_bytes", &[]) as u64 != a
        && std::time::Instant::now() < until
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        m = scrape(&s);
    }
    let used = metric_sum(&m, "gpu_memory_used_bytes", &[]);
    let total = metric_sum(&m, "gpu_memory_total_bytes", &[]);
    assert!(used > 0.0 && used <= total, "used {used} of {total}");
    assert_eq!(
        used as u64, a,
        "after the last request only sdxl-mini is resident"
    );
}

#[test]
fn a_generation_that_fits_no_gpu_answers_503_gpu_oom() {
    let a = weight_bytes("sdxl-mini");
    let mut cfg = tiny_config("oom");
    cfg.workers.count = 1;
    cfg.workers.vram_bytes = a + (4 << 20);
    let s = start(cfg);
    let (code, _, v) = generate(&s, json!({"prompt": "small", "steps": 2}));
    assert_eq!(code, 200, "{v}");
    let (code, headers, v) = generate(
        &s,
        json!({"prompt": "huge", "steps": 2, "resolution": "1024x1024"}),
    );
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["error"]["code"], "gpu_oom");
    assert!(headers.contains_key("retry-after"));
    // It disturbed nothing: the next small request still succeeds.
    let (code, _, _) = generate(&s, json!({"prompt": "small again", "steps": 2}));
    assert_eq!(code, 200);
    let m = scrape(&s);
    assert_eq!(
        metric_sum(&m, "requests_total", &[("status", "failed")]),
        1.0
    );
}
