//! The embedded reference server as the harness starts it: a child process of the `firedrill`
//! binary on a free loopback port, ready when returned, stopped by SIGTERM.

use firedrill::scenario::Scenario;
use firedrill::target::{Target, TargetError};
use std::path::Path;
use std::time::Duration;

const EXE: &str = env!("CARGO_BIN_EXE_firedrill");

fn scenario(config: &str) -> Scenario {
    let weights = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weights");
    let text = format!(
        "version: 1\nname: t\ntarget:\n  reference_server:\n    workers: 1\n    config:\n      weights_cache: {}\n      default_resolution: 64x64\n{config}load:\n  stages: [{{hold: 1, for: 1s}}]\n",
        weights.display()
    );
    Scenario::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const TINY_MODEL: &str = "      models:\n        - {name: sdxl-mini, vocab: 4096, max_tokens: 32, text_dim: 32, text_layers: 1, encoders: [clip], latent_channels: 4, hidden: 32, blocks: 1, vae_channels: [16, 8], frames: 1, weights_seed: 11}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_server_starts_as_a_child_and_stops_on_sigterm() {
    let out =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("target-test-{}", std::process::id()));
    let s = scenario(TINY_MODEL);
    let mut t = Target::start(&s, Path::new(EXE), &out).await.unwrap();
    assert!(t.base.starts_with("http://127.0.0.1:"));
    assert_eq!(t.kind, "reference_server");
    let client = firedrill::load::HttpClient::new();
    let a = client
        .send(hyper::Method::GET, &t.metrics_url, None, None)
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert!(String::from_utf8_lossy(&a.body).contains("worker_pool_size"));
    let body = serde_json::to_vec(&serde_json::json!({"prompt": "a cat", "steps": 2})).unwrap();
    let url = format!("{}/v1/generations", t.base);
    let a = client
        .send(hyper::Method::POST, &url, t.api_key.as_deref(), Some(body))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let status = t
        .stop(Duration::from_secs(20))
        .await
        .expect("it was running");
    assert!(status.success(), "{status}");
    assert!(out.join("reference-server.log").metadata().unwrap().len() > 0);
    assert!(
        client
            .send(hyper::Method::GET, &t.metrics_url, None, None)
            .await
            .is_err(),
        "still up after stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_server_config_is_bad_input() {
    let out =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("target-bad-{}", std::process::id()));
    let s = scenario("      batching: {max_batch: 0}\n");
    match Target::start(&s, Path::new(EXE), &out).await {
        Err(TargetError::Config(m)) => assert!(m.contains("batching.max_batch"), "{m}"),
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(_) => panic!("a bad config started"),
    }
}
