//! `reports`: renders a run's record into what people read and CI consumes. It knows nothing of
//! HTTP or scenarios: its input is data. [`write_documents`] renders a run's documents
//! (`summary.md`, `junit.xml`, the plots and `report.html`) from its record alone.

pub mod capacity;
pub mod capacity_documents;
pub mod compare;
pub mod documents;
pub mod html;
pub mod junit;
pub mod plots;
pub mod record;
pub mod summary;
#[cfg(test)]
mod testdata;

pub use documents::{write_documents, Documents};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The part of a run's record the summary needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeSummary {
    /// Scenario name.
    pub scenario: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// Requests per outcome class label.
    pub outcomes: BTreeMap<String, u64>,
}

impl OutcomeSummary {
    /// Total requests.
    pub fn total(&self) -> u64 {
        self.outcomes.values().sum()
    }
}

/// A Markdown table of outcome counts with shares, under a verdict line. The run's `summary.md`
/// is [`summary::render`], which holds this and the rest of the key numbers.
pub fn render_summary_md(s: &OutcomeSummary) -> String {
    let mut out = String::new();
    let verdict = if s.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(out, "## firedrill: {} — {verdict}\n", s.scenario);
    let total = s.total();
    let _ = writeln!(out, "| outcome | requests | share |\n|---|---:|---:|");
    for (class, n) in &s.outcomes {
        let share = if total == 0 {
            0.0
        } else {
            100.0 * *n as f64 / total as f64
        };
        let _ = writeln!(out, "| {class} | {n} | {share:.1}% |");
    }
    let _ = writeln!(out, "| **total** | {total} | |");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_verdict_counts_and_shares() {
        let s = OutcomeSummary {
            scenario: "quickstart".into(),
            passed: false,
            outcomes: BTreeMap::from([("ok".into(), 3), ("timeout".into(), 1)]),
        };
        let md = render_summary_md(&s);
        assert!(md.starts_with("## firedrill: quickstart — FAIL"));
        assert!(md.contains("| ok | 3 | 75.0% |"));
        assert!(md.contains("| timeout | 1 | 25.0% |"));
        assert!(md.contains("| **total** | 4 |"));
        let empty = OutcomeSummary {
            outcomes: BTreeMap::new(),
            passed: true,
            ..s
        };
        assert!(render_summary_md(&empty).contains("PASS"));
    }
}
