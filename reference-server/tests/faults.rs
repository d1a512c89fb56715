//! Server-side fault injection end to end: the admin API over real HTTP, and each of the nine
//! server-side faults acting through the pipeline's hooks. For every fault: its effect shows in
//! `/metrics` and in what clients get while it is active, the steady state returns after it is
//! reverted (or expires), the server keeps answering, and every request the server accepted is
//! counted exactly once in `requests_total` with the outcome the client saw.

mod common;

use common::*;
use reference_server::app::BackgroundServer;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TOKEN: &str = "admin-test-token-0123";

fn start_admin(cfg: reference_server::config::Config) -> TestServer {
    BackgroundServer::start_with_admin(cfg, TOKEN).expect("server starts")
}

/// An admin call with `token` (none: no Authorization header); status and JSON body.
fn admin_call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, Value) {
    let base = s.admin_base.as_deref().expect("admin API running");
    let mut r = client().request(method, format!("{base}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// Injects `fault` for `duration_ms`; returns its id.
fn inject(s: &TestServer, fault: Value, duration_ms: u64) -> String {
    let body = json!({"fault": {"name": "drill", "fault": fault, "duration_ms": duration_ms}});
    let (code, v) = admin_call(
        s,
        reqwest::Method::POST,
        "/admin/faults",
        Some(&body.to_string()),
        Some(TOKEN),
    );
    assert_eq!(code, 201, "inject {fault}: {v}");
    v["id"].as_str().unwrap().to_owned()
}

fn revert(s: &TestServer, id: &str) -> Value {
    let (code, v) = admin_call(
        s,
        reqwest::Method::DELETE,
        &format!("/admin/faults/{id}"),
        None,
        Some(TOKEN),
    );
    assert_eq!(code, 200, "revert {id}: {v}");
    v
}

fn revert_all(s: &TestServer) {
    let (code, v) = admin_call(
        s,
        reqwest::Method::DELETE,
        "/admin/faults",
        None,
        Some(TOKEN),
    );
    assert_eq!(
        (code, v["faults"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
}

/// Polls `cond` every 20 ms until it holds, failing with `what` after `within`.
fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metric(s: &TestServer, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&scrape(s), name, labels)
}

/// What clients saw, by `requests_total` status, to compare with the server's count.
#[derive(Default)]
struct Ledger {
    seen: HashMap<&'static str, u64>,
    sent: u64,
}

impl Ledger {
    /// Records the terminal answer of a sync POST (or of a polled async job) and returns it.
    fn record(&mut self, code: u16, v: &Value) -> &'static str {
        let err = v["error"]["code"].as_str().unwrap_or("");
        let status = match (code, err) {
            (200, _) => match v["status"].as_str() {
                Some("succeeded") => "success",
                Some("blocked") => "blocked",
                Some("cancelled") => "cancelled",
                Some("failed") if v["error"]["code"] == "deadline_exceeded" => "timeout",
                Some("failed") => "failed",
                other => panic!("not terminal: {other:?} {v}"),
            },
            (422, "content_blocked") => "blocked",
            (429, "queue_full") => "rejected",
            (429, "rate_limited") => "rate_limited",
            (504, _) => "timeout",
            (409, "cancelled") => "cancelled",
            (500 | 503, _) => "failed",
            _ => panic!("unexpected answer {code}: {v}"),
        };
        *self.seen.entry(status).or_default() += 1;
        self.sent += 1;
        status
    }

    /// Sends a sync generation and records its answer.
    fn sync(&mut self, s: &TestServer, body: Value) -> (u16, Value) {
        let (code, _, v) = generate(s, body);
        self.record(code, &v);
        (code, v)
    }

    /// Every request the clients sent is counted once, with the outcome they saw.
    fn check(&self, s: &TestServer) {
        let m = scrape(s);
        let total = metric_sum(&m, "requests_total", &[]);
        assert_eq!(total, self.sent as f64, "requests_total vs requests sent");
        for status in [
            "success",
            "blocked",
            "failed",
            "timeout",
            "rate_limited",
            "cancelled",
            "rejected",
        ] {
            let want = self.seen.get(status).copied().unwrap_or(0) as f64;
            assert_eq!(
                metric_sum(&m, "requests_total", &[("status", status)]),
                want,
                "requests_total{{status={status:?}}}"
            );
        }
        // Still answering.
        assert_eq!(
            client().get(s.url("/healthz")).send().unwrap().status(),
            200
        );
    }
}

fn small(prompt: &str) -> Value {
    json!({"prompt": prompt, "steps": 2, "seed": 5})
}

#[test]
fn admin_api_requires_the_token_and_refuses_bad_specs_naming_the_field() {
    use reqwest::Method;
    // Without a token the admin API does not run at all.
    let plain = start(tiny_config("no-admin"));
    assert!(plain.admin_base.is_none());
    drop(plain);

    let s = start_admin(tiny_config("admin-api"));
    let admin = s.admin_base.clone().unwrap();
    assert_ne!(admin, s.base, "the admin API has its own listener");
    assert!(admin.starts_with("http://127.0.0.1:"), "{admin}");
    // ... and the public listener does not serve it.
    let r = client()
        .get(s.url("/admin/faults"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    let good = r#"{"fault": {"name": "oom", "fault": {"kind": "gpu_oom", "worker": "worker-0",
        "fraction": 0.5}, "duration_ms": 60000}}"#;
    for token in [None, Some("wrong-token"), Some("admin-test-token-012")] {
        for (method, path, body) in [
            (Method::GET, "/admin/faults", None),
            (Method::POST, "/admin/faults", Some(good)),
            (Method::DELETE, "/admin/faults", None),
            (Method::DELETE, "/admin/faults/f-1", None),
        ] {
            let (code, v) = admin_call(&s, method.clone(), path, body, token);
            assert_eq!(code, 401, "{method} {path} with {token:?}: {v}");
            assert_eq!(v["error"]["code"], "unauthorized", "{v}");
        }
    }
    // Nothing was injected by the refused calls.
    let (code, v) = admin_call(&s, Method::GET, "/admin/faults", None, Some(TOKEN));
    assert_eq!((code, v), (200, json!({"faults": []})));

    // Bad specs: the status, the code and the field named in the message.
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("{not json".into(), 400, "invalid_fault", "key must be a string"),
        (
            r#"{"fault": {"name": "x", "fault": {"kind": "gpu_melt"}, "duration_ms": 5}}"#.into(),
            400,
            "invalid_fault",
            "gpu_melt",
        ),
        (
            r#"{"fault": {"name": "x", "fault": {"kind": "queue_stall"}, "duration_ms": 5, "extra": 1}}"#.into(),
            400,
            "invalid_fault",
            "extra",
        ),
        (
            good.replace("0.5", "1.5"),
            422,
            "invalid_fault",
            "field `fault.fraction`",
        ),
        (
            good.replace("60000", "0"),
            422,
            "invalid_fault",
            "field `duration_ms`",
        ),
        (
            good.replace("\"oom\"", "\"no spaces\""),
            422,
            "invalid_fault",
            "field `name`",
        ),
        (
            good.replace("worker-0", "worker-7"),
            422,
            "invalid_fault",
            "field `fault.worker`",
        ),
        (
            r#"{"fault": {"name": "x", "fault": {"kind": "cold_start", "models": ["sdxl-mini", "nope"]}, "duration_ms": 5}}"#.into(),
            422,
            "invalid_fault",
            "field `fault.models[1]`",
        ),
        (
            r#"{"fault": {"name": "x", "fault": {"kind": "queue_stall", "tier": "gold"}, "duration_ms": 5}}"#.into(),
            422,
            "invalid_fault",
            "field `fault.tier`",
        ),
        (
            r#"{"fault": {"name": "x", "fault": {"kind": "latency", "ms": 100}, "duration_ms": 5}}"#.into(),
            422,
            "unsupported_fault",
            "fault proxy",
        ),
    ];
    for (body, status, code, needle) in cases {
        let (got, v) = admin_call(&s, Method::POST, "/admin/faults", Some(&body), Some(TOKEN));
        assert_eq!(got, status, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{body}: message {msg:?} lacks {needle:?}"
        );
    }
    let (code, v) = admin_call(&s, Method::DELETE, "/admin/faults/f-404", None, Some(TOKEN));
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );

    // The harness's own client speaks to it: inject, list, revert one, revert all.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = chaos::AdminClient::new(admin, TOKEN);
    let spec: chaos::FaultSpec =
        serde_json::from_value(json!({"name": "stall", "fault": {"kind": "queue_stall", "tier": "relax"}, "duration_ms": 60000}))
            .unwrap();
    let before = reference_server::faults::now_ms();
    let a = rt.block_on(c.inject(&spec)).unwrap();
    let b = rt
        .block_on(c.inject(&chaos::FaultSpec {
            name: "xid".into(),
            fault: chaos::FaultKind::Xid {
                worker: None,
                code: 48,
            },
            duration_ms: 60_000,
        }))
        .unwrap();
    assert_eq!(a.spec, spec);
    assert!(a.injected_at_ms >= before && a.expires_at_ms == a.injected_at_ms + 60_000);
    assert_ne!(a.id, b.id);
    let listed = rt.block_on(c.list()).unwrap();
    assert_eq!(listed.faults, vec![a.clone(), b.clone()]);
    assert_eq!(
        metric(&s, "injected_faults_active", &[("kind", "queue_stall")]),
        1.0
    );
    assert_eq!(metric(&s, "injected_faults_active", &[]), 2.0);
    let left = rt.block_on(c.revert(&a.id)).unwrap();
    assert_eq!(left.faults, vec![b]);
    match rt.block_on(c.revert(&a.id)) {
        Err(chaos::AdminError::Refused {
            status: 404, code, ..
        }) => assert_eq!(code, "not_found"),
        other => panic!("second revert: {other:?}"),
    }
    assert!(rt.block_on(c.revert_all()).unwrap().is_empty());
    assert!(rt.block_on(c.list()).unwrap().is_empty());
    assert_eq!(metric(&s, "injected_faults_active", &[]), 0.0);
    let wrong = chaos::AdminClient::new(s.admin_base.clone().unwrap(), "nope-nope");
    assert!(matches!(
        rt.block_on(wrong.list()),
        Err(chaos::AdminError::Refused { status: 401, .. })
    ));
}

#[test]
fn gpu_oom_moves_work_off_the_hogged_gpu_then_answers_503() {
    let mut cfg = tiny_config("fault-oom");
    cfg.workers.count = 2;
    cfg.batching.max_batch = 1;
    let s = start_admin(cfg);
    let mut ledger = Ledger::default();
    let (code, _) = ledger.sync(&s, small("warm up"));
    assert_eq!(code, 200);

    let hog = inject(
        &s,
        json!({"kind": "gpu_oom", "worker": "worker-0", "fraction": 1.0}),
        60_000,
    );
    let m = scrape(&s);
    let w0 = [("worker_id", "worker-0")];
    let total = metric_sum(&m, "gpu_memory_total_bytes", &w0);
    assert!(total > 0.0);
    assert_eq!(
        metric_sum(&m, "gpu_memory_used_bytes", &w0),
        total,
        "the hog fills worker-0"
    );
    assert_eq!(metric_sum(&m, "gpu_vram_utilization_percent", &w0), 100.0);
    // Generations that cannot allocate on worker-0 run on worker-1.
    for i in 0..4 {
        let (code, v) = ledger.sync(&s, small(&format!("moved {i}")));
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["worker_id"], "worker-1", "{v}");
    }
    // With both GPUs hogged, nothing fits: 503 gpu_oom with Retry-After.
    let hog1 = inject(
        &s,
        json!({"kind": "gpu_oom", "worker": "worker-1", "fraction": 1.0}),
        60_000,
    );
    let (code, headers, v) = generate(&s, small("no room"));
    ledger.record(code, &v);
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (503, Some("gpu_oom")),
        "{v}"
    );
    assert!(headers.contains_key("retry-after"));
    // Reverting releases the memory and serving recovers.
    revert(&s, &hog1);
    revert(&s, &hog);
    let m = scrape(&s);
    assert!(metric_sum(&m, "gpu_memory_used_bytes", &w0) < total);
    assert!(metric_sum(&m, "gpu_vram_utilization_percent", &w0) < 100.0);
    for i in 0..2 {
        let (code, v) = ledger.sync(&s, small(&format!("after {i}")));
        assert_eq!(code, 200, "{v}");
    }
    ledger.check(&s);
    assert_eq!(ledger.seen["failed"], 1);
}

