//! Checking a result's annotations against an eval's `expect warn/info/no_warn/no_info` lines
//! (and the deprecated `eval_warn`/`eval_info`), as Go's `promqltest` does
//! (`checkAnnotations`):
//!
//! - with `expect warn` lines, at least one warning must come back, every line must match some
//!   warning, and every warning must match some line (`info` alike);
//! - `expect no_warn` (`no_info`) fails on any warning (info);
//! - without any of these lines, annotations are not looked at.
//!
//! Annotations are matched as Prometheus' API renders them, position included
//! (`PromQL warning: ... (1:5)`); `msg:` compares exactly, `regex:` searches, a bare line
//! matches anything. Unlike Go, which stops at the first difference, every difference is
//! listed.

use super::script::{Eval, MsgMatch};
use crate::rules::value::{Annotation, AnnotationKind};

/// The differences between `got` and the eval's annotation expectations (none: they hold).
pub fn check(ev: &Eval, got: &[Annotation]) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, word, expected, none_wanted) in [
        (AnnotationKind::Warning, "warn", &ev.warn, ev.no_warn),
        (AnnotationKind::Info, "info", &ev.info, ev.no_info),
    ] {
        let actual: Vec<String> = got
            .iter()
            .filter(|a| a.kind == kind)
            .map(Annotation::to_string)
            .collect();
        check_kind(word, expected, &actual, &mut out);
        if none_wanted && !actual.is_empty() {
            out.push(format!(
                "expected no {word} annotations (expect no_{word}), got {}",
                listing(&actual)
            ));
        }
    }
    out
}

fn check_kind(word: &str, expected: &[MsgMatch], actual: &[String], out: &mut Vec<String>) {
    if expected.is_empty() {
        return;
    }
    if actual.is_empty() {
        out.push(format!(
            "expected {word} annotations (expect {word}), got none"
        ));
        return;
    }
    for m in expected {
        if !actual.iter().any(|a| m.matches(a)) {
            out.push(format!(
                "expected a {word} annotation matching {m}, got {}",
                listing(actual)
            ));
        }
    }
    for a in actual {
        if !expected.iter().any(|m| m.matches(a)) {
            out.push(format!(
                "unexpected {word} annotation {a:?} (no expect {word} line matches it)"
            ));
        }
    }
}

fn listing(annotations: &[String]) -> String {
    let quoted: Vec<String> = annotations.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::promqltest::{parse_script, Command};
    use crate::rules::value::Position;

    fn eval(expectations: &str) -> Eval {
        let text = format!("eval instant at 0 x\n{expectations}\n");
        let script = match parse_script(&text) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        match script.commands.into_iter().next() {
            Some(Command::Eval(e)) => *e,
            _ => panic!("an eval"),
        }
    }

    fn warning(message: &str) -> Annotation {
        Annotation {
            kind: AnnotationKind::Warning,
            message: message.into(),
            detail: String::new(),
            position: Some(Position { line: 1, column: 5 }),
        }
    }

    fn info(message: &str) -> Annotation {
        Annotation {
            kind: AnnotationKind::Info,
            ..warning(message)
        }
    }

    #[test]
    fn expectations_as_go_checks_them() {
        let w = warning("w");
        // Nothing expected: nothing checked.
        assert!(check(&eval("  1"), &[w.clone(), info("i")]).is_empty());
        // A bare line matches any; none at all fails.
        assert!(check(&eval("  expect warn"), std::slice::from_ref(&w)).is_empty());
        assert_eq!(check(&eval("  expect warn"), &[]).len(), 1);
        // msg: exact with the position; regex: searched.
        let e = eval("  expect warn msg: PromQL warning: w (1:5)");
        assert!(check(&e, std::slice::from_ref(&w)).is_empty());
        let e = eval("  expect warn msg: PromQL warning: w");
        assert_eq!(
            check(&e, std::slice::from_ref(&w)).len(),
            2,
            "unmatched both ways"
        );
        let e = eval("  expect warn regex: w \\([0-9]+:[0-9]+\\)");
        assert!(check(&e, std::slice::from_ref(&w)).is_empty());
        // Every warning must be expected once some is.
        let e = eval("  expect warn msg: PromQL warning: w (1:5)");
        let d = check(&e, &[w.clone(), warning("other")]);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("unexpected warn annotation"), "{d:?}");
        // Infos are not warnings.
        assert!(check(&e, &[w.clone(), info("other")]).is_empty());
        // no_warn / no_info.
        assert_eq!(
            check(&eval("  expect no_warn"), std::slice::from_ref(&w)).len(),
            1
        );
        assert!(check(&eval("  expect no_info"), std::slice::from_ref(&w)).is_empty());
        assert_eq!(check(&eval("  expect no_info"), &[info("i")]).len(), 1);
        // The deprecated eval_info.
        let script = parse_script("eval_info instant at 0 x\n").unwrap_or_default();
        let Some(Command::Eval(e)) = script.commands.first() else {
            panic!("an eval")
        };
        assert_eq!(check(e, &[]).len(), 1);
        assert!(check(e, &[info("i")]).is_empty());
    }
}
