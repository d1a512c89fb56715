//! Free-standing PromQL queries, such as a dashboard's panel queries and template variables,
//! checked with the same selector, `histogram_quantile`, `rate` and range checks as rule
//! expressions: [`lint_queries`].

use super::check::Checker;
use super::{
    parse_file, parse_hint, with_recorded, Code, Exported, Finding, LintOptions, LintReport,
    RuleSource, Severity, Summary,
};
use crate::rules::rulefile::Rule;
use promql_parser::parser::Expr;
use std::collections::{BTreeMap, BTreeSet};

/// One PromQL query written outside a rule file, and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The file it is in (a finding's `file`).
    pub file: String,
    /// Where in the file, in words (a finding's `rule`): `panel "Queue depth" (query A)`.
    pub location: String,
    /// The PromQL text, with any templating (Grafana's `$__rate_interval`, ...) already
    /// substituted by the caller.
    pub expr: String,
}

/// Lints `queries` against `exported`, as [`lint`](super::lint) lints rule expressions: a query
/// that does not parse, a metric nothing exports, a label the metric never has, a value it never
/// has (where values are known), `histogram_quantile` and `rate` misuse, short ranges.
///
/// The series the recording rules of `rules` write count as exported (with the labels their
/// expressions produce and their static label values), so dashboards may read `slo:*` series.
/// Findings are about the queries (`rule` is the query's `location`, `line` is `None`), plus
/// any structure or parse error of `rules` (a broken rule file records nothing). The summary
/// counts the queries' distinct files as `files` and the queries as `rules`.
pub fn lint_queries(
    queries: &[Query],
    rules: &[RuleSource],
    exported: &Exported,
    opts: &LintOptions,
) -> LintReport {
    let mut findings = Vec::new();
    let mut recorded: BTreeMap<String, Vec<Expr>> = BTreeMap::new();
    let mut recording: Vec<(Rule, Expr)> = Vec::new();
    for source in rules {
        let (file, structure) = parse_file(source);
        findings.extend(structure);
        for rule in file.iter().flat_map(|f| &f.groups).flat_map(|g| &g.rules) {
            let Some(name) = &rule.record else { continue };
            let entry = recorded.entry(name.clone()).or_default();
            match crate::rules::parse(&rule.expr) {
                Ok(e) => {
                    entry.push(e.clone());
                    recording.push((rule.clone(), e));
                }
                Err(e) => findings.push(Finding {
                    file: source.path.clone(),
                    line: None,
                    group: None,
                    rule: Some(name.clone()),
                    severity: Severity::Error,
                    code: Code::ParseError,
                    hint: parse_hint(&e.message),
                    message: format!("the expression does not parse: {}", e.message),
                }),
            }
        }
    }
    let recording_refs: Vec<(&Rule, &Expr)> = recording.iter().map(|(r, e)| (r, e)).collect();
    let all = with_recorded(exported, &recorded, &recording_refs);
    let checker = Checker {
        exported: &all,
        recorded: &recorded,
        opts,
    };
    for q in queries {
        let finding = |severity, code, message: String, hint: String| Finding {
            file: q.file.clone(),
            line: None,
            group: None,
            rule: Some(q.location.clone()),
            severity,
            code,
            message,
            hint,
        };
        match crate::rules::parse(&q.expr) {
            Ok(expr) => findings.extend(
                checker
                    .check(&expr)
                    .into_iter()
                    .map(|i| finding(i.severity, i.code, i.message, i.hint)),
            ),
            Err(e) => {
                let message = format!("the query does not parse: {}", e.message);
                let hint = parse_hint(&message);
                findings.push(finding(Severity::Error, Code::ParseError, message, hint));
            }
        }
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let summary = Summary {
        files: queries
            .iter()
            .map(|q| q.file.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        rules: queries.len(),
        errors: count(Severity::Error),
        warnings: count(Severity::Warning),
    };
    LintReport { findings, summary }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reference_server::metrics::MetricUnits;

    fn q(expr: &str) -> Query {
        Query {
            file: "d.json".into(),
            location: "panel \"P\" (query A)".into(),
            expr: expr.into(),
        }
    }

    const SLO: &str = "groups:\n  - name: s\n    rules:\n      - record: slo:sli_error:ratio_rate5m\n        expr: 1 - sum(rate(requests_total{status=\"success\"}[5m])) / sum(rate(requests_total[5m]))\n        labels: {slo: avail}\n";

    fn run(exprs: &[&str]) -> LintReport {
        let rules = [RuleSource {
            path: "slo.yaml".into(),
            text: SLO.into(),
        }];
        let queries: Vec<Query> = exprs.iter().map(|e| q(e)).collect();
        lint_queries(
            &queries,
            &rules,
            &Exported::catalog(MetricUnits::Base),
            &LintOptions::default(),
        )
    }

    #[test]
    fn clean_queries_and_recorded_series_pass() {
        let r = run(&[
            "sum by (tier) (queue_depth)",
            "histogram_quantile(0.95, sum by (le) (rate(generation_time_seconds_bucket[5m])))",
            "slo:sli_error:ratio_rate5m{slo=\"avail\"}",
        ]);
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        assert_eq!((r.summary.files, r.summary.rules), (1, 3));
    }

    #[test]
    fn findings_name_the_query_and_the_metric() {
        let r = run(&[
            "rate(queue_throughput_total[5m])",
            "sum(rate(requests_total[5m)",
            "slo:sli_error:ratio_rate5m{slo=\"latency\"}",
        ]);
        let codes: Vec<Code> = r.findings.iter().map(|f| f.code).collect();
        assert_eq!(
            codes,
            [
                Code::UnknownMetric,
                Code::ParseError,
                Code::ImpossibleLabelValue
            ],
            "{:#?}",
            r.findings
        );
        let first = r.findings[0].to_string();
        assert!(
            first.starts_with("d.json: panel \"P\" (query A): error[unknown-metric]")
                && first.contains("queue_throughput_total"),
            "{first}"
        );
        assert_eq!(r.summary.errors, 3);
    }

    #[test]
    fn a_broken_rule_file_is_reported() {
        let rules = [RuleSource {
            path: "bad.yaml".into(),
            text: "groups: [".into(),
        }];
        let r = lint_queries(
            &[q("up")],
            &rules,
            &Exported::catalog(MetricUnits::Base),
            &LintOptions::default(),
        );
        assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
        assert_eq!(r.findings[0].code, Code::RuleFile);
        assert_eq!(r.findings[0].file, "bad.yaml");
    }
}
