//! Rate accuracy of the open model: 2000 requests per second for 20 s (constant arrivals) to a
//! trivial loopback endpoint; per 5 s window, achieved against offered, and the send delay p99.
//! Harness and endpoint run on separate pinned cores. `-- --quick` runs 5 s.

#[path = "common.rs"]
mod common;

use firedrill::load::{run_open, Endpoint, EngineConfig, Event, HttpClient};
use firedrill::plan::{Plan, PlanInputs};
use firedrill::scenario::Scenario;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 5 } else { 20 };
    let rate = 2000;
    let addr = common::trivial_server(1);
    let text = format!("version: 1\nname: rate\ntarget: {{url: {{base: 'http://{addr}'}}}}\nload:\n  arrival: {{process: constant}}\n  stages: [{{hold: {rate}, for: {secs}s}}]\n");
    let plan =
        Arc::new(Plan::compile(&Scenario::parse(&text).unwrap(), PlanInputs::default()).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(|| common::pin_to(0))
        .build()
        .unwrap();
    common::pin_to(0);
    let events = rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let cfg = EngineConfig {
            request_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            max_in_flight: 10_000,
            think_time: Duration::ZERO,
            fetch_image: false,
            server_timings: false,
        };
        let ep = Arc::new(Endpoint::new(format!("http://{addr}"), None));
        let start = tokio::time::Instant::now();
        run_open(plan, HttpClient::new(), ep, cfg, start, tx, stop).await;
        let mut v = Vec::new();
        while let Ok(e) = rx.try_recv() {
            v.push(e);
        }
        v
    });
    let window = 5.0;
    let n = (secs as f64 / window) as usize;
    let mut offered = vec![0u64; n];
    let mut sent = vec![0u64; n];
    let mut delays = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut errors = 0;
    for e in &events {
        match e {
            Event::Offered { at } => {
                offered[((at.as_secs_f64() / window) as usize).min(n - 1)] += 1
            }
            Event::Done(c) => {
                sent[((c.sent.as_secs_f64() / window) as usize).min(n - 1)] += 1;
                delays
                    .record(((c.sent - c.intended).as_micros() as u64).max(1))
                    .unwrap();
                if c.outcome != firedrill::outcome::OutcomeClass::Ok {
                    errors += 1;
                }
            }
            Event::CapHit { .. } => {}
        }
    }
    println!("open model, constant {rate} req/s for {secs} s to a trivial endpoint on 127.0.0.1 (harness on CPU 0, endpoint on CPU 1)");
    println!(
        "{:>8} {:>10} {:>10} {:>10}",
        "window", "offered/s", "sent/s", "deviation"
    );
    let mut worst: f64 = 0.0;
    for i in 0..n {
        let (o, s) = (offered[i] as f64 / window, sent[i] as f64 / window);
        let dev = (s / o - 1.0) * 100.0;
        worst = worst.max(dev.abs());
        println!(
            "{:>7.0}s {o:>10.1} {s:>10.1} {dev:>9.2}%",
            i as f64 * window
        );
    }
    println!("worst window deviation {worst:.2}% (goal <= 1%); non-ok answers {errors}");
    println!(
        "send delay p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (goal p99 <= 2 ms)",
        delays.value_at_quantile(0.5) as f64 / 1e3,
        delays.value_at_quantile(0.99) as f64 / 1e3,
        delays.max() as f64 / 1e3
    );
}