#[test]
fn cold_start_evicts_and_slow_storage_slows_loads_until_reverted() {
    let mut cfg = tiny_config("fault-cold");
    cfg.workers.count = 1;
    let s = start_admin(cfg);
    let mut ledger = Ledger::default();
    let cold = [("result", "cold_start")];
    let load_sum = |model: &str| metric(&s, "model_load_seconds_sum", &[("model", model)]);
    assert_eq!(ledger.sync(&s, small("first")).0, 200);
    assert_eq!(ledger.sync(&s, small("second")).0, 200);
    assert_eq!(metric(&s, "warm_pool_requests_total", &cold), 1.0);
    assert!(
        metric(&s, "gpu_memory_used_bytes", &[]) > 0.0,
        "sdxl-mini is resident"
    );

    let id = inject(
        &s,
        json!({"kind": "cold_start", "models": ["sdxl-mini"], "slow_storage_ms": 300}),
        60_000,
    );
    assert_eq!(metric(&s, "gpu_memory_used_bytes", &[]), 0.0, "evicted");
    let before = load_sum("sdxl-mini");
    let (code, v) = ledger.sync(&s, small("cold again"));
    assert_eq!(code, 200, "{v}");
    assert_eq!(metric(&s, "warm_pool_requests_total", &cold), 2.0);
    let took = load_sum("sdxl-mini") - before;
    assert!(
        took >= 0.3,
        "the load took {took} s with 300 ms of slow storage"
    );
    assert!(
        v["timings_ms"]["model_load"].as_f64().unwrap() >= 300.0,
        "{v}"
    );
    assert!(metric(&s, "warm_pool_hit_rate", &[]) < 1.0);

    revert(&s, &id);
    // Resident again, and the next cold load reads at full speed.
    assert_eq!(ledger.sync(&s, small("warm")).0, 200);
    assert_eq!(metric(&s, "warm_pool_requests_total", &cold), 2.0);
    let (code, v) = ledger.sync(
        &s,
        json!({"prompt": "flux", "model": "flux-mini", "steps": 2}),
    );
    assert_eq!(code, 200, "{v}");
    assert!(
        load_sum("flux-mini") < 0.3,
        "slow storage outlived its fault"
    );
    ledger.check(&s);
}

