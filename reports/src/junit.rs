//! `junit.xml`: a run's checks as JUnit test cases, so a CI system lists them beside unit tests.
//!
//! One test case per threshold, one per expectation (alert expectations, SLO budgets, engine
//! agreement, Alertmanager delivery, unexpected alerts), and one for the fault rollback when the
//! drill injected faults. A failed check carries its reason: the one-line detail as the failure's
//! `message`, and the requirement, detail and the rule's why-not explanation as its text.
//!
//! Everything from the record is XML-escaped, and characters XML 1.0 cannot carry at all (most
//! control characters) are replaced, so a scenario or label with `<`, `&` or quotes can neither
//! break the document nor add elements to it.

use crate::record::{ExpectationVerdict, RunRecord, ThresholdWindow};
use std::fmt::Write as _;

/// One test case, before it is written as XML.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Grouping shown by CI systems (`firedrill.<scenario>.threshold`, ...).
    pub classname: String,
    /// The check's name.
    pub name: String,
    /// `None` when the check held; else the failure.
    pub failure: Option<Failure>,
}

/// Why a test case failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// One line: what happened.
    pub message: String,
    /// The failure's kind (`threshold`, `alert`, `slo`, ...).
    pub kind: String,
    /// The full reason: requirement, what happened, explanation lines.
    pub text: String,
}

/// The kind of an expectation verdict. The record keeps them in one list; their wording tells
/// them apart (see `harness/src/rules/{expect,agree}.rs` and `harness/src/slo/measure.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectationKind {
    /// An alert expectation of the scenario (fires, resolves, state at, never).
    Alert,
    /// An SLO's error-budget expectation (`alert` is `SLO <name>`).
    Slo,
    /// The embedded engine against a real Prometheus (`engine: both`).
    EngineAgreement,
    /// An alert delivered through Alertmanager.
    Delivery,
    /// An alert that fired with no expectation naming it.
    Unexpected,
}

impl ExpectationKind {
    /// Classifies a verdict.
    pub fn of(e: &ExpectationVerdict) -> ExpectationKind {
        if e.alert.starts_with("SLO ") {
            ExpectationKind::Slo
        } else if e.description.contains("under both engines") {
            ExpectationKind::EngineAgreement
        } else if e.description.contains("through Alertmanager") {
            ExpectationKind::Delivery
        } else if e.description.starts_with("no alert fires unexpected") {
            ExpectationKind::Unexpected
        } else {
            ExpectationKind::Alert
        }
    }

    /// A short machine-friendly label (`alert`, `slo`, `engine_agreement`, ...).
    pub fn label(self) -> &'static str {
        match self {
            ExpectationKind::Alert => "alert",
            ExpectationKind::Slo => "slo",
            ExpectationKind::EngineAgreement => "engine_agreement",
            ExpectationKind::Delivery => "alertmanager",
            ExpectationKind::Unexpected => "unexpected_alert",
        }
    }

    /// A heading for people.
    pub fn heading(self) -> &'static str {
        match self {
            ExpectationKind::Alert => "Alert expectations",
            ExpectationKind::Slo => "SLO budgets",
            ExpectationKind::EngineAgreement => "Engine agreement",
            ExpectationKind::Delivery => "Alertmanager delivery",
            ExpectationKind::Unexpected => "Unexpected alerts",
        }
    }
}

/// The name an expectation's test case gets: the subject, then what was expected.
pub fn expectation_name(e: &ExpectationVerdict) -> String {
    match ExpectationKind::of(e) {
        ExpectationKind::Slo => format!("{} {}", e.alert, e.description),
        _ => format!("alert {} {}", e.alert, e.description),
    }
}

