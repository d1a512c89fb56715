//! The HTTP API over real HTTP on 127.0.0.1: tiers, sync and async, cancel, determinism, and
//! bad input answered with its documented status and JSON error while others keep being served.

mod common;

use common::*;
use reference_server::config::DEV_API_KEY;
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn every_tier_generates_synchronously() {
    let s = start(tiny_config("tiers"));
    for tier in ["turbo", "fast", "relax"] {
        let (code, _, v) = generate(&s, req("a lighthouse on a cliff at dawn", tier));
        assert_eq!(code, 200, "{tier}: {v}");
        assert_eq!(v["status"], "succeeded");
        assert_eq!(v["tier"], tier);
        for stage in [
            "gateway",
            "prompt_processing",
            "queue_wait",
            "generation",
            "delivery",
            "total",
        ] {
            assert!(
                v["timings_ms"][stage].as_f64().is_some(),
                "{tier} lacks {stage}: {v}"
            );
        }
        let url = v["image_url"].as_str().unwrap();
        let (code, png) = get_bytes(&s, url);
        assert_eq!(code, 200);
        let dec = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        assert_eq!((dec.info().width, dec.info().height), (64, 64));
    }
    // Default steps come from the tier.
    let (code, _, v) = generate(&s, json!({"prompt": "a red bicycle", "tier": "turbo"}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["steps"], 8);
    // Video frames sit side by side.
    let (code, _, v) = generate(
        &s,
        json!({"prompt": "waves", "model": "video-mini", "steps": 2}),
    );
    assert_eq!(code, 200, "{v}");
    let (_, png) = get_bytes(&s, v["image_url"].as_str().unwrap());
    let dec = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    assert_eq!((dec.info().width, dec.info().height), (128, 64));
}

#[test]
fn async_jobs_report_progress_and_finish() {
    let s = start(tiny_config("async"));
    let mut body = req("a mountain village in winter", "fast");
    body["mode"] = json!("async");
    body["steps"] = json!(40);
    let (code, headers, v) = generate(&s, body);
    assert_eq!(code, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        headers["location"],
        format!("/v1/generations/{id}").as_str()
    );
    assert!(matches!(
        v["status"].as_str(),
        Some("queued") | Some("running")
    ));
    let done = wait_terminal(&s, &id, Duration::from_secs(60));
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], json!({"step": 40, "total": 40}));
    let (code, bytes) = get_bytes(&s, done["image_url"].as_str().unwrap());
    assert_eq!(code, 200);
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn cancel_running_and_queued_jobs() {
    let mut cfg = tiny_config("cancel");
    cfg.workers.count = 1;
    cfg.batching.max_batch = 1;
    let s = start(cfg);
    let mut long = req("a slow painting of the sea", "relax");
    long["mode"] = json!("async");
    long["steps"] = json!(150);
    long["resolution"] = json!("256x256");
    let (_, _, a) = generate(&s, long.clone());
    long["seed"] = json!(8);
    let (_, _, b) = generate(&s, long);
    let (a, b) = (
        a["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    );
    // Wait until `a` runs, so `b` is queued behind it on the only worker.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while get_json(&s, &format!("/v1/generations/{a}")).1["status"] != "running" {
        assert!(std::time::Instant::now() < until);
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, queued) = get_json(&s, &format!("/v1/generations/{b}"));
    assert_eq!(queued["status"], "queued", "{queued}");
    assert_eq!(queued["queue_position"], 0);
    for id in [&b, &a] {
        let r = client()
            .delete(s.url(&format!("/v1/generations/{id}")))
            .bearer_auth(DEV_API_KEY)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().unwrap();
        assert_eq!(v["status"], "cancelled");
        assert_eq!(
            wait_terminal(&s, id, Duration::from_secs(5))["status"],
            "cancelled"
        );
    }
    // Cancelling again conflicts; the image never appears.
    let r = client()
        .delete(s.url(&format!("/v1/generations/{a}")))
        .bearer_auth(DEV_API_KEY)
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(get_bytes(&s, &format!("/v1/images/{a}.png")).0, 404);
    // The worker is free again and serves the next request.
    let (code, _, v) = generate(&s, req("after cancel", "turbo"));
    assert_eq!(code, 200, "{v}");
    let m = scrape(&s);
    assert_eq!(
        metric_sum(&m, "job_cancellation_total", &[("tier", "relax")]),
        2.0
    );
    assert_eq!(
        metric_sum(&m, "requests_total", &[("status", "cancelled")]),
        2.0
    );
}

#[test]
fn same_request_and_seed_give_the_same_png() {
    let s = start(tiny_config("determinism"));
    let fetch = |seed: u64, model: &str| {
        let (code, _, v) = generate(
            &s,
            json!({"prompt": "a blue teapot", "seed": seed, "steps": 6, "model": model}),
        );
        assert_eq!(code, 200, "{v}");
        get_bytes(&s, v["image_url"].as_str().unwrap()).1
    };
    for model in ["sdxl-mini", "flux-mini"] {
        let a = fetch(42, model);
        assert_eq!(a, fetch(42, model), "{model}: same seed, different bytes");
        assert_ne!(a, fetch(43, model), "{model}: different seed, same bytes");
    }
    // Batched or alone: the same bytes.
    let solo = fetch(5, "sdxl-mini");
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let url = s.url("/v1/generations");
            std::thread::spawn(move || {
                let body = json!({"prompt": "a blue teapot", "seed": if i == 0 { 5 } else { 100 + i }, "steps": 6});
                let v: Value = client().post(url).bearer_auth(DEV_API_KEY).json(&body).send().unwrap().json().unwrap();
                v
            })
        })
        .collect();
    let results: Vec<Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let batched = get_bytes(&s, results[0]["image_url"].as_str().unwrap()).1;
    assert_eq!(solo, batched);
}

