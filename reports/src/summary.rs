//! `summary.md`: the verdict and the key numbers in Markdown, short enough for a CI step summary
//! (`$GITHUB_STEP_SUMMARY`) or a pull-request comment.
//!
//! Text from the record is escaped for Markdown (and for the HTML that Markdown renderers pass
//! through), so a scenario or alert name cannot add links, images, tags or break a table.

use crate::junit::expectation_name;
use crate::record::RunRecord;
use std::fmt::Write as _;

/// Escapes text for a Markdown paragraph or table cell: HTML-significant characters become
/// entities, Markdown punctuation is backslash-escaped, newlines become spaces.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

fn ms(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn mark(passed: bool) -> &'static str {
    if passed {
        "✅ met"
    } else {
        "❌ **missed**"
    }
}

/// Renders the summary of a run. `report` is how to point at the HTML report from where the
/// summary is read (`report.html` when it lies beside it).
pub fn render(r: &RunRecord, report: &str) -> String {
    let mut out = String::new();
    let verdict = if r.verdict.passed { "PASS" } else { "FAIL" };
    let icon = if r.verdict.passed { "✅" } else { "❌" };
    let _ = writeln!(
        out,
        "## firedrill: {} — {icon} {verdict}\n",
        md(&r.scenario.name)
    );
    let checks = r.thresholds.len() + r.expectations.len() + usize::from(r.rollback.is_some());
    let failed = r.thresholds.iter().filter(|t| !t.passed).count()
        + r.expectations.iter().filter(|x| !x.passed).count()
        + usize::from(r.rollback.as_ref().is_some_and(|rb| !rb.verified));
    let total: u64 = r.outcomes.values().sum();
    let ok = r.outcomes.get("ok").copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "**{verdict}** (exit {}): {} of {checks} checks met · {:.0} s · {} requests ({} ok) · {:.2} req/s · seed {}",
        r.verdict.exit_code,
        checks - failed,
        r.duration_s,
        r.totals.completed,
        if total == 0 {
            "–".to_owned()
        } else {
            format!("{:.1}%", 100.0 * ok as f64 / total as f64)
        },
        r.totals.achieved_rate,
        r.scenario.seed
    );
    if r.trust.trustworthy {
        let _ = writeln!(out, "\nNumbers trustworthy: the harness kept its schedule.");
    } else {
        let _ = writeln!(
            out,
            "\n> ⚠️ **Numbers NOT trustworthy**: {}",
            md(&r.trust.reasons.join("; "))
        );
    }

    // Latency per tier.
    let _ = writeln!(
        out,
        "\n### Latency (from intended send time)\n\n| tier | requests | p50 | p95 | p99 | service p95 |\n|---|---:|---:|---:|---:|---:|"
    );
    for (tier, t) in r.totals.per_tier.iter().filter(|(_, t)| t.count > 0) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            md(tier),
            t.count,
            ms(t.latency.p50_ms),
            ms(t.latency.p95_ms),
            ms(t.latency.p99_ms),
            ms(t.service_time.p95_ms)
        );
    }
    let o = &r.totals.overall;
    let _ = writeln!(
        out,
        "| **all** | {} | {} | {} | {} | {} |",
        o.count,
        ms(o.latency.p50_ms),
        ms(o.latency.p95_ms),
        ms(o.latency.p99_ms),
        ms(o.service_time.p95_ms)
    );

    // Checks, one line each.
    if checks > 0 {
        let _ = writeln!(out, "\n### Checks\n");
        for t in &r.thresholds {
            let _ = writeln!(
                out,
                "- {} threshold {}: {}",
                mark(t.passed),
                md(&t.name),
                md(&t.detail)
            );
        }
        for x in &r.expectations {
            let time = match x.latency_s {
                Some(t) if x.passed => format!(" ({t:.1} s)"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "- {} {}: {}{time}",
                mark(x.passed),
                md(&expectation_name(x)),
                md(&x.detail)
            );
            if !x.passed {
                for line in &x.explanation {
                    let _ = writeln!(out, "  - {}", md(line.trim()));
                }
            }
        }
        if let Some(rb) = &r.rollback {
            let _ = writeln!(
                out,
                "- {} faults rolled back and verified{}",
                mark(rb.verified),
                if rb.problems.is_empty() {
                    String::new()
                } else {
                    format!(": {}", md(&rb.problems.join("; ")))
                }
            );
        }
    }

    // SLOs.
    if !r.slos.is_empty() {
        let _ = writeln!(
            out,
            "\n### SLOs (the run as the window)\n\n| SLO | objective | SLI | budget left |\n|---|---:|---:|---:|"
        );
        for s in &r.slos {
            let _ = writeln!(
                out,
                "| {} | {}% | {} | {} |",
                md(&s.name),
                s.objective,
                s.sli
                    .map_or("–".to_owned(), |v| format!("{:.3}%", v * 100.0)),
                s.budget_remaining
                    .map_or("–".to_owned(), |v| format!("{:.1}%", v * 100.0))
            );
        }
    }

    // Faults.
    if !r.faults.is_empty() {
        let at = |t: Option<f64>| t.map_or("never".to_owned(), |t| format!("{t:.1} s"));
        let _ = writeln!(
            out,
            "\n### Faults\n\n| fault | kind | via | planned | injected | reverted |\n|---|---|---|---:|---:|---:|"
        );
        for f in &r.faults {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1}–{:.1} s | {} | {} |",
                md(&f.name),
                md(&f.kind),
                md(&f.via),
                f.planned_start_s,
                f.planned_end_s,
                at(f.injected_s),
                at(f.reverted_s)
            );
        }
    }

    // Outcomes.
    let _ = writeln!(
        out,
        "\n### Outcomes\n\n| outcome | requests | share |\n|---|---:|---:|"
    );
    for (class, n) in &r.outcomes {
        let share = if total == 0 {
            0.0
        } else {
            100.0 * *n as f64 / total as f64
        };
        let _ = writeln!(out, "| {} | {n} | {share:.1}% |", md(class));
    }
    let _ = writeln!(out, "| **total** | {total} | |");
    let _ = writeln!(
        out,
        "\nFull report: `{}` (checks, timeline, plots; opens offline). JUnit: `junit.xml`.",
        report.replace('`', "'")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::record;

    #[test]
    fn summary_has_verdict_tables_checks_and_report_hint() {
        let r = record();
        let s = render(&r, "report.html");
        assert!(
            s.starts_with("## firedrill: drill &lt;b&gt;&amp;\"' — ❌ FAIL\n"),
            "{s}"
        );
        assert!(s.contains("4 of 8 checks met"), "{s}");
        assert!(s.contains("Numbers NOT trustworthy"));
        assert!(s.contains("| turbo | 60 |"), "{s}");
        assert!(s.contains("| fast &lt;i&gt; | 40 |"), "{s}");
        assert!(s.contains("| **all** | 100 |"));
        assert!(s.contains(
            "- ❌ **missed** threshold p95 &lt;fast&gt; &amp; \"quoted\": p95 was 812 ms &gt; 500 ms"
        ));
        assert!(s.contains("- ✅ met threshold error ratio: 3% errors"));
        assert!(s.contains("- ❌ **missed** alert GpuOom&lt;script&gt; fires within 30 s"));
        assert!(s.contains("  - rate(errors\\[1m\\]) &gt; 0.5"), "{s}");
        assert!(s.contains("under both engines within 5 s: agree within 1.0 s (1.0 s)"));
        assert!(s.contains("- ❌ **missed** faults rolled back and verified: server still lists"));
        assert!(
            s.contains("| availability | 99% | 97.000% | -200.0% |"),
            "{s}"
        );
        assert!(s.contains("| oom&lt;img src=x onerror=alert(1)&gt; | gpu\\_oom | server | 2.0–8.0 s | 2.0 s | never |"), "{s}");
        assert!(s.contains("| gpu\\_oom | 3 | 3.0% |"));
        assert!(s.contains("| **total** | 100 | |"));
        assert!(s.contains("Full report: `report.html`"));
        // One line per check: no raw newlines sneak in from the record.
        assert!(!s.contains("<script"));
    }

    #[test]
    fn markdown_escaping() {
        assert_eq!(md("a|b"), "a\\|b");
        assert_eq!(md("[x](y)"), "\\[x\\](y)");
        assert_eq!(md("<img>\nz"), "&lt;img&gt; z");
    }
}