#[test]
fn model_load_failure_fails_loads_of_its_model_with_model_load_failed() {
    let mut cfg = tiny_config("fault-load");
    cfg.workers.count = 1;
    let s = start_admin(cfg);
    let mut ledger = Ledger::default();
    let id = inject(
        &s,
        json!({"kind": "model_load_failure", "model": "sdxl-mini", "probability": 1.0}),
        60_000,
    );
    for i in 0..2 {
        let (code, v) = ledger.sync(&s, small(&format!("doomed {i}")));
        assert_eq!(
            (code, v["error"]["code"].as_str()),
            (503, Some("model_load_failed")),
            "{v}"
        );
    }
    let m = scrape(&s);
    assert_eq!(
        metric_sum(&m, "model_load_failures_total", &[("model", "sdxl-mini")]),
        2.0
    );
    assert_eq!(
        metric_sum(&m, "warm_pool_requests_total", &[("result", "failed")]),
        2.0
    );
    // Other models load fine.
    let (code, v) = ledger.sync(
        &s,
        json!({"prompt": "flux", "model": "flux-mini", "steps": 2}),
    );
    assert_eq!(code, 200, "{v}");
    revert(&s, &id);
    let (code, v) = ledger.sync(&s, small("loads again"));
    assert_eq!(code, 200, "{v}");
    assert_eq!(metric(&s, "model_load_failures_total", &[]), 2.0);
    ledger.check(&s);
}