/// Each bad request gets its documented status and JSON error code.
#[test]
fn bad_input_is_refused_with_json_errors_while_others_are_served() {
    let mut cfg = tiny_config("bad-input");
    let mut limited = cfg.api_keys[0].clone();
    limited.key = "turbo-less-key".into();
    limited.user = "limited".into();
    limited.tiers = vec![reference_server::types::Tier::Relax];
    cfg.api_keys.push(limited);
    let s = start(cfg);

    // A good request keeps running in the background throughout.
    let good_url = s.url("/v1/generations");
    let good = std::thread::spawn(move || {
        let body = json!({"prompt": "a quiet harbour", "steps": 60, "tier": "relax", "resolution": "128x128"});
        let r = client()
            .post(good_url)
            .bearer_auth(DEV_API_KEY)
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    });

    let post = |auth: Option<&str>, ctype: &str, body: String| {
        let mut rb = client()
            .post(s.url("/v1/generations"))
            .header("content-type", ctype)
            .body(body);
        if let Some(a) = auth {
            rb = rb.header("authorization", a);
        }
        let r = rb.send().unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().unwrap_or(Value::Null);
        (status, v)
    };
    let dev = format!("Bearer {DEV_API_KEY}");
    let json_ct = "application/json";
    let ok_body = |extra: Value| {
        let mut b = json!({"prompt": "a cat", "steps": 2});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string()
    };
    let cases: Vec<(&str, (u16, Value), u16, &str)> = vec![
        (
            "malformed JSON",
            post(Some(&dev), json_ct, "{\"prompt\": ".into()),
            400,
            "invalid_json",
        ),
        (
            "not an object",
            post(Some(&dev), json_ct, "[1,2]".into()),
            400,
            "invalid_request",
        ),
        (
            "missing prompt",
            post(Some(&dev), json_ct, "{\"steps\": 3}".into()),
            400,
            "invalid_request",
        ),
        (
            "unknown field",
            post(Some(&dev), json_ct, ok_body(json!({"cfg_scale": 7}))),
            400,
            "invalid_request",
        ),
        (
            "unknown tier",
            post(Some(&dev), json_ct, ok_body(json!({"tier": "gold"}))),
            400,
            "invalid_tier",
        ),
        (
            "unknown model",
            post(Some(&dev), json_ct, ok_body(json!({"model": "dalle-9"}))),
            400,
            "unknown_model",
        ),
        (
            "zero steps",
            post(Some(&dev), json_ct, ok_body(json!({"steps": 0}))),
            400,
            "invalid_steps",
        ),
        (
            "too many steps",
            post(Some(&dev), json_ct, ok_body(json!({"steps": 100000}))),
            400,
            "invalid_steps",
        ),
        (
            "negative steps",
            post(Some(&dev), json_ct, ok_body(json!({"steps": -3}))),
            400,
            "invalid_steps",
        ),
        (
            "steps as text",
            post(Some(&dev), json_ct, ok_body(json!({"steps": "ten"}))),
            400,
            "invalid_request",
        ),
        (
            "seed as text",
            post(Some(&dev), json_ct, ok_body(json!({"seed": "abc"}))),
            400,
            "invalid_request",
        ),
        (
            "bad resolution",
            post(Some(&dev), json_ct, ok_body(json!({"resolution": "big"}))),
            400,
            "invalid_resolution",
        ),
        (
            "odd resolution",
            post(
                Some(&dev),
                json_ct,
                ok_body(json!({"resolution": "100x100"})),
            ),
            400,
            "invalid_resolution",
        ),
        (
            "huge resolution",
            post(
                Some(&dev),
                json_ct,
                ok_body(json!({"resolution": "8192x8192"})),
            ),
            400,
            "invalid_resolution",
        ),
        (
            "unknown mode",
            post(Some(&dev), json_ct, ok_body(json!({"mode": "later"}))),
            400,
            "invalid_mode",
        ),
        (
            "empty prompt",
            post(Some(&dev), json_ct, ok_body(json!({"prompt": "   "}))),
            400,
            "invalid_prompt",
        ),
        (
            "oversized prompt",
            post(
                Some(&dev),
                json_ct,
                ok_body(json!({"prompt": "word ".repeat(500)})),
            ),
            413,
            "prompt_too_long",
        ),
        (
            "oversized body",
            post(
                Some(&dev),
                json_ct,
                format!("{{\"prompt\": \"{}\"}}", "x".repeat(70_000)),
            ),
            413,
            "body_too_large",
        ),
        (
            "wrong content type",
            post(Some(&dev), "text/plain", ok_body(json!({}))),
            415,
            "unsupported_media_type",
        ),
        (
            "missing key",
            post(None, json_ct, ok_body(json!({}))),
            401,
            "unauthenticated",
        ),
        (
            "wrong key",
            post(Some("Bearer not-a-real-key"), json_ct, ok_body(json!({}))),
            401,
            "unauthenticated",
        ),
        (
            "not bearer",
            post(Some("Basic Zm9vOmJhcg=="), json_ct, ok_body(json!({}))),
            401,
            "unauthenticated",
        ),
        (
            "tier not entitled",
            post(
                Some("Bearer turbo-less-key"),
                json_ct,
                ok_body(json!({"tier": "turbo"})),
            ),
            403,
            "tier_not_allowed",
        ),
    ];
    assert!(cases.len() >= 12);
    for (name, (status, body), want_status, want_code) in &cases {
        assert_eq!(status, want_status, "{name}: {body}");
        assert_eq!(body["error"]["code"], *want_code, "{name}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {body}"
        );
    }
    // Routes and ids.
    let (code, v) = get_json(&s, "/v1/generations/gen-doesnotexist");
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (code, v) = get_json(&s, "/v1/nothing-here");
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let r = client()
        .put(s.url("/v1/generations"))
        .bearer_auth(DEV_API_KEY)
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().unwrap()["error"]["code"],
        "method_not_allowed"
    );
    let (code, _) = get_bytes(&s, "/v1/images/..%2Fetc%2Fpasswd.png");
    assert_eq!(code, 404);

    let (code, v) = good.join().unwrap();
    assert_eq!(code, 200, "the good request suffered: {v}");
    assert_eq!(v["status"], "succeeded");
}

