//! The conformance gate's baseline: the cases known to fail, one per line as
//! `file:line: reason` (`#` comments and blank lines ignored). The gate fails on a failure that
//! is not listed, and on a listed case that no longer fails, so the list only shrinks.

use super::{CaseResult, Status};
use std::collections::BTreeMap;

/// The known failures: case id (`file:line`) to reason.
pub type Baseline = BTreeMap<String, String>;

/// Parses a baseline file.
pub fn parse(text: &str) -> Baseline {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.find(": ") {
            Some(i) => (l[..i].to_string(), l[i + 2..].to_string()),
            None => (l.trim_end_matches(':').to_string(), String::new()),
        })
        .collect()
}

/// Sort key of a case id: file, then line as a number.
fn key(id: &str) -> (String, usize) {
    match id.rsplit_once(':') {
        Some((f, l)) => (f.to_string(), l.parse().unwrap_or(usize::MAX)),
        None => (id.to_string(), usize::MAX),
    }
}

/// The baseline text for the failing cases of `cases`.
pub fn render<'a>(cases: impl IntoIterator<Item = &'a CaseResult>) -> String {
    let mut failing: Vec<(String, String)> = cases
        .into_iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| (c.id(), c.reason()))
        .collect();
    failing.sort_by_key(|(id, _)| key(id));
    let mut out = String::from(
        "# PromQL conformance: cases of ../shared/promqltest known to fail (file:line: reason).\n\
         # Checked by harness/tests/promqltest.rs; regenerate with\n\
         #   UPDATE_BASELINE=1 cargo test -p firedrill --test promqltest\n",
    );
    for (id, reason) in failing {
        out.push_str(&id);
        out.push_str(": ");
        out.push_str(&reason);
        out.push('\n');
    }
    out
}

/// What the gate found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// Failing cases not in the baseline: `(id, reason)`.
    pub new_failures: Vec<(String, String)>,
    /// Baselined cases that did not fail (passed, skipped, or no longer exist).
    pub fixed: Vec<String>,
}

impl Verdict {
    /// Whether the gate passes.
    pub fn ok(&self) -> bool {
        self.new_failures.is_empty() && self.fixed.is_empty()
    }
}

/// Compares a run with the baseline.
pub fn judge<'a>(cases: impl IntoIterator<Item = &'a CaseResult>, baseline: &Baseline) -> Verdict {
    let mut v = Verdict::default();
    let mut failing = std::collections::BTreeSet::new();
    for c in cases {
        if c.status != Status::Fail {
            continue;
        }
        let id = c.id();
        if !baseline.contains_key(&id) {
            v.new_failures.push((id.clone(), c.reason()));
        }
        failing.insert(id);
    }
    v.fixed = baseline
        .keys()
        .filter(|id| !failing.contains(*id))
        .cloned()
        .collect();
    v.new_failures.sort_by_key(|(id, _)| key(id));
    v.fixed.sort_by_key(|id| key(id));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(file: &str, line: usize, status: Status, why: &str) -> CaseResult {
        CaseResult {
            file: file.into(),
            line,
            query: "q".into(),
            status,
            details: vec![why.into()],
            annotation_expectations: 0,
        }
    }

    #[test]
    fn round_trip_and_judge() {
        let cases = vec![
            case("b.test", 10, Status::Fail, "x: y"),
            case("a.test", 100, Status::Fail, "bad"),
            case("a.test", 9, Status::Fail, "worse"),
            case("a.test", 5, Status::Pass, ""),
        ];
        let text = render(&cases);
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            vec!["a.test:9: worse", "a.test:100: bad", "b.test:10: x: y"]
        );
        let b = parse(&text);
        assert_eq!(b.get("b.test:10").map(String::as_str), Some("x: y"));
        assert!(judge(&cases, &b).ok());

        // A new failure, and a baselined case that now passes.
        let mut now = cases.clone();
        now[3].status = Status::Fail;
        now[0].status = Status::Pass;
        let v = judge(&now, &b);
        assert_eq!(
            v.new_failures,
            vec![("a.test:5".to_string(), String::new())]
        );
        assert_eq!(v.fixed, vec!["b.test:10".to_string()]);
        assert!(!v.ok());
    }
}