#[test]
fn safety_spike_blocks_passing_requests_at_the_chosen_stage() {
    let mut cfg = tiny_config("fault-safety");
    cfg.workers.count = 1;
    let s = start_admin(cfg);
    let mut ledger = Ledger::default();
    let blocks = |stage: &str| metric(&s, "safety_blocks_total", &[("stage", stage)]);
    assert_eq!(ledger.sync(&s, small("a quiet harbour")).0, 200);

    let pre = inject(
        &s,
        json!({"kind": "safety_spike", "stage": "pre", "extra_block_fraction": 1.0}),
        60_000,
    );
    for i in 0..3 {
        let (code, v) = ledger.sync(&s, small(&format!("a quiet harbour {i}")));
        assert_eq!(
            (code, v["error"]["code"].as_str()),
            (422, Some("content_blocked")),
            "{v}"
        );
        assert_eq!(v["error"]["stage"], "pre", "{v}");
        assert_ne!(v["error"]["category"], "csam", "{v}");
    }
    assert_eq!((blocks("pre"), blocks("post")), (3.0, 0.0));
    assert!(metric(&s, "prompt_block_rate", &[]) > 0.5);
    revert(&s, &pre);

    let post = inject(
        &s,
        json!({"kind": "safety_spike", "stage": "post", "extra_block_fraction": 1.0}),
        60_000,
    );
    for i in 0..2 {
        let (code, v) = ledger.sync(&s, small(&format!("a quiet harbour {i}")));
        assert_eq!(
            (code, v["error"]["stage"].as_str()),
            (422, Some("post")),
            "{v}"
        );
        let id = v["error"]["id"].as_str().unwrap();
        assert_eq!(
            get_json(&s, &format!("/v1/generations/{id}")).1["status"],
            "blocked"
        );
    }
    assert_eq!((blocks("pre"), blocks("post")), (3.0, 2.0));
    assert!(metric(&s, "image_block_rate", &[]) > 0.5);
    revert(&s, &post);

    let (code, v) = ledger.sync(&s, small("a quiet harbour again"));
    assert_eq!(code, 200, "{v}");
    assert_eq!((blocks("pre"), blocks("post")), (3.0, 2.0));
    ledger.check(&s);
}

