//! The PromQL conformance gate: every script of Prometheus' test corpus
//! (`../shared/promqltest/*.test`) runs against the embedded engine, and the failures must be
//! exactly the known ones listed in `tests/promqltest-baseline.txt` (`file:line: reason`).
//!
//! A failure not in the baseline fails the gate, and so does a baselined case that no longer
//! fails, so the baseline only shrinks as the engine improves. Regenerate it with
//! `UPDATE_BASELINE=1 cargo test -p firedrill --test promqltest`.

use firedrill::rules::promqltest::{baseline, run_file, CaseResult, Counts};
use firedrill::rules::Engine;
use std::path::{Path, PathBuf};

const BASELINE: &str = "tests/promqltest-baseline.txt";
const SHOWN: usize = 40;

fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "cannot read the PromQL test corpus at {}: {e}",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    files
}

#[test]
fn promql_corpus_matches_the_baseline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("../../shared/promqltest");
    let engine = Engine::default();
    let mut cases: Vec<CaseResult> = Vec::new();
    let mut file_errors = Vec::new();
    for f in corpus_files(&dir) {
        match run_file(&f, &engine) {
            Ok(r) => {
                let c = r.counts();
                println!(
                    "{:<22} {:>4} of {:>4} in-scope cases pass ({} skipped)",
                    r.file,
                    c.passed,
                    c.in_scope(),
                    c.skipped
                );
                cases.extend(r.cases);
            }
            Err(e) => file_errors.push(e.to_string()),
        }
    }
    assert!(
        file_errors.is_empty(),
        "corpus files that cannot be read or parsed:\n{}",
        file_errors.join("\n")
    );
    let total = Counts::of(&cases);
    println!(
        "{} of {} in-scope cases pass ({} skipped as out of scope)",
        total.passed,
        total.in_scope(),
        total.skipped
    );

    let asserting: Vec<&CaseResult> = cases
        .iter()
        .filter(|c| c.annotation_expectations > 0)
        .collect();
    println!(
        "{} annotation expectations (expect warn/info/no_warn/no_info) checked in {} cases",
        asserting
            .iter()
            .map(|c| c.annotation_expectations)
            .sum::<usize>(),
        asserting.len()
    );

    let path = root.join(BASELINE);
    if std::env::var_os("UPDATE_BASELINE").is_some_and(|v| v == "1") {
        std::fs::write(&path, baseline::render(&cases))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        println!("wrote {} ({} known failures)", path.display(), total.failed);
        return;
    }
    let known = match std::fs::read_to_string(&path) {
        Ok(text) => baseline::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    let verdict = baseline::judge(&cases, &known);
    if verdict.ok() {
        return;
    }
    let mut msg = String::new();
    if !verdict.new_failures.is_empty() {
        msg.push_str(&format!(
            "{} case(s) fail that are not in the baseline:\n",
            verdict.new_failures.len()
        ));
        for id in verdict.new_failures.iter().take(SHOWN).map(|(id, _)| id) {
            if let Some(c) = cases.iter().find(|c| &c.id() == id) {
                msg.push_str(&format!("{c}\n"));
            }
        }
        if verdict.new_failures.len() > SHOWN {
            msg.push_str(&format!(
                "... and {} more\n",
                verdict.new_failures.len() - SHOWN
            ));
        }
    }
    if !verdict.fixed.is_empty() {
        msg.push_str(&format!(
            "{} baselined case(s) no longer fail (fixed, skipped or moved): {}{}\n",
            verdict.fixed.len(),
            verdict
                .fixed
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if verdict.fixed.len() > SHOWN {
                ", ..."
            } else {
                ""
            }
        ));
    }
    msg.push_str(&format!(
        "if this is intended, regenerate the baseline: UPDATE_BASELINE=1 cargo test -p firedrill \
         --test promqltest (rewrites harness/{BASELINE})"
    ));
    panic!("{msg}");
}

/// `firedrill promqltest FILE...`: failures, the summary line, and exit codes 0, 1 and 2.
#[test]
fn cli_reports_cases_and_exit_codes() {
    let dir = std::env::temp_dir().join(format!("firedrill-promqltest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write script");
        p
    };
    let good = write(
        "good.test",
        "load 1m\n  m{a=\"x\"} 1+1x2\n  h {{schema:0 sum:1 count:1}}\n\n\
         eval instant at 2m m\n  m{a=\"x\"} 3\n\n\
         eval range from 0 to 2m step 1m m * 2\n  {a=\"x\"} 2 4 6\n\n\
         eval instant at 0 h\n",
    );
    let bad_value = write("bad_value.test", "eval instant at 0 1 + 1\n  3\n");
    let malformed = write("malformed.test", "load 1m\n  m 1\n\nbogus command\n");
    let run = |files: &[&Path]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_firedrill"))
            .arg("promqltest")
            .args(files)
            .output()
            .expect("run firedrill");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, _) = run(&[&good]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.lines().last(), Some("2 passed, 0 failed, 1 skipped"));

    let (code, out, _) = run(&[&good, &bad_value]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("bad_value.test:1: FAIL 1 + 1"), "{out}");
    assert!(out.contains("expected scalar 3, got 2"), "{out}");
    assert_eq!(out.lines().last(), Some("2 passed, 1 failed, 1 skipped"));

    let (code, out, err) = run(&[&malformed, &good]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("malformed.test:4: invalid command"), "{err}");
    assert_eq!(out.lines().last(), Some("2 passed, 0 failed, 1 skipped"));

    let (code, _, err) = run(&[&dir.join("missing.test")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("missing.test: cannot read"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
