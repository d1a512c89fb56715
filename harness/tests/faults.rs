//! Faults on the run's timeline through the real binary: command faults injected and reverted on
//! schedule, journaled in the record, and rolled back on Ctrl-C before the harness exits.

use reports::record::RunRecord;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::tiny_server_config;

const BIN: &str = env!("CARGO_BIN_EXE_firedrill");

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A scenario against a closed port (every request a quick connection error) with one command
/// fault that creates `flag` and whose revert appends to `reverts`.
fn scenario(
    dir: &Path,
    length: &str,
    fault_at: &str,
    fault_for: &str,
) -> (PathBuf, PathBuf, PathBuf) {
    let flag = dir.join("flag");
    let reverts = dir.join("reverts");
    let text = format!(
        "version: 1\nname: cmd\ntarget: {{url: {{base: 'http://127.0.0.1:9'}}}}\nload:\n  arrival: {{process: constant}}\n  stages: [{{name: steady, hold: 5, for: {length}}}]\nfaults:\n  - name: drain\n    after: steady.start\n    at: {fault_at}\n    for: {fault_for}\n    command:\n      inject: touch '{}'\n      revert: rm '{}' && echo reverted >> '{}'\n      timeout: 5s\n",
        flag.display(),
        flag.display(),
        reverts.display()
    );
    let p = dir.join("scenario.yaml");
    std::fs::write(&p, text).unwrap();
    (p, flag, reverts)
}

