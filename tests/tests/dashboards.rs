//! The shipped Prometheus rule files are valid for Prometheus itself: `promtool check rules`
//! (Debian's `prometheus` package, installed by `.ci/run`) accepts every one of them.

use std::path::Path;
use std::process::Command;

#[test]
fn promtool_accepts_every_shipped_rule_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        // `slos.yaml` is an SLO spec and `*.test.yaml` are rule unit tests, not rule files.
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && !p.ends_with("slos.yaml")
                && !p.to_string_lossy().ends_with(".test.yaml")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let program = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    for f in files {
        let out = match Command::new(&program)
            .args(["check", "rules"])
            .arg(&f)
            .output()
        {
            Ok(o) => o,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("CI").is_none() =>
            {
                eprintln!("promtool not installed: skipped");
                return;
            }
            Err(e) => panic!("running promtool: {e}"),
        };
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {said}", f.display());
        assert!(said.contains("SUCCESS"), "{}: {said}", f.display());
    }
}
