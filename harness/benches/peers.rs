//! Requests per second on one core against one trivial endpoint: firedrill's closed model beside
//! wrk (Debian package `wrk`) and oha (`cargo install oha`), measured in the same run on the same
//! endpoint, reported as ratios. Load generators run on CPU 0, the endpoint on CPU 1; a missing
//! peer is reported, not faked. `-- --quick` runs 3 s per tool.

#[path = "common.rs"]
mod common;

use firedrill::load::{run_closed, Endpoint, EngineConfig, Event, HttpClient};
use firedrill::plan::{Plan, PlanInputs};
use firedrill::scenario::Scenario;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const CONNECTIONS: usize = 64;

fn firedrill_rps(addr: std::net::SocketAddr, secs: u64) -> f64 {
    let text = format!("version: 1\nname: peers\ntarget: {{url: {{base: 'http://{addr}'}}}}\nload:\n  model: closed\n  stages: [{{hold: {CONNECTIONS}, for: {secs}s}}]\n");
    let plan =
        Arc::new(Plan::compile(&Scenario::parse(&text).unwrap(), PlanInputs::default()).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    common::pin_to(0);
    let done = rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let cfg = EngineConfig {
            request_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            max_in_flight: CONNECTIONS,
            think_time: Duration::ZERO,
            fetch_image: false,
            server_timings: false,
        };
        let ep = Arc::new(Endpoint::new(format!("http://{addr}"), None));
        run_closed(
            plan,
            HttpClient::new(),
            ep,
            cfg,
            tokio::time::Instant::now(),
            tx,
            stop,
        )
        .await;
        let mut n = 0u64;
        while let Ok(e) = rx.try_recv() {
            if matches!(e, Event::Done(ref c) if c.outcome == firedrill::outcome::OutcomeClass::Ok)
            {
                n += 1;
            }
        }
        n
    });
    done as f64 / secs as f64
}

/// Runs a peer pinned to CPU 0 and extracts its requests per second from its output.
fn peer(name: &str, args: &[String], parse: fn(&str) -> Option<f64>) -> Result<f64, String> {
    let out = Command::new("taskset")
        .arg("-c")
        .arg("0")
        .arg(name)
        .args(args)
        .output()
        .map_err(|e| format!("{name}: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{name} failed: {text}"));
    }
    parse(&text).ok_or_else(|| format!("{name}: no rate in its output: {text}"))
}

fn parse_wrk(t: &str) -> Option<f64> {
    t.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse().ok())
}

fn parse_oha(t: &str) -> Option<f64> {
    t.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse().ok())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs: u64 = if quick { 3 } else { 10 };
    let addr = common::trivial_server(1);
    let url = format!("http://{addr}/v1/generations");
    // The peers send the same kind of request firedrill sends: a POST with a small JSON body.
    let body = r#"{"prompt":"a lighthouse at dusk, oil painting","seed":7,"mode":"sync"}"#;
    let lua = std::env::temp_dir().join(format!("firedrill-peers-{}.lua", std::process::id()));
    std::fs::write(
        &lua,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )
    .expect("write the wrk script");
    println!("one core each (load generator on CPU 0, endpoint on CPU 1), {CONNECTIONS} connections, {secs} s per tool");
    let fd = firedrill_rps(addr, secs);
    println!("firedrill (closed model, POST JSON): {fd:>10.0} req/s");
    let wrk = peer(
        "wrk",
        &[
            "-t1".into(),
            format!("-c{CONNECTIONS}"),
            "-s".into(),
            lua.display().to_string(),
            format!("-d{secs}s"),
            url.clone(),
        ],
        parse_wrk,
    );
    let oha = peer(
        "oha",
        &[
            "--no-tui".into(),
            "-c".into(),
            CONNECTIONS.to_string(),
            "-z".into(),
            format!("{secs}s"),
            "-m".into(),
            "POST".into(),
            "-T".into(),
            "application/json".into(),
            "-d".into(),
            body.into(),
            url.clone(),
        ],
        parse_oha,
    );
    let _ = std::fs::remove_file(&lua);
    for (name, r) in [("wrk (POST JSON)", wrk), ("oha (POST JSON)", oha)] {
        match r {
            Ok(rps) => println!(
                "{name:<34} {rps:>10.0} req/s   firedrill / {name} = {:.2}",
                fd / rps
            ),
            Err(e) => println!(
                "{name:<34} not measured: {}",
                e.lines().next().unwrap_or("")
            ),
        }
    }
}
