//! `firedrill test-rules` agrees with `promtool test rules` (Prometheus 2.42) on which rule
//! unit-test files pass: every fixture in `tests/test-rules/` and the shipped
//! `dashboards/prometheus/alerts.test.yaml` run under both, and each outcome must be the one the
//! fixture's name announces (`pass-*` passes, `fail-*` fails a test, `bad-*` cannot be parsed).
//!
//! promtool is required (CI installs Debian's `prometheus` package; `PROMTOOL` names another
//! binary). Without it the test fails, unless `FIREDRILL_SKIP_PROMETHEUS=1`, which checks our
//! side only.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_firedrill");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Pass,
    Fail,
    Bad,
}

impl Expect {
    fn of(path: &Path) -> Expect {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("fail-") {
            Expect::Fail
        } else if name.starts_with("bad-") {
            Expect::Bad
        } else {
            Expect::Pass
        }
    }

    /// `firedrill test-rules`' exit code for it.
    fn exit_code(self) -> i32 {
        match self {
            Expect::Pass => 0,
            Expect::Fail => 1,
            Expect::Bad => 2,
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The fixtures (top-level `*.yml` of `tests/test-rules`; their rule files live in `rules/`)
/// and the shipped rules' tests.
fn fixtures() -> Vec<PathBuf> {
    let dir = root().join("harness/tests/test-rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    files.push(root().join("dashboards/prometheus/alerts.test.yaml"));
    files
}

/// The promtool to run, or `None` when it is missing and FIREDRILL_SKIP_PROMETHEUS=1.
fn promtool() -> Option<OsString> {
    let program = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    match Command::new(&program).arg("--version").output() {
        Ok(_) => Some(program),
        Err(e) if std::env::var("FIREDRILL_SKIP_PROMETHEUS").as_deref() == Ok("1") => {
            eprintln!(
                "{}: {e}; FIREDRILL_SKIP_PROMETHEUS=1: promtool comparison skipped",
                program.to_string_lossy()
            );
            None
        }
        Err(e) => panic!(
            "cannot run {} ({e}): the agreement test needs promtool (Debian package \
             `prometheus`, or PROMTOOL=/path/to/promtool); set FIREDRILL_SKIP_PROMETHEUS=1 to \
             check firedrill alone",
            program.to_string_lossy()
        ),
    }
}

/// Exit code and everything printed.
fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str], file: &Path) -> (i32, String) {
    let out = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running on {}: {e}", file.display()));
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), said)
}

#[test]
fn the_fixtures_cover_passing_failing_and_invalid_files() {
    let files = fixtures();
    let count = |e: Expect| files.iter().filter(|f| Expect::of(f) == e).count();
    assert!(count(Expect::Pass) >= 4, "{files:?}");
    assert!(count(Expect::Fail) >= 6, "{files:?}");
    assert!(count(Expect::Bad) >= 1, "{files:?}");
}

#[test]
fn firedrill_and_promtool_agree_on_every_fixture() {
    let promtool = promtool();
    let mut wrong = Vec::new();
    for f in fixtures() {
        let expect = Expect::of(&f);
        let (ours, said) = run(BIN, &["test-rules"], &f);
        if ours != expect.exit_code() {
            wrong.push(format!(
                "{}: firedrill exited {ours}, expected {} ({expect:?}):\n{said}",
                f.display(),
                expect.exit_code()
            ));
        }
        let Some(promtool) = &promtool else { continue };
        let (theirs, said) = run(promtool, &["test", "rules"], &f);
        if (theirs == 0) != (ours == 0) || (theirs == 0) != (expect == Expect::Pass) {
            wrong.push(format!(
                "{}: promtool exited {theirs}, firedrill {ours}, expected {expect:?}:\n{said}",
                f.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn failures_read_like_promtool_and_name_the_test_group() {
    let dir = root().join("harness/tests/test-rules");
    let (code, said) = run(BIN, &["test-rules"], &dir.join("fail-wrong-labels.yml"));
    assert_eq!(code, 1, "{said}");
    for want in [
        "Unit Testing:",
        "FAILED:",
        "tests[0]: alertname: InstanceDown, time: 3m,",
        "exp: [",
        "Labels:{alertname=\"InstanceDown\", instance=\"a\", job=\"api\", severity=\"warning\"}",
        "got: [",
        "severity=\"critical\"",
        "1 files: 0 passed, 1 failed, 0 invalid",
    ] {
        assert!(said.contains(want), "missing {want:?} in:\n{said}");
    }
    let (code, said) = run(BIN, &["test-rules"], &dir.join("fail-wrong-value.yml"));
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("expr: \"job:errors:ratio_rate5m\", time: 6m,")
            && said.contains("exp: job:errors:ratio_rate5m{job=\"api\"} 0.5")
            && said.contains("got: job:errors:ratio_rate5m{job=\"api\"} 0.25"),
        "{said}"
    );
}

#[test]
fn unreadable_and_malformed_files_exit_2_and_say_where() {
    let dir = root().join("harness/tests/test-rules");
    let (code, said) = run(BIN, &["test-rules"], &dir.join("no-such-file.yml"));
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("no-such-file.yml: cannot read"), "{said}");
    let (code, said) = run(BIN, &["test-rules"], &dir.join("bad-unknown-field.yml"));
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains("bad-unknown-field.yml: line 12: field `tests[0].promql_expr_test[0].exp_samples[0].exp_value`"),
        "{said}"
    );
    // A passing file and a failing one: 1; with an unreadable one too: 2.
    let out = Command::new(BIN)
        .arg("test-rules")
        .arg(dir.join("pass-alert-after-for.yml"))
        .arg(dir.join("fail-wrong-labels.yml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(BIN)
        .arg("test-rules")
        .arg(dir.join("fail-wrong-labels.yml"))
        .arg(dir.join("no-such-file.yml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