/// (stage, histogram, its labels, passes per request with steps = 2).
type StageCase = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    f64,
);

#[test]
fn stage_latency_shows_in_each_stages_histogram_and_ends_with_the_revert() {
    let mut cfg = tiny_config("fault-latency");
    cfg.workers.count = 1;
    let s = start_admin(cfg);
    let mut ledger = Ledger::default();
    assert_eq!(ledger.sync(&s, small("warm")).0, 200);
    let stages: [StageCase; 7] = [
        ("queue", "queue_wait_seconds_sum", &[], 1.0),
        (
            "text_encoding",
            "text_encoding_seconds_sum",
            &[("model", "sdxl-mini")],
            1.0,
        ),
        ("denoise_step", "diffusion_step_time_seconds_sum", &[], 2.0),
        ("vae_decode", "vae_decode_time_seconds_sum", &[], 1.0),
        (
            "safety",
            "safety_check_time_seconds_sum",
            &[("stage", "pre")],
            1.0,
        ),
        (
            "safety",
            "safety_check_time_seconds_sum",
            &[("stage", "post")],
            1.0,
        ),
        ("upload", "cdn_upload_time_seconds_sum", &[], 1.0),
    ];
    for (stage, hist, labels, passes) in stages {
        let id = inject(
            &s,
            json!({"kind": "stage_latency", "stage": stage, "added_ms": 300, "jitter_ms": 50}),
            60_000,
        );
        let before = metric(&s, hist, labels);
        let started = Instant::now();
        let (code, v) = ledger.sync(&s, small(stage));
        assert_eq!(code, 200, "{stage}: {v}");
        let added = metric(&s, hist, labels) - before;
        assert!(
            added >= 0.25 * passes,
            "{stage}: {hist} grew by {added} s, want >= {} s",
            0.25 * passes
        );
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{stage}: client saw no delay"
        );
        revert(&s, &id);
        let before = metric(&s, hist, labels);
        assert_eq!(ledger.sync(&s, small(stage)).0, 200);
        let after = metric(&s, hist, labels) - before;
        assert!(
            after < 0.25 * passes,
            "{stage}: still slow after the revert ({after} s)"
        );
    }
    ledger.check(&s);
}

