//! The harness's outcome classes agree with what the reference server really answers: the
//! contract between `firedrill` (which counts outcomes) and `reference-server` (which causes them).

use firedrill::outcome::{classify_body, OutcomeClass};
use reference_server::app::BackgroundServer;
use reference_server::compute::ModelProfile;
use reference_server::config::{Config, DEV_API_KEY};
use reference_server::types::Resolution;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

fn tiny_config() -> Config {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let mut c = Config {
        listen: "127.0.0.1:0".into(),
        weights_cache: dir.join("weights"),
        data_dir: dir.join(format!("e2e-{}", std::process::id())),
        ..Config::default()
    };
    c.models = vec![ModelProfile::tiny("sdxl-mini", 11)];
    c.default_resolution = Resolution {
        width: 64,
        height: 64,
    };
    c.workers.count = 1;
    c.batching.max_batch = 1;
    c.tiers.fast.queue_cap = 1;
    c.tiers.turbo.deadline_seconds = 0.2;
    c.api_keys[0].burst = 1000;
    c.api_keys[0].rate_limit_per_second = 1000.0;
    let mut slow = c.api_keys[0].clone();
    slow.key = "slow-lane-key".into();
    slow.user = "slow".into();
    slow.burst = 1;
    slow.rate_limit_per_second = 0.01;
    c.api_keys.push(slow);
    c
}

fn send(base: &str, key: &str, body: Value) -> OutcomeClass {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .post(format!("{base}/v1/generations"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    classify_body(status, &r.json().unwrap_or(Value::Null))
}

#[test]
fn server_answers_classify_into_the_harness_outcome_classes() {
    let s = BackgroundServer::start(tiny_config()).unwrap();
    let b = &s.base;
    let mut seen = BTreeMap::new();
    let mut check = |name: &str, got: OutcomeClass, want: OutcomeClass| {
        assert_eq!(got, want, "{name}");
        *seen.entry(want).or_insert(0) += 1;
    };
    check(
        "success",
        send(b, DEV_API_KEY, json!({"prompt": "a kettle", "steps": 2})),
        OutcomeClass::Ok,
    );
    check(
        "explicit prompt",
        send(b, DEV_API_KEY, json!({"prompt": "naked", "steps": 2})),
        OutcomeClass::BlockedPre,
    );
    check(
        "subtle prompt",
        send(
            b,
            DEV_API_KEY,
            json!({"prompt": "a sultry scene", "steps": 2}),
        ),
        OutcomeClass::BlockedPost,
    );
    check(
        "bad input",
        send(b, DEV_API_KEY, json!({"prompt": "x", "steps": 0})),
        OutcomeClass::HttpError,
    );
    send(b, "slow-lane-key", json!({"prompt": "a cup", "steps": 2}));
    check(
        "rate limit",
        send(b, "slow-lane-key", json!({"prompt": "a cup", "steps": 2})),
        OutcomeClass::RateLimited,
    );
    // Deadline: a turbo job that cannot finish within 0.2 s.
    check(
        "deadline",
        send(
            b,
            DEV_API_KEY,
            json!({"prompt": "a maze", "tier": "turbo", "steps": 150, "resolution": "512x512"}),
        ),
        OutcomeClass::Timeout,
    );
    // Admission control: fill the only worker and the fast queue (cap 1), then one more.
    let base = b.clone();
    let occupy = std::thread::spawn(move || {
        send(
            &base,
            DEV_API_KEY,
            json!({"prompt": "a long one", "tier": "relax", "steps": 150, "resolution": "512x512"}),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let async_job = json!({"prompt": "queued", "tier": "fast", "steps": 2, "mode": "async"});
    check(
        "queued",
        send(b, DEV_API_KEY, async_job.clone()),
        OutcomeClass::Ok,
    );
    check(
        "queue full",
        send(b, DEV_API_KEY, async_job),
        OutcomeClass::Overloaded,
    );
    assert_eq!(occupy.join().unwrap(), OutcomeClass::Ok);
    assert_eq!(seen.len(), 7, "{seen:?}");
}