/// The run's checks as test cases, in the record's order: thresholds, expectations, rollback.
pub fn cases(r: &RunRecord) -> Vec<Case> {
    let class = |kind: &str| format!("firedrill.{}.{kind}", r.scenario.name);
    let mut out = Vec::new();
    for t in &r.thresholds {
        let failure = (!t.passed).then(|| {
            let observed = t
                .observed
                .map_or("nothing to judge".to_owned(), |v| format!("{v} {}", t.unit));
            let over = match &t.window {
                ThresholdWindow::Run => "the whole run".to_owned(),
                ThresholdWindow::Sliding {
                    length_s,
                    worst_start_s,
                } => match worst_start_s {
                    Some(s) => format!("sliding {length_s} s windows (worst from {s:.1} s)"),
                    None => format!("sliding {length_s} s windows"),
                },
            };
            Failure {
                message: t.detail.clone(),
                kind: "threshold".into(),
                text: format!(
                    "requires: {}\nobserved: {observed} (limit {} {}) over {over}\n{}",
                    t.description, t.limit, t.unit, t.detail
                ),
            }
        });
        out.push(Case {
            classname: class("threshold"),
            name: t.name.clone(),
            failure,
        });
    }
    for e in &r.expectations {
        let kind = ExpectationKind::of(e);
        let failure = (!e.passed).then(|| {
            let mut text = format!("expected: {}\nhappened: {}", e.description, e.detail);
            if !e.explanation.is_empty() {
                text.push_str("\nwhy:");
                for line in &e.explanation {
                    text.push_str("\n  ");
                    text.push_str(line);
                }
            }
            Failure {
                message: e.detail.clone(),
                kind: kind.label().into(),
                text,
            }
        });
        out.push(Case {
            classname: class(kind.label()),
            name: expectation_name(e),
            failure,
        });
    }
    if let Some(rb) = &r.rollback {
        let failure = (!rb.verified).then(|| Failure {
            message: if rb.problems.is_empty() {
                "rollback not verified".into()
            } else {
                rb.problems.join("; ")
            },
            kind: "rollback".into(),
            text: format!(
                "every fault reverted and every target listing none afterwards\nproblems:\n{}",
                rb.problems
                    .iter()
                    .map(|p| format!("  {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        });
        out.push(Case {
            classname: class("faults"),
            name: "faults rolled back and verified".into(),
            failure,
        });
    }
    out
}

/// Renders `junit.xml` for a record.
pub fn render(r: &RunRecord) -> String {
    let cases = cases(r);
    let tests = cases.len();
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let time = if r.duration_s.is_finite() && r.duration_s >= 0.0 {
        r.duration_s
    } else {
        0.0
    };
    let mut x = String::new();
    let _ = writeln!(x, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        x,
        r#"<testsuites name="firedrill" tests="{tests}" failures="{failures}" errors="0" skipped="0" time="{time:.3}">"#
    );
    let _ = writeln!(
        x,
        r#"  <testsuite name="{}" tests="{tests}" failures="{failures}" errors="0" skipped="0" time="{time:.3}" timestamp="{}">"#,
        attr(&format!("firedrill.{}", r.scenario.name)),
        attr(&r.started_at)
    );
    let _ = writeln!(x, "    <properties>");
    let mut props = vec![
        ("scenario", r.scenario.name.clone()),
        ("scenario_file", r.scenario.file.clone()),
        ("seed", r.scenario.seed.to_string()),
        ("target", r.target.url.clone()),
        ("requests", r.totals.completed.to_string()),
        ("trustworthy", r.trust.trustworthy.to_string()),
        ("exit_code", r.verdict.exit_code.to_string()),
    ];
    if !r.trust.trustworthy {
        props.push(("untrustworthy_because", r.trust.reasons.join("; ")));
    }
    for (k, v) in props {
        let _ = writeln!(
            x,
            r#"      <property name="{}" value="{}"/>"#,
            attr(k),
            attr(&v)
        );
    }
    let _ = writeln!(x, "    </properties>");
    for c in &cases {
        let head = format!(
            r#"    <testcase classname="{}" name="{}" time="0""#,
            attr(&c.classname),
            attr(&c.name)
        );
        match &c.failure {
            None => {
                let _ = writeln!(x, "{head}/>");
            }
            Some(f) => {
                let _ = writeln!(x, "{head}>");
                let _ = writeln!(
                    x,
                    r#"      <failure message="{}" type="{}">{}</failure>"#,
                    attr(&f.message),
                    attr(&f.kind),
                    text(&f.text)
                );
                let _ = writeln!(x, "    </testcase>");
            }
        }
    }
    let _ = writeln!(x, "  </testsuite>");
    let _ = writeln!(x, "</testsuites>");
    x
}

/// Characters XML 1.0 allows in a document; the rest (NUL, most C0 controls, lone surrogates
/// cannot occur in a `str`, U+FFFE/U+FFFF) are replaced since no escape can carry them.
fn xml_char(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => c,
        '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
        _ => c,
    }
}

/// Element text as a CDATA section. Not entity-escaped text: some JUnit consumers (junit-parser
/// among them) drop entity references from element text, turning `a < b` into `a\nb`; CDATA
/// reaches them verbatim. A `]]>` inside is split across two sections, the only way to carry it.
fn text(s: &str) -> String {
    let clean: String = s.chars().map(xml_char).collect();
    format!("<![CDATA[{}]]>", clean.replace("]]>", "]]]]><![CDATA[>"))
}

/// Escapes an attribute value (double-quoted). Whitespace other than space is written as a
/// character reference: parsers normalize literal tabs and newlines in attributes to spaces.
fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().map(xml_char) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::record;

    #[test]
    fn a_junit_consumer_reads_counts_names_and_failures_intact() {
        let r = record();
        let xml = render(&r);
        let parsed = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes()))
            .unwrap_or_else(|e| panic!("junit-parser refused the document: {e}\n{xml}"));
        // Thresholds 2, expectations 5, rollback 1.
        assert_eq!(parsed.tests, 8, "{xml}");
        assert_eq!(parsed.failures, 4, "{xml}");
        assert_eq!(parsed.suites.len(), 1);
        let suite = &parsed.suites[0];
        assert_eq!(suite.tests, 8);
        assert_eq!(suite.failures, 4);
        assert_eq!(suite.errors, 0);
        assert_eq!(suite.name, "firedrill.drill <b>&\"'");
        assert_eq!(suite.cases.len(), 8);
        // junit-parser's `name` is `classname::name`; `original_name` is the attribute.
        let names: Vec<&str> = suite
            .cases
            .iter()
            .map(|c| c.original_name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "p95 <fast> & \"quoted\"",
                "error ratio",
                "alert GpuOom<script> fires within 30 s after oom.start",
                "alert Quiet never fires",
                "SLO availability keeps at least 50.0% of its error budget",
                "alert GpuOom fires and resolves under both engines within 5 s",
                "alert Surprise no alert fires unexpected (add an expectation or rules.allow)",
                "faults rolled back and verified",
            ]
        );
        let failed: Vec<&str> = suite
            .cases
            .iter()
            .filter(|c| c.status.is_failure())
            .map(|c| c.original_name.as_str())
            .collect();
        assert_eq!(failed.len(), 4, "{failed:?}");
        let first = suite.cases[0].status.failure_as_ref();
        assert_eq!(first.message, "p95 was 812 ms > 500 ms: <b>&amp; \"x\" 'y'");
        assert_eq!(first.failure_type, "threshold");
        assert!(
            first.text.contains("requires: p95 < 500 ms & \"fast\""),
            "{:?}",
            first.text
        );
        let alert = suite.cases[2].status.failure_as_ref();
        assert_eq!(alert.failure_type, "alert");
        assert_eq!(alert.message, "never went pending or firing");
        assert!(
            alert
                .text
                .contains("  rate(errors[1m]) > 0.5 was 0 (<no data> & \"empty\")"),
            "{}",
            alert.text
        );
        let rollback = suite.cases[7].status.failure_as_ref();
        assert_eq!(rollback.message, "server still lists <gpu_oom>");
        assert_eq!(
            suite.cases[0].classname.as_deref(),
            Some("firedrill.drill <b>&\"'.threshold")
        );
        assert!(suite.cases[1].status.is_success());
    }

    #[test]
    fn control_characters_do_not_break_the_document() {
        let mut r = record();
        r.thresholds[0].detail = "bell\u{7} nul\u{0} tab\tline\nend".into();
        let xml = render(&r);
        let parsed = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes()))
            .unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let f = parsed.suites[0].cases[0].status.failure_as_ref();
        assert_eq!(f.message, "bell\u{fffd} nul\u{fffd} tab\tline\nend");
        // A CDATA terminator inside the text cannot end the section early.
        r.expectations[0].explanation = vec!["a ]]> <b>".into()];
        let xml = render(&r);
        let parsed = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes()))
            .unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let f = parsed.suites[0].cases[2].status.failure_as_ref();
        assert!(f.text.contains("a ]]"), "{:?}", f.text);
        assert!(f.text.contains("> <b>"), "{:?}", f.text);
    }

    #[test]
    fn no_rollback_case_without_faults_and_all_pass() {
        let mut r = record();
        r.rollback = None;
        r.thresholds.iter_mut().for_each(|t| t.passed = true);
        r.expectations.iter_mut().for_each(|e| e.passed = true);
        let xml = render(&r);
        let parsed = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes()))
            .unwrap_or_else(|e| panic!("{e}\n{xml}"));
        assert_eq!(parsed.suites[0].tests, 7);
        assert_eq!(parsed.suites[0].failures, 0);
        assert!(parsed.suites[0].cases.iter().all(|c| c.status.is_success()));
    }
}