#[test]
fn worker_crash_recovers_checkpointed_jobs_fails_the_rest_and_the_pool_recovers() {
    let mut cfg = tiny_config("fault-crash");
    cfg.workers.count = 2;
    cfg.workers.checkpoint_every_steps = 3;
    cfg.batching.max_batch = 1;
    let s = start_admin(cfg);
    let mut ledger = Ledger::default();
    let pool = || metric(&s, "worker_pool_size", &[("tier", "fast")]);
    assert_eq!(pool(), 2.0);

    // A checkpointing video job: its worker dies mid-generation, it resumes on the other one.
    let (code, _, v) = generate(
        &s,
        json!({"prompt": "a river", "model": "video-mini", "steps": 60, "resolution": "256x256",
            "seed": 3, "tier": "relax", "mode": "async"}),
    );
    assert_eq!(code, 202, "{v}");
    let video = v["id"].as_str().unwrap().to_owned();
    let mut worker = String::new();
    eventually(
        Duration::from_secs(60),
        "the video job to checkpoint",
        || {
            let st = get_json(&s, &format!("/v1/generations/{video}")).1;
            worker = st["worker_id"].as_str().unwrap_or("").to_owned();
            st["progress"]["step"].as_u64().unwrap() >= 4
        },
    );
    let crash = inject(
        &s,
        json!({"kind": "worker_crash", "worker": worker, "restart_after_ms": 60000}),
        60_000,
    );
    eventually(Duration::from_secs(10), "the pool to shrink", || {
        pool() == 1.0
    });
    let done = wait_terminal(&s, &video, Duration::from_secs(120));
    ledger.record(200, &done);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_ne!(
        done["worker_id"].as_str().unwrap(),
        worker,
        "resumed elsewhere"
    );
    assert!(done["resumed_from_step"].as_u64().unwrap() >= 3, "{done}");
    assert_eq!(
        metric(&s, "checkpoint_recovery_total", &[("model", "video-mini")]),
        1.0
    );
    assert_eq!(pool(), 1.0, "the crashed worker waits out its 60 s backoff");
    // Reverting the crash brings the worker back long before that.
    revert(&s, &crash);
    eventually(
        Duration::from_secs(5),
        "the reverted crash's worker to return",
        || pool() == 2.0,
    );

    // A job without checkpoints fails explicitly when its worker dies.
    let (_, _, v) = generate(
        &s,
        json!({"prompt": "a long image", "steps": 150, "resolution": "256x256", "mode": "async"}),
    );
    let image = v["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), "the image job to run", || {
        let st = get_json(&s, &format!("/v1/generations/{image}")).1;
        worker = st["worker_id"].as_str().unwrap_or("").to_owned();
        st["status"] == "running" && st["progress"]["step"].as_u64().unwrap() >= 1
    });
    inject(
        &s,
        json!({"kind": "worker_crash", "worker": worker, "restart_after_ms": 300}),
        60_000,
    );
    let done = wait_terminal(&s, &image, Duration::from_secs(60));
    ledger.record(200, &done);
    assert_eq!(
        (done["status"].as_str(), done["error"]["code"].as_str()),
        (Some("failed"), Some("worker_lost")),
        "{done}"
    );
    // restart_after_ms brings it back while the fault is still listed.
    eventually(
        Duration::from_secs(5),
        "the worker to restart after 300 ms",
        || pool() == 2.0,
    );
    assert_eq!(
        metric(&s, "injected_faults_active", &[("kind", "worker_crash")]),
        1.0
    );
    revert_all(&s);
    assert_eq!(ledger.sync(&s, small("after the crashes")).0, 200);
    assert_eq!(metric(&s, "checkpoint_recovery_total", &[]), 1.0);
    ledger.check(&s);
}

/// Mean denoising step time (s) of the requests since `before` = (sum, count).
fn step_mean(s: &TestServer, before: (f64, f64)) -> (f64, (f64, f64)) {
    let m = scrape(s);
    let now = (
        metric_sum(&m, "diffusion_step_time_seconds_sum", &[]),
        metric_sum(&m, "diffusion_step_time_seconds_count", &[]),
    );
    ((now.0 - before.0) / (now.1 - before.1), now)
}

