//! Scenario files through the real `firedrill` binary: every malformed file under
//! `tests/scenarios/bad/` is rejected with exit 2 and a message naming the line and field its
//! first line declares (`# expect: LINE FIELD`; line 0 means "no line": the error is in a file the
//! scenario names); the shipped scenarios validate.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_firedrill");

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(sub)
}

#[test]
fn malformed_scenarios_are_rejected_with_line_and_field() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir("tests/scenarios/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "only {} malformed scenarios",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let expect = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .expect("first line declares the expectation");
        let (line, field) = expect.split_once(' ').unwrap();
        let out = Command::new(BIN).arg("validate").arg(f).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let name = f.file_name().unwrap().to_string_lossy();
        if out.status.code() != Some(2) {
            failures.push(format!(
                "{name}: exit {:?}, stderr {err}",
                out.status.code()
            ));
            continue;
        }
        if !out.stdout.is_empty() {
            failures.push(format!("{name}: printed a summary for a bad file"));
        }
        if line != "0" && !err.contains(&format!("{}:{line}:", f.display())) {
            failures.push(format!("{name}: expected line {line} in: {err}"));
        }
        if field != "." && !err.contains(&format!("field `{field}`")) {
            failures.push(format!("{name}: expected field `{field}` in: {err}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// Every malformed file, through `firedrill run` against a live listener: exit 2, and not one
/// connection reaches the listener.
#[test]
fn malformed_scenarios_send_nothing_when_run() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tmp =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bad-run-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for entry in std::fs::read_dir(dir("tests/scenarios/bad")).unwrap() {
        let f = entry.unwrap().path();
        let text = std::fs::read_to_string(&f)
            .unwrap()
            .replace("http://127.0.0.1:9", &url);
        let copy = tmp.join(f.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        let out = Command::new(BIN)
            .arg("run")
            .arg(&copy)
            .arg("--out")
            .arg(tmp.join("out"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        listener.accept().is_err(),
        "a malformed scenario sent a request"
    );
}

#[test]
fn shipped_scenarios_validate_and_print_a_summary() {
    for entry in std::fs::read_dir(dir("../scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let out = Command::new(BIN)
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("is valid"), "{stdout}");
        assert!(stdout.contains("expected requests"), "{stdout}");
    }
}

#[test]
fn the_schema_describes_the_format() {
    let out = Command::new(BIN).arg("schema").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let props = &v["properties"];
    for key in [
        "version",
        "name",
        "seed",
        "target",
        "load",
        "observe",
        "thresholds",
    ] {
        assert!(props.get(key).is_some(), "schema lacks {key}");
    }
    assert_eq!(
        v["additionalProperties"], false,
        "unknown fields must be refused by editors too"
    );
}

#[test]
fn a_missing_file_is_bad_input() {
    let out = Command::new(BIN)
        .args(["validate", "/nonexistent/scenario.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read scenario"));
}

/// The schema published in the repository for editors (`# yaml-language-server: $schema=...`)
/// is the one `firedrill schema` prints.
#[test]
fn the_published_schema_is_current() {
    let out = Command::new(BIN).arg("schema").output().unwrap();
    let want = String::from_utf8(out.stdout).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/scenario.schema.json");
    if std::env::var("UPDATE_DOCS").as_deref() == Ok("1") {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "scenarios/scenario.schema.json is out of date; run \
         `UPDATE_DOCS=1 cargo test -p firedrill --test scenarios published_schema` and commit it"
    );
}
