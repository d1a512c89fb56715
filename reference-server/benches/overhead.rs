//! Server overhead and saturation throughput, each as a ratio against the bare candle compute
//! measured in the same run (machines are noisy; only same-run ratios mean anything).
//!
//! - overhead: one worker, no batching, sequential sync requests over HTTP on 127.0.0.1, against
//!   the same pipeline compute called directly (encode, denoise steps, decode, classify, PNG).
//!   Rounds alternate bare and server so drift hits both; medians are compared.
//! - saturation: the default config (2 workers, dynamic batching) under 8 concurrent clients,
//!   in generations per second, against bare sequential throughput.
//!
//! `cargo bench -p reference-server --bench overhead [-- --quick]`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{client, start, weights_dir, TestServer};
use reference_server::compute::{encode_png, tokenize, ImageClassifier, LoadedModel};
use reference_server::config::{Config, DEV_API_KEY};
use reference_server::types::Resolution;
use serde_json::json;
use std::time::Instant;

const PROMPT: &str = "a lighthouse on a rocky coast at dawn, volumetric light";
const STEPS: u32 = 8;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_config() -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".into(),
        weights_cache: weights_dir(),
        data_dir: common::scratch("bench"),
        ..Config::default()
    };
    c.api_keys[0].rate_limit_per_second = 1e6;
    c.api_keys[0].burst = 1_000_000;
    c
}

/// One generation's compute, exactly the stages the server runs, without the server.
fn bare_generation(model: &LoadedModel, classifier: &ImageClassifier, res: Resolution, seed: u64) {
    let p = model.profile();
    let tokens = tokenize(PROMPT, p.vocab, p.max_tokens);
    let (cond, _) = model.encode_text(&tokens).unwrap();
    let conds = cond.unsqueeze(0).unwrap();
    let mut latents = model.init_latents(&[seed], res).unwrap();
    for step in 0..STEPS as usize {
        latents = model
            .denoise_step(&latents, &conds, step, STEPS as usize)
            .unwrap();
    }
    let images = model.vae_decode(&latents, &conds).unwrap();
    classifier.classify(&images).unwrap();
    encode_png(&images[0]).unwrap();
}

fn server_generation(s: &TestServer, seed: u64) {
    let body = json!({"prompt": PROMPT, "tier": "turbo", "steps": STEPS, "seed": seed});
    let r = client()
        .post(s.url("/v1/generations"))
        .bearer_auth(DEV_API_KEY)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text());
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, per_round, burst) = if quick { (3, 2, 16) } else { (6, 4, 48) };
    let cfg = bench_config();
    let res = cfg.default_resolution;
    let device = candle_core::Device::Cpu;
    let profile = cfg.model(&cfg.default_model).unwrap().clone();
    let model = LoadedModel::load(&profile, &cfg.weights_cache, &device).unwrap();
    let classifier = ImageClassifier::load(&cfg.weights_cache, &device).unwrap();

    let mut one = cfg.clone();
    one.workers.count = 1;
    one.batching.max_batch = 1;
    one.batching.max_wait_ms = 0;
    let server = start(one);
    // Warm both paths (weights paged in, model warm on the worker).
    bare_generation(&model, &classifier, res, 1);
    server_generation(&server, 1);

    let (mut bare, mut served) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        for i in 0..per_round {
            let seed = (r * per_round + i) as u64;
            let t = Instant::now();
            bare_generation(&model, &classifier, res, seed);
            bare.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            server_generation(&server, seed);
            served.push(t.elapsed().as_secs_f64());
        }
    }
    drop(server);
    let (b, s) = (median(bare), median(served));
    println!(
        "model {} at {res}, {STEPS} steps (turbo default), {} pairs",
        profile.name,
        rounds * per_round
    );
    println!("bare compute per generation:   {:8.1} ms (median)", b * 1e3);
    println!("server per generation (HTTP):  {:8.1} ms (median)", s * 1e3);
    println!(
        "server overhead:               {:8.2} %  (server / bare - 1; goal < 5 %)",
        (s / b - 1.0) * 100.0
    );

    // Saturation: default workers and batching, many clients at once.
    let server = start(cfg.clone());
    server_generation(&server, 0);
    let started = Instant::now();
    let clients = 8;
    let per_client = burst / clients;
    let hs: Vec<_> = (0..clients)
        .map(|c| {
            let url = server.url("/v1/generations");
            std::thread::spawn(move || {
                let http = client();
                for i in 0..per_client {
                    let body = json!({"prompt": PROMPT, "tier": "turbo", "steps": STEPS, "seed": c * 1000 + i});
                    let r = http.post(&url).bearer_auth(DEV_API_KEY).json(&body).send().unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    let done = (clients * per_client) as f64;
    let rate = done / took;
    println!(
        "saturation ({} workers, max batch {}, {clients} clients): {:.2} generations/s over {done} generations",
        cfg.workers.count, cfg.batching.max_batch, rate
    );
    println!(
        "bare sequential throughput:    {:8.2} generations/s",
        1.0 / b
    );
    println!("saturation / bare sequential:  {:8.2}x", rate * b);
}