#[test]
fn gpu_throttle_slows_compute_and_heats_the_gpu_until_reverted() {
    let mut cfg = tiny_config("fault-throttle");
    cfg.workers.count = 1;
    cfg.batching.max_batch = 1;
    let s = start_admin(cfg);
    let mut ledger = Ledger::default();
    let body = |i: u64| json!({"prompt": "a kiln", "steps": 8, "seed": i});
    assert_eq!(ledger.sync(&s, body(0)).0, 200);
    let (_, mut mark) = step_mean(&s, (0.0, 0.0));
    for i in 1..=2 {
        assert_eq!(ledger.sync(&s, body(i)).0, 200);
    }
    let (nominal, m1) = step_mean(&s, mark);
    mark = m1;
    let temp = |s: &TestServer| metric(s, "gpu_temperature_celsius", &[("worker_id", "worker-0")]);
    let cold = temp(&s);

    let id = inject(&s, json!({"kind": "gpu_throttle", "factor": 4.0}), 60_000);
    for i in 3..=4 {
        let (code, v) = ledger.sync(&s, body(i));
        assert_eq!(code, 200, "{v}");
    }
    let (throttled, m2) = step_mean(&s, mark);
    mark = m2;
    assert!(
        throttled >= 2.0 * nominal,
        "throttled steps {throttled} s vs nominal {nominal} s"
    );
    let modelled = scrape(&s).contains("gpu_type=\"modelled-cpu\"");
    if modelled {
        assert!(temp(&s) > cold, "a throttled, busy GPU warms up");
    }
    revert(&s, &id);
    for i in 5..=6 {
        assert_eq!(ledger.sync(&s, body(i)).0, 200);
    }
    let (after, _) = step_mean(&s, mark);
    assert!(
        after < throttled / 1.5,
        "still throttled: {after} s vs {throttled} s"
    );
    ledger.check(&s);
}

#[test]
fn xid_is_reported_on_the_worker_and_cleared_by_the_revert() {
    let mut cfg = tiny_config("fault-xid");
    cfg.workers.count = 2;
    let s = start_admin(cfg);
    let mut ledger = Ledger::default();
    let w1 = [("worker_id", "worker-1")];
    let w0 = [("worker_id", "worker-0")];
    assert_eq!(metric(&s, "DCGM_FI_DEV_XID_ERRORS", &w1), 0.0);
    let id = inject(
        &s,
        json!({"kind": "xid", "worker": "worker-1", "code": 79}),
        60_000,
    );
    let m = scrape(&s);
    assert_eq!(metric_sum(&m, "DCGM_FI_DEV_XID_ERRORS", &w1), 79.0);
    assert_eq!(metric_sum(&m, "DCGM_FI_DEV_XID_ERRORS", &w0), 0.0);
    assert_eq!(metric_sum(&m, "gpu_xid_errors_total", &w1), 1.0);
    assert_eq!(metric_sum(&m, "gpu_xid_errors_total", &w0), 0.0);
    assert_eq!(ledger.sync(&s, small("still serving")).0, 200);
    revert(&s, &id);
    let m = scrape(&s);
    assert_eq!(metric_sum(&m, "DCGM_FI_DEV_XID_ERRORS", &w1), 0.0);
    assert_eq!(
        metric_sum(&m, "gpu_xid_errors_total", &w1),
        1.0,
        "a counter never goes back"
    );
    ledger.check(&s);
}

