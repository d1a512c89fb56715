//! Shared test support: a reference server in-process on 127.0.0.1 with an ephemeral port,
//! small model profiles so tests run in seconds, and a blocking HTTP client.
#![allow(dead_code)]

use reference_server::app::BackgroundServer;
use reference_server::compute::ModelProfile;
use reference_server::config::{Config, DEV_API_KEY};
use reference_server::types::Resolution;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Weights are shared by every test binary: generated once, then read from disk.
pub fn weights_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weights")
}

/// A fresh scratch directory.
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("scratch")
        .join(format!("{name}-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Small profiles with the default names, sized for tests (tens of ms per generation).
pub fn tiny_profiles() -> Vec<ModelProfile> {
    let base = ModelProfile::tiny("sdxl-mini", 11);
    vec![
        base.clone(),
        ModelProfile {
            name: "flux-mini".into(),
            encoders: vec!["clip".into(), "t5".into()],
            weights_seed: 12,
            ..base.clone()
        },
        ModelProfile {
            name: "video-mini".into(),
            frames: 2,
            weights_seed: 13,
            ..base
        },
    ]
}

/// A test configuration: ephemeral port, tiny models, 64x64 images, scratch data.
pub fn tiny_config(name: &str) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: scratch(name),
        weights_cache: weights_dir(),
        models: tiny_profiles(),
        default_resolution: Resolution {
            width: 64,
            height: 64,
        },
        drain_timeout_seconds: 2.0,
        ..Config::default()
    };
    c.workers.restart_backoff_ms = 200;
    c.validate().unwrap();
    c
}

/// A server running in-process until dropped.
pub type TestServer = BackgroundServer;

/// Starts a test server, panicking with the reason if it cannot start.
pub fn start(cfg: Config) -> TestServer {
    BackgroundServer::start(cfg).expect("server starts")
}

/// A blocking client with a generous timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// POSTs a generation with the dev key; returns status, headers and JSON body.
pub fn generate(s: &TestServer, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .post(s.url("/v1/generations"))
        .bearer_auth(DEV_API_KEY)
        .json(&body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let v: Value = r.json().unwrap_or(Value::Null);
    (status, headers, v)
}

/// GET with the dev key, as JSON.
pub fn get_json(s: &TestServer, path: &str) -> (u16, Value) {
    let r = client()
        .get(s.url(path))
        .bearer_auth(DEV_API_KEY)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// GET with the dev key, as bytes.
pub fn get_bytes(s: &TestServer, path: &str) -> (u16, Vec<u8>) {
    let r = client()
        .get(s.url(path))
        .bearer_auth(DEV_API_KEY)
        .send()
        .unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

/// Polls a job until it reaches a terminal state.
pub fn wait_terminal(s: &TestServer, id: &str, within: Duration) -> Value {
    let until = Instant::now() + within;
    loop {
        let (code, v) = get_json(s, &format!("/v1/generations/{id}"));
        assert_eq!(code, 200, "{v}");
        let st = v["status"].as_str().unwrap().to_owned();
        if !matches!(st.as_str(), "queued" | "running") {
            return v;
        }
        assert!(Instant::now() < until, "job {id} not terminal in time: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The text exposition.
pub fn scrape(s: &TestServer) -> String {
    client()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// Sum of a metric's samples whose labels include every `(name, value)` given.
pub fn metric_sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A simple request body.
pub fn req(prompt: &str, tier: &str) -> Value {
    json!({"prompt": prompt, "tier": tier, "steps": 4, "seed": 7})
}
