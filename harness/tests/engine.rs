//! The load engine against real servers on 127.0.0.1: coordinated omission is not hidden, the
//! open model keeps its rate, and the closed model keeps its users.

use axum::routing::post;
use axum::Router;
use firedrill::load::{run_closed, run_open, Completed, Endpoint, EngineConfig, Event, HttpClient};
use firedrill::outcome::OutcomeClass;
use firedrill::plan::{Plan, PlanInputs};
use firedrill::scenario::Scenario;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A trivial generation endpoint; request number `stall_at` sleeps `stall` first.
async fn server(stall_at: u64, stall: Duration) -> String {
    let n = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        "/v1/generations",
        post(move || {
            let n = n.clone();
            async move {
                if n.fetch_add(1, Ordering::SeqCst) == stall_at {
                    tokio::time::sleep(stall).await;
                }
                axum::Json(serde_json::json!({"status": "succeeded"}))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

fn plan(yaml_load: &str) -> Arc<Plan> {
    let text = format!(
        "version: 1\nname: t\ntarget: {{url: {{base: 'http://127.0.0.1:1'}}}}\nload:\n{yaml_load}"
    );
    let s = Scenario::parse(&text).unwrap();
    Arc::new(Plan::compile(&s, PlanInputs::default()).unwrap())
}

fn config(max_in_flight: usize) -> EngineConfig {
    EngineConfig {
        request_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(50),
        max_in_flight,
        think_time: Duration::ZERO,
        fetch_image: false,
        server_timings: false,
    }
}

async fn drive(
    plan: Arc<Plan>,
    base: String,
    cfg: EngineConfig,
    closed: bool,
) -> (Vec<Completed>, usize, usize) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_stop_tx, stop) = watch::channel(false);
    let ep = Arc::new(Endpoint::new(base, None));
    let start = tokio::time::Instant::now();
    if closed {
        run_closed(plan, HttpClient::new(), ep, cfg, start, tx, stop).await;
    } else {
        run_open(plan, HttpClient::new(), ep, cfg, start, tx, stop).await;
    }
    let (mut done, mut offered, mut caps) = (Vec::new(), 0, 0);
    while let Ok(e) = rx.try_recv() {
        match e {
            Event::Done(c) => done.push(c),
            Event::Offered { .. } => offered += 1,
            Event::CapHit { .. } => caps += 1,
        }
    }
    (done, offered, caps)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_latency_from_intended_time_not_in_service_time() {
    // 100 req/s for 10 s through one connection slot (as a wrk -c1 would); request 300 stalls 1 s.
    let base = server(300, Duration::from_secs(1)).await;
    let p = plan("  arrival: {process: constant}\n  stages: [{hold: 100, for: 10s}]\n");
    let (done, offered, caps) = drive(p, base, config(1), false).await;
    assert_eq!(offered, 1000);
    assert_eq!(done.len(), 1000);
    assert!(done.iter().all(|c| c.outcome == OutcomeClass::Ok));
    assert!(
        caps >= 90,
        "the stall must hold sends back ({caps} cap hits)"
    );
    let latency: Vec<f64> = done
        .iter()
        .map(|c| (c.finished - c.intended).as_secs_f64())
        .collect();
    let service: Vec<f64> = done
        .iter()
        .map(|c| (c.finished - c.sent).as_secs_f64())
        .collect();
    // Analytic: the stalled request and the ~100 intended during its second wait until it ends,
    // request k of them for (1 - k/100) s; the 10th largest of 1000 is about 0.91 s.
    let mut analytic: Vec<f64> = (0..100).map(|k| 1.0 - k as f64 / 100.0).collect();
    analytic.extend(std::iter::repeat_n(0.0, 900));
    let want = percentile(analytic, 99.0);
    let got = percentile(latency, 99.0);
    assert!(
        (got / want - 1.0).abs() < 0.10,
        "p99 from intended time {got:.3} s, analytic {want:.3} s"
    );
    let svc = percentile(service, 99.0);
    eprintln!("stall: p99 from intended {got:.3} s (analytic {want:.3} s), service time p99 {svc:.4} s, {caps} delayed sends");
    assert!(
        svc < 0.1,
        "service time p99 {svc:.3} s should not show the stall"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_keeps_its_rate_while_the_target_is_slow() {
    // Every request is slow, but sends do not wait for answers.
    let base = server(u64::MAX, Duration::ZERO).await;
    let p = plan("  arrival: {process: poisson}\n  stages: [{hold: 200, for: 3s}]\n");
    let expected = p.sends().count();
    let (done, offered, caps) = drive(p, base, config(10_000), false).await;
    assert_eq!(offered, expected);
    assert_eq!(done.len(), expected);
    assert_eq!(caps, 0);
    let delays: Vec<f64> = done
        .iter()
        .map(|c| (c.sent - c.intended).as_secs_f64())
        .collect();
    let p99 = percentile(delays, 99.0);
    assert!(p99 < 0.01, "send delay p99 {p99:.4} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_model_runs_its_users() {
    let base = server(u64::MAX, Duration::ZERO).await;
    let p = plan("  model: closed\n  stages: [{hold: 3, for: 1s}]\n");
    let mut cfg = config(100);
    cfg.think_time = Duration::from_millis(100);
    let (done, offered, _) = drive(p, base, cfg, true).await;
    assert_eq!(done.len(), offered);
    // 3 users, ~10 rounds each in 1 s with 100 ms think time.
    assert!((20..=33).contains(&done.len()), "{} requests", done.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_is_a_connection_error_and_a_slow_one_a_timeout() {
    let p = plan("  arrival: {process: constant}\n  stages: [{hold: 20, for: 0.5s}]\n");
    let (done, _, _) = drive(p.clone(), "http://127.0.0.1:9".into(), config(100), false).await;
    assert!(!done.is_empty());
    assert!(done
        .iter()
        .all(|c| c.outcome == OutcomeClass::ConnectionError));
    let base = server(0, Duration::from_secs(5)).await;
    let mut cfg = config(100);
    cfg.request_timeout = Duration::from_millis(300);
    let (done, _, _) = drive(p, base, cfg, false).await;
    assert_eq!(
        done.iter()
            .filter(|c| c.outcome == OutcomeClass::Timeout)
            .count(),
        1
    );
}

/// An async generation API whose jobs finish on their second poll; images exist only for odd
/// job ids, so even ones are successes the user cannot download. Counts image downloads.
async fn journey_server() -> (String, Arc<AtomicU64>) {
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::get;
    let next = Arc::new(AtomicU64::new(0));
    let polls = Arc::new(std::sync::Mutex::new(
        std::collections::HashMap::<u64, u32>::new(),
    ));
    let downloads = Arc::new(AtomicU64::new(0));
    let d = downloads.clone();
    let app = Router::new()
        .route(
            "/v1/generations",
            post(move || {
                let id = next.fetch_add(1, Ordering::SeqCst);
                async move {
                    (
                        StatusCode::ACCEPTED,
                        axum::Json(serde_json::json!({"id": id.to_string(), "status": "queued"})),
                    )
                }
            }),
        )
        .route(
            "/v1/generations/{id}",
            get(move |Path(id): Path<u64>| {
                let mut polls = polls.lock().unwrap();
                let n = polls.entry(id).or_default();
                *n += 1;
                let doc = if *n < 2 {
                    serde_json::json!({"id": id.to_string(), "status": "running"})
                } else {
                    serde_json::json!({"id": id.to_string(), "status": "succeeded",
                        "image_url": format!("/v1/images/{id}.png")})
                };
                async move { axum::Json(doc) }
            }),
        )
        .route(
            "/v1/images/{file}",
            get(move |Path(file): Path<String>| {
                d.fetch_add(1, Ordering::SeqCst);
                let id: u64 = file.trim_end_matches(".png").parse().unwrap();
                async move {
                    if id % 2 == 1 {
                        (StatusCode::OK, vec![0x89u8, b'P', b'N', b'G'])
                    } else {
                        (
                            StatusCode::NOT_FOUND,
                            b"{\"error\":{\"code\":\"not_found\"}}".to_vec(),
                        )
                    }
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), downloads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_submits_polls_and_downloads_the_image() {
    let (base, downloads) = journey_server().await;
    let p = plan("  model: closed\n  mix: {modes: {async: 1}}\n  stages: [{hold: 2, for: 1s}]\n");
    let mut cfg = config(100);
    cfg.poll_interval = Duration::from_millis(20);
    cfg.fetch_image = true;
    let (done, offered, _) = drive(p.clone(), base.clone(), cfg.clone(), true).await;
    assert_eq!(done.len(), offered);
    assert!(done.len() >= 6, "{} journeys", done.len());
    // Every finished job was downloaded; half the downloads fail, and those journeys fail.
    assert_eq!(downloads.load(Ordering::SeqCst), done.len() as u64);
    let ok = done
        .iter()
        .filter(|c| c.outcome == OutcomeClass::Ok)
        .count();
    let failed = done
        .iter()
        .filter(|c| c.outcome == OutcomeClass::HttpError)
        .count();
    assert_eq!(ok + failed, done.len());
    assert!(ok.abs_diff(failed) <= 2, "{ok} ok, {failed} failed");
    // Two polls of 20 ms at least: a journey's latency covers polling and the download.
    assert!(done
        .iter()
        .all(|c| c.finished - c.sent >= Duration::from_millis(40)));

    // Without fetch_image nothing is downloaded and every job is a success.
    cfg.fetch_image = false;
    let before = downloads.load(Ordering::SeqCst);
    let (done, _, _) = drive(p, base, cfg, true).await;
    assert_eq!(downloads.load(Ordering::SeqCst), before);
    assert!(done.iter().all(|c| c.outcome == OutcomeClass::Ok));
}