#[test]
fn jobs_are_private_to_their_key() {
    let mut cfg = tiny_config("privacy");
    let mut other = cfg.api_keys[0].clone();
    other.key = "another-tenant-key".into();
    other.user = "tenant-b".into();
    cfg.api_keys.push(other);
    let s = start(cfg);
    let (code, _, v) = generate(&s, req("a private sketch", "fast"));
    assert_eq!(code, 200);
    let id = v["id"].as_str().unwrap();
    let r = client()
        .get(s.url(&format!("/v1/generations/{id}")))
        .bearer_auth("another-tenant-key")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .get(s.url(&format!("/v1/images/{id}.png")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let mut cfg = tiny_config("ratelimit");
    cfg.api_keys[0].rate_limit_per_second = 0.5;
    cfg.api_keys[0].burst = 2;
    let s = start(cfg);
    let mut codes = Vec::new();
    for _ in 0..4 {
        let mut b = req("a pebble", "turbo");
        b["mode"] = json!("async");
        let (code, headers, v) = generate(&s, b);
        if code == 429 {
            assert_eq!(v["error"]["code"], "rate_limited");
            let ra: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=2).contains(&ra), "retry-after {ra}");
        }
        codes.push(code);
    }
    assert_eq!(codes, vec![202, 202, 429, 429]);
}

#[test]
fn health_readiness_and_traceparent() {
    let s = start(tiny_config("health"));
    assert_eq!(get_json(&s, "/healthz"), (200, json!({"status": "ok"})));
    assert_eq!(get_json(&s, "/readyz"), (200, json!({"status": "ready"})));
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = client()
        .post(s.url("/v1/generations"))
        .bearer_auth(DEV_API_KEY)
        .header("traceparent", tp)
        .json(&req("a kite", "turbo"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let back = r.headers()["traceparent"].to_str().unwrap();
    assert!(
        back.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{back}"
    );
}
