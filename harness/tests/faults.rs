//! Faults on the run's timeline through the real binary: command faults injected and reverted on
//! schedule, journaled in the record, and rolled back on Ctrl-C before the harness exits.

use reports::record::RunRecord;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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
fn scenario(dir: &Path, length: &str, fault_at: &str, fault_for: &str) -> (PathBuf, PathBuf, PathBuf) {
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
        assert!(started.elapsed() < Duration::from_secs(30), "the fault never went in");
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