#[test]
fn queue_stall_holds_its_tier_and_lifts_on_expiry_without_a_revert() {
    let mut cfg = tiny_config("fault-stall");
    cfg.workers.count = 1;
    let s = start_admin(cfg);
    let mut ledger = Ledger::default();
    let id = inject(&s, json!({"kind": "queue_stall", "tier": "fast"}), 1_500);
    let injected = Instant::now();
    let mut queued = Vec::new();
    for i in 0..3 {
        let (code, _, v) = generate(
            &s,
            json!({"prompt": format!("held {i}"), "tier": "fast", "steps": 2, "mode": "async"}),
        );
        assert_eq!(code, 202, "{v}");
        queued.push(v["id"].as_str().unwrap().to_owned());
    }
    // Other tiers are served meanwhile.
    let (code, v) = ledger.sync(
        &s,
        json!({"prompt": "turbo passes", "tier": "turbo", "steps": 2}),
    );
    assert_eq!(code, 200, "{v}");
    if injected.elapsed() < Duration::from_millis(1_200) {
        let m = scrape(&s);
        assert_eq!(metric_sum(&m, "queue_depth", &[("tier", "fast")]), 3.0);
        assert!(metric_sum(&m, "queue_oldest_seconds", &[("tier", "fast")]) > 0.0);
        for id in &queued {
            assert_eq!(
                get_json(&s, &format!("/v1/generations/{id}")).1["status"],
                "queued"
            );
        }
    }
    // Nobody reverts: the server lifts the stall itself when it expires.
    for id in &queued {
        let done = wait_terminal(&s, id, Duration::from_secs(30));
        ledger.record(200, &done);
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    assert!(
        injected.elapsed() >= Duration::from_millis(1_400),
        "ran before the stall ended"
    );
    let (code, v) = admin_call(&s, reqwest::Method::GET, "/admin/faults", None, Some(TOKEN));
    assert_eq!((code, v), (200, json!({"faults": []})));
    let (code, _) = admin_call(
        &s,
        reqwest::Method::DELETE,
        &format!("/admin/faults/{id}"),
        None,
        Some(TOKEN),
    );
    assert_eq!(code, 404, "an expired fault is gone");
    let m = scrape(&s);
    assert_eq!(metric_sum(&m, "queue_depth", &[]), 0.0);
    assert_eq!(metric_sum(&m, "injected_faults_active", &[]), 0.0);
    ledger.check(&s);
}

const BIN: &str = env!("CARGO_BIN_EXE_reference-server");

/// Runs the binary with a tiny config and `args`/`envs` until it prints its listening line (or
/// exits); returns the child and the stderr lines read so far.
fn spawn_binary(
    name: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (std::process::Child, Vec<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = scratch(name);
    let mut cfg = tiny_config(name);
    cfg.data_dir = dir.join("data");
    let path = dir.join("server.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&cfg).unwrap()).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0"]);
    cmd.args(args).env_remove("REFERENCE_SERVER_ADMIN_TOKEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        lines.push(line.trim_end().to_owned());
        line.clear();
        if lines
            .last()
            .unwrap()
            .starts_with("reference-server listening on ")
        {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, lines)
}

fn stop(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let ok = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    out
}

#[test]
fn the_binary_guards_its_admin_api() {
    // A non-loopback admin address is a configuration error naming the field.
    let (mut child, lines) = spawn_binary(
        "admin-public",
        &["--admin-listen", "0.0.0.0:0"],
        &[("REFERENCE_SERVER_ADMIN_TOKEN", TOKEN)],
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{lines:?}");
    let text = lines.join("\n");
    assert!(
        text.contains("admin.listen") && text.contains("allow_non_loopback"),
        "{text}"
    );
    // So is an empty token.
    let (mut child, lines) =
        spawn_binary("admin-empty", &[], &[("REFERENCE_SERVER_ADMIN_TOKEN", "")]);
    assert_eq!(child.wait().unwrap().code(), Some(2), "{lines:?}");
    assert!(
        lines.join("\n").contains("REFERENCE_SERVER_ADMIN_TOKEN"),
        "{lines:?}"
    );

    // Without a token it says so and runs without the admin API.
    let (mut child, lines) = spawn_binary("admin-off", &[], &[]);
    assert!(
        lines.iter().any(|l| l.contains("admin API disabled")),
        "{lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("reference-server admin on")),
        "{lines:?}"
    );
    stop(&mut child);

    // With one: exactly one admin line, before the listening line, on loopback.
    let (mut child, lines) = spawn_binary(
        "admin-on",
        &["--admin-listen", "127.0.0.1:0"],
        &[("REFERENCE_SERVER_ADMIN_TOKEN", TOKEN)],
    );
    let admin: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("reference-server admin on "))
        .collect();
    assert_eq!(admin.len(), 1, "{lines:?}");
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("reference-server listening on "),
        "{lines:?}"
    );
    let base = admin[0]
        .strip_prefix("reference-server admin on ")
        .unwrap()
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let c = client();
    let body = json!({"fault": {"name": "xid79", "fault": {"kind": "xid", "worker": "worker-1", "code": 79}, "duration_ms": 60000}});
    let r = c
        .post(format!("{base}/admin/faults"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = c
        .delete(format!("{base}/admin/faults/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let logs = stop(&mut child);
    let events: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let xid = events
        .iter()
        .find(|e| e["event"] == "gpu_xid")
        .unwrap_or_else(|| panic!("no gpu_xid event: {logs}"));
    assert_eq!(
        (xid["worker_id"].as_str(), xid["xid"].as_u64()),
        (Some("worker-1"), Some(79)),
        "{xid}"
    );
    for event in ["fault_injected", "fault_reverted"] {
        assert!(
            events
                .iter()
                .any(|e| e["event"] == event && e["fault_id"] == id.as_str()),
            "no {event}: {logs}"
        );
    }
    assert!(!logs.contains(TOKEN), "the admin token was logged");
}