#[test]
fn a_command_fault_runs_on_schedule_and_is_journaled() {
    let dir = tmp("schedule");
    let (s, flag, reverts) = scenario(&dir, "3s", "1s", "1s");
    let out = dir.join("out");
    let o = Command::new(BIN)
        .args(["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("fault drain inject"), "{stderr}");
    assert!(!flag.exists());
    assert_eq!(std::fs::read_to_string(&reverts).unwrap(), "reverted\n");
    let r = RunRecord::read(&out.join("record.json")).unwrap();
    let f = &r.faults[0];
    assert_eq!((f.name.as_str(), f.via.as_str()), ("drain", "command"));
    let (inj, rev) = (f.injected_s.unwrap(), f.reverted_s.unwrap());
    assert!((inj - 1.0).abs() < 0.3, "injected at {inj}");
    assert!((rev - 2.0).abs() < 0.3, "reverted at {rev}");
    let actions: Vec<&str> = r.fault_journal.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["inject", "revert"]);
    assert!(r.rollback.unwrap().verified);
    assert!(r.events.iter().any(|e| e.name == "drain.start"));
    assert!(r.events.iter().any(|e| e.name == "drain.end"));
}

#[test]
fn ctrl_c_mid_fault_reverts_it_before_exiting() {
    let dir = tmp("sigint");
    let (s, flag, reverts) = scenario(&dir, "60s", "0.5s", "50s");
    let out = dir.join("out");
    let mut child = Command::new(BIN)
        .args(["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !flag.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the fault never went in"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child with SIGINT.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    // By the time the harness has exited, the fault is out.
    assert!(!flag.exists(), "the fault outlived the harness");
    assert_eq!(std::fs::read_to_string(&reverts).unwrap(), "reverted\n");
    assert_eq!(status.code(), Some(3));
    assert!(started.elapsed() < Duration::from_secs(30));
    let r = RunRecord::read(&out.join("record.json")).unwrap();
    let last = r.fault_journal.last().unwrap();
    assert_eq!((last.action.as_str(), last.ok), ("rollback", true));
    assert!(r.rollback.unwrap().verified);
}

/// A trivial generation endpoint on its own thread; returns its base URL.
fn upstream() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .fallback(|| async { axum::Json(serde_json::json!({"status": "succeeded"})) });
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

#[test]
fn proxy_faults_go_through_the_fault_proxy_the_run_starts() {
    let dir = tmp("proxy");
    let base = upstream();
    // 1-2 s: 250 ms of added latency; 3-4 s: every answer a 500 from the path; then clean.
    let text = format!(
        "version: 1\nname: brownout\ntarget: {{url: {{base: '{base}'}}}}\nload:\n  arrival: {{process: constant}}\n  stages: [{{name: steady, hold: 20, for: 5s}}]\nfaults:\n  - {{name: slow, at: 1s, for: 1s, fault: {{kind: latency, ms: 250}}}}\n  - {{name: broken, at: 3s, for: 1s, fault: {{kind: http_error, status: 500, probability: 1.0}}}}\n"
    );
    let s = dir.join("brownout.yaml");
    std::fs::write(&s, text).unwrap();
    let out = dir.join("out");
    let o = Command::new(BIN)
        .args([
            "run",
            s.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--window",
            "1s",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    // The 500s fail no threshold (there are none): the run itself passes.
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("fault proxy"), "{stderr}");
    let r = RunRecord::read(&out.join("record.json")).unwrap();
    assert!(r.rollback.as_ref().unwrap().verified);
    assert!(r
        .faults
        .iter()
        .all(|f| f.via == "proxy" && f.reverted_s.is_some()));
    let overall = |w: usize| r.windows[w].overall().unwrap().unwrap();
    let p50 = |w: usize| overall(w).latency.p50_ms;
    // Window 1 is slow by the fault's 250 ms; windows 0 and 2 are not.
    assert!(p50(0) < 100.0 && p50(2) < 100.0, "{} {}", p50(0), p50(2));
    assert!(
        (240.0..400.0).contains(&p50(1)),
        "p50 under latency fault: {}",
        p50(1)
    );
    // Window 3 is all http errors; window 4 is clean again.
    let errors = |w: usize| overall(w).outcomes.get("http_error").copied().unwrap_or(0);
    assert!(errors(3) >= 15, "{:?}", overall(3).outcomes);
    assert_eq!(errors(4), 0, "{:?}", overall(4).outcomes);
    assert_eq!(errors(0) + errors(1) + errors(2), 0);
}

#[test]
fn a_server_fault_goes_in_and_out_through_the_admin_api() {
    let dir = tmp("server");
    // 1-2 s: the prompt check blocks everything; before and after it blocks nothing (no unsafe
    // prompts in the mix).
    let text = format!(
        "version: 1\nname: spike\ntarget:\n  reference_server:\n    workers: 1\n    config: {}\nload:\n  arrival: {{process: constant}}\n  mix: {{steps: {{'2': 1}}, prompts: {{unsafe_share: 0}}}}\n  stages: [{{name: steady, hold: 10, for: 4s}}]\nfaults:\n  - {{name: storm, at: 1s, for: 1s, fault: {{kind: safety_spike, stage: pre, extra_block_fraction: 1.0}}}}\n",
        tiny_server_config()
    );
    let s = dir.join("spike.yaml");
    std::fs::write(&s, text).unwrap();
    let out = dir.join("out");
    let o = Command::new(BIN)
        .args([
            "run",
            s.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--window",
            "1s",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let r = RunRecord::read(&out.join("record.json")).unwrap();
    let rb = r.rollback.as_ref().unwrap();
    assert!(rb.verified, "{rb:?}");
    let f = &r.faults[0];
    assert_eq!(
        (f.via.as_str(), f.kind.as_str()),
        ("server", "safety_spike")
    );
    assert!(
        r.fault_journal[0].detail.contains("id f-"),
        "{:?}",
        r.fault_journal
    );
    let blocked = |w: usize| {
        r.windows[w]
            .overall()
            .unwrap()
            .unwrap()
            .outcomes
            .get("blocked_pre")
            .copied()
            .unwrap_or(0)
    };
    // Requests intended in second 1 were all blocked; none before; none from second 3 on.
    assert!(blocked(1) >= 8, "window 1 blocked {}", blocked(1));
    assert_eq!(blocked(0) + blocked(3), 0);
    // The server's own counter saw them too (scraped into the record).
    assert!(r.series.to_string().contains("safety_blocks_total"));
}

/// Starts `firedrill reference-server` with an admin API; returns it with its API and admin URLs.
fn standalone_server(dir: &Path, token: &str) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let cfg = dir.join("server.yaml");
    let yaml = tiny_server_config();
    std::fs::write(&cfg, format!("{}\n", &yaml)).unwrap();
    let mut child = Command::new(BIN)
        .args(["reference-server", "--config", cfg.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("REFERENCE_SERVER_ADMIN_TOKEN", token)
        .env("REFERENCE_SERVER_DATA_DIR", dir.join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut api, mut admin) = (None, None);
    while api.is_none() || admin.is_none() {
        let line = lines.next().expect("the server said nothing").unwrap();
        if let Some(a) = line.strip_prefix("reference-server listening on ") {
            api = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("reference-server admin on ") {
            admin = Some(a.to_owned());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, api.unwrap(), admin.unwrap())
}

#[test]
fn a_killed_harness_leaves_its_faults_to_expire_on_the_target() {
    let dir = tmp("sigkill");
    let token = "sigkill-test-token";
    let (mut server, api, admin) = standalone_server(&dir, token);
    let text = format!(
        "version: 1\nname: orphan\ntarget:\n  url: {{base: '{api}', admin: '{admin}', admin_token_env: FD_TEST_ADMIN_TOKEN, api_key_env: FD_TEST_API_KEY}}\nload:\n  stages: [{{name: steady, hold: 2, for: 60s}}]\nfaults:\n  - {{name: stall, at: 0.2s, for: 4s, fault: {{kind: queue_stall}}}}\n"
    );
    let s = dir.join("orphan.yaml");
    std::fs::write(&s, text).unwrap();
    let mut harness = Command::new(BIN)
        .args([
            "run",
            s.to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
        ])
        .env("FD_TEST_ADMIN_TOKEN", token)
        .env("FD_TEST_API_KEY", "firedrill-dev")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = chaos::AdminClient::new(admin, token);
    let started = Instant::now();
    let injected_at = loop {
        let list = rt.block_on(client.list()).unwrap();
        if let Some(f) = list.faults.first() {
            break f.injected_at_ms;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the fault never went in"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // SIGKILL: no rollback runs. The fault stays until its own expiry, then the server drops it.
    harness.kill().unwrap();
    harness.wait().unwrap();
    assert_eq!(rt.block_on(client.list()).unwrap().faults.len(), 1);
    let gone_at = loop {
        if rt.block_on(client.list()).unwrap().is_empty() {
            break std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the fault never expired"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let lived = gone_at - injected_at;
    assert!(
        (4000..4500).contains(&lived),
        "the fault lived {lived} ms, asked 4000"
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_killed_harness_takes_its_embedded_server_with_it() {
    let dir = tmp("orphan-server");
    let text = format!(
        "version: 1\nname: orphan\ntarget:\n  reference_server:\n    workers: 1\n    config: {}\nload:\n  stages: [{{hold: 1, for: 60s}}]\n",
        tiny_server_config()
    );
    let s = dir.join("orphan.yaml");
    std::fs::write(&s, text).unwrap();
    let out = dir.join("out");
    let mut harness = Command::new(BIN)
        .args(["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The server's log names its address once it listens.
    let log = out.join("reference-server.log");
    let started = Instant::now();
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(a) = text
            .split("\"listen\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        {
            break a.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no server: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    harness.kill().unwrap();
    harness.wait().unwrap();
    let killed = Instant::now();
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the reference server outlived the killed harness"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_mid_server_fault_reverts_it_on_the_target_before_exiting() {
    let dir = tmp("sigint-server");
    let token = "sigint-test-token";
    let (mut server, api, admin) = standalone_server(&dir, token);
    let text = format!(
        "version: 1\nname: interrupted\ntarget:\n  url: {{base: '{api}', admin: '{admin}', admin_token_env: FD_TEST_ADMIN_TOKEN, api_key_env: FD_TEST_API_KEY}}\nload:\n  stages: [{{name: steady, hold: 2, for: 60s}}]\nfaults:\n  - {{name: hot, at: 0.2s, for: 50s, fault: {{kind: gpu_throttle, factor: 3}}}}\n  - {{name: xid, at: 0.2s, for: 50s, fault: {{kind: xid, code: 79}}}}\n"
    );
    let s = dir.join("interrupted.yaml");
    std::fs::write(&s, text).unwrap();
    let out = dir.join("out");
    let harness = Command::new(BIN)
        .args(["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("FD_TEST_ADMIN_TOKEN", token)
        .env("FD_TEST_API_KEY", "firedrill-dev")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = chaos::AdminClient::new(admin, token);
    let started = Instant::now();
    while rt.block_on(client.list()).unwrap().faults.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the faults never went in"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child with SIGINT.
    unsafe {
        libc::kill(harness.id() as libc::pid_t, libc::SIGINT);
    }
    let o = harness.wait_with_output().unwrap();
    // Checked the moment the harness is gone, far before the faults' own 50 s expiry.
    assert!(rt.block_on(client.list()).unwrap().is_empty());
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = RunRecord::read(&out.join("record.json")).unwrap();
    assert!(r.rollback.unwrap().verified);
    let rolled: Vec<&str> = r
        .fault_journal
        .iter()
        .filter(|e| e.action == "rollback" && e.ok)
        .map(|e| e.fault.as_str())
        .collect();
    assert_eq!(rolled.len(), 2, "{:?}", r.fault_journal);
    assert!(r.fault_journal.iter().any(|e| e.action == "verify" && e.ok));
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn the_proxy_command_injects_through_its_control_api_and_stops_clean_on_sigterm() {
    use std::io::BufRead;
    let base = upstream();
    let token = "proxy-cli-token";
    let mut proxy = Command::new(BIN)
        .args(["proxy", "--upstream", &base])
        .env("FIREDRILL_PROXY_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(proxy.stderr.take().unwrap()).lines();
    let (mut url, mut control) = (None, None);
    while url.is_none() || control.is_none() {
        let line = lines.next().expect("the proxy said nothing").unwrap();
        if let Some(a) = line.strip_prefix("firedrill proxy listening on ") {
            url = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("firedrill proxy control on ") {
            control = Some(a.to_owned());
        }
    }
    let (url, control) = (url.unwrap(), control.unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let c = firedrill::load::HttpClient::new();
            c.send(hyper::Method::GET, &format!("{url}/v1/x"), None, None)
                .await
                .unwrap()
                .status
        })
    };
    assert_eq!(status(&rt), 200);
    let client = chaos::AdminClient::new(control.clone(), token);
    let spec: chaos::FaultSpec = serde_json::from_str(
        r#"{"name": "boom", "fault": {"kind": "http_error", "status": 502, "probability": 1.0}, "duration_ms": 60000}"#,
    )
    .unwrap();
    rt.block_on(client.inject(&spec)).unwrap();
    assert_eq!(status(&rt), 502);
    // A wrong token is refused and changes nothing.
    let wrong = chaos::AdminClient::new(control, "nope");
    assert!(matches!(
        rt.block_on(wrong.revert_all()),
        Err(chaos::AdminError::Refused { status: 401, .. })
    ));
    assert_eq!(status(&rt), 502);
    // SAFETY: kill(2) on our own child with SIGTERM.
    unsafe {
        libc::kill(proxy.id() as libc::pid_t, libc::SIGTERM);
    }
    assert_eq!(proxy.wait().unwrap().code(), Some(0));
    for _ in lines {}
}

#[test]
fn a_terminal_ctrl_c_reaches_the_harness_alone_and_the_embedded_server_faults_come_out() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let dir = tmp("terminal");
    let text = format!(
        "version: 1\nname: terminal\ntarget:\n  reference_server:\n    workers: 1\n    config: {}\nload:\n  mix: {{steps: {{'2': 1}}}}\n  stages: [{{name: steady, hold: 2, for: 60s}}]\nfaults:\n  - {{name: stall, at: 0.5s, for: 50s, fault: {{kind: queue_stall, tier: relax}}}}\n",
        tiny_server_config()
    );
    let s = dir.join("terminal.yaml");
    std::fs::write(&s, text).unwrap();
    let out = dir.join("out");
    // The harness leads its own process group, as a shell's foreground job does.
    let mut harness = Command::new(BIN)
        .args(["run", s.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(harness.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let injected = line.contains("fault stall inject");
        said.push(line);
        if injected {
            break;
        }
    }
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    // A terminal's Ctrl-C: SIGINT to the whole foreground process group.
    // SAFETY: killpg(2) on the group our child leads.
    unsafe {
        libc::killpg(harness.id() as libc::pid_t, libc::SIGINT);
    }
    let status = harness.wait().unwrap();
    said.extend(rest.join().unwrap());
    assert_eq!(status.code(), Some(3), "{}", said.join("\n"));
    let r = RunRecord::read(&out.join("record.json")).unwrap();
    // The server was still there to take the revert, and said it lists nothing.
    let rb = r.rollback.unwrap();
    assert!(rb.verified, "{rb:?}");
    assert!(r
        .fault_journal
        .iter()
        .any(|e| e.fault == "server" && e.action == "verify" && e.ok));
}
