//! `firedrill lint`: finds rules that can never fire or cannot mean what they say, before a
//! drill rather than after it. Rule files are checked against what the target exports: the
//! reference server's metric catalog ([`Exported::catalog`]) or a run's scraped series
//! ([`Exported::from_record`]).
//!
//! The checks, each a [`Code`]:
//! - structure: the file is not a valid rule file, or an expression does not parse;
//! - selectors: a metric name nothing exports, a label the metric never has, a value it never
//!   has (names written by recording rules in the linted files count as exported);
//! - `histogram_quantile` over series that are not `_bucket`, without `le`, or without `rate`;
//! - `rate`/`irate`/`increase` over a gauge;
//! - range windows (and subquery ranges) under twice the scrape interval, after `time_scale`;
//! - templates that read labels the alert's expression cannot produce ([`labels`] computes
//!   the output labels).
//!
//! Lint is pure: [`lint`] takes texts and returns findings; [`run_cli`] does the reading and
//! printing for the command line.
//! [`lint_queries`] runs the same checks on queries written outside rule files (dashboards).

mod check;
pub mod exported;
pub mod labels;
pub mod queries;

pub use exported::{Exported, ExportedSource, LabelValues, MetricInfo, SeriesKind};
pub use labels::{output_labels, LabelSet};
pub use queries::{lint_queries, Query};

use crate::rules::rulefile::{Rule, RuleFile, RuleFileError};
use crate::rules::template;
use check::Checker;
use promql_parser::parser::Expr;
use reference_server::metrics::MetricUnits;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Suspicious, or true only of the run at hand.
    Warning,
    /// The rule cannot work as written.
    Error,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// The file is not a valid Prometheus rule file (error).
    RuleFile,
    /// An expression does not parse (error).
    ParseError,
    /// A selector's metric name is not exported: the rule can never fire (error; a warning
    /// inside `absent()`, which then always fires).
    UnknownMetric,
    /// A matcher on a label the metric never has can never match (error).
    UnknownLabel,
    /// A matcher on a recorded series' static label asks for a value no rule writes (error).
    ImpossibleLabelValue,
    /// A matcher asks for a value the run's record never saw (warning: the run may not have
    /// exercised it).
    UnseenLabelValue,
    /// `histogram_quantile` over series that are not a histogram's `_bucket` (error).
    QuantileNotBucket,
    /// `histogram_quantile` over an input whose `le` an aggregation dropped (error).
    QuantileWithoutLe,
    /// `histogram_quantile` over buckets without `rate()` (error).
    QuantileWithoutRate,
    /// `rate`/`irate`/`increase` over a gauge (error).
    RateOverGauge,
    /// A range window under twice the scrape interval (warning).
    ShortRange,
    /// A template reads a label the alert's expression cannot produce (warning: it expands to
    /// nothing).
    TemplateMissingLabel,
    /// A template firedrill cannot expand (warning: Prometheus may still accept it).
    TemplateError,
}

impl Code {
    /// Every code, in documentation order.
    pub const ALL: [Code; 13] = [
        Code::RuleFile,
        Code::ParseError,
        Code::UnknownMetric,
        Code::UnknownLabel,
        Code::ImpossibleLabelValue,
        Code::UnseenLabelValue,
        Code::QuantileNotBucket,
        Code::QuantileWithoutLe,
        Code::QuantileWithoutRate,
        Code::RateOverGauge,
        Code::ShortRange,
        Code::TemplateMissingLabel,
        Code::TemplateError,
    ];

    /// The code as printed (`unknown-metric`).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::RuleFile => "rule-file",
            Code::ParseError => "parse-error",
            Code::UnknownMetric => "unknown-metric",
            Code::UnknownLabel => "unknown-label",
            Code::ImpossibleLabelValue => "impossible-label-value",
            Code::UnseenLabelValue => "unseen-label-value",
            Code::QuantileNotBucket => "quantile-not-bucket",
            Code::QuantileWithoutLe => "quantile-without-le",
            Code::QuantileWithoutRate => "quantile-without-rate",
            Code::RateOverGauge => "rate-over-gauge",
            Code::ShortRange => "short-range",
            Code::TemplateMissingLabel => "template-missing-label",
            Code::TemplateError => "template-error",
        }
    }

    /// The code printed as `s`, if any.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finding before it is placed in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    severity: Severity,
    code: Code,
    message: String,
    hint: String,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule file, as given.
    pub file: String,
    /// 1-based line of the rule (or of the structure error), when known.
    pub line: Option<usize>,
    /// The group's name, when the finding is within one.
    pub group: Option<String>,
    /// The rule's name (`alert` or `record`), when the finding is about one rule.
    pub rule: Option<String>,
    /// Error or warning.
    pub severity: Severity,
    /// What kind of finding.
    pub code: Code,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Finding {
    /// `file:line: group/rule: error[code]: message`, then the hint indented.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": ")?;
        match (&self.group, &self.rule) {
            (Some(g), Some(r)) => write!(f, "{g}/{r}: ")?,
            (Some(g), None) => write!(f, "{g}: ")?,
            (None, Some(r)) => write!(f, "{r}: ")?,
            (None, None) => {}
        }
        write!(
            f,
            "{}[{}]: {}",
            self.severity.as_str(),
            self.code,
            self.message
        )?;
        if !self.hint.is_empty() {
            write!(f, "\n    hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// The settings of a lint.
#[derive(Debug, Clone, PartialEq)]
pub struct LintOptions {
    /// How often the target is scraped during the run (after any time scaling of the scrape).
    pub scrape_interval: Duration,
    /// `time_scale: k`: range windows are divided by k before they are compared.
    pub time_scale: f64,
}

impl Default for LintOptions {
    fn default() -> LintOptions {
        LintOptions {
            scrape_interval: Duration::from_secs(15),
            time_scale: 1.0,
        }
    }
}

/// A rule file's text and the name to report it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSource {
    /// The path as given (used in findings).
    pub path: String,
    /// The YAML text.
    pub text: String,
}

impl RuleSource {
    /// Reads `path`; the error names it.
    pub fn read(path: &Path) -> Result<RuleSource, String> {
        std::fs::read_to_string(path)
            .map(|text| RuleSource {
                path: path.display().to_string(),
                text,
            })
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))
    }
}

/// Counts of a lint's findings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files linted.
    pub files: usize,
    /// Rules linted.
    pub rules: usize,
    /// Findings of severity error.
    pub errors: usize,
    /// Findings of severity warning.
    pub warnings: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} error{}, {} warning{} in {} rule{} of {} file{}",
            self.errors,
            s(self.errors),
            self.warnings,
            s(self.warnings),
            self.rules,
            s(self.rules),
            self.files,
            s(self.files)
        )
    }
}

/// What [`lint`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintReport {
    /// Findings, by file in the order given, then by rule.
    pub findings: Vec<Finding>,
    /// The counts.
    pub summary: Summary,
}

impl LintReport {
    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.summary.errors > 0
    }
}

/// A file as far as it parsed.
struct Parsed<'s> {
    source: &'s RuleSource,
    file: Option<RuleFile>,
    /// Per group, per rule: the parsed expression.
    exprs: Vec<Vec<Option<Expr>>>,
    /// Per group, per rule: its line.
    lines: Vec<Vec<Option<usize>>>,
}

/// Lints `sources` together (recorded series of each are visible to all) against `exported`.
pub fn lint(sources: &[RuleSource], exported: &Exported, opts: &LintOptions) -> LintReport {
    let mut findings = Vec::new();
    let mut parsed = Vec::new();
    for source in sources {
        let (file, mut structure) = parse_file(source);
        findings.append(&mut structure);
        let mut exprs = Vec::new();
        let lines = file
            .as_ref()
            .map(|f| rule_lines(&source.text, f))
            .unwrap_or_default();
        if let Some(f) = &file {
            for (gi, g) in f.groups.iter().enumerate() {
                let mut in_group = Vec::new();
                for (ri, r) in g.rules.iter().enumerate() {
                    match crate::rules::parse(&r.expr) {
                        Ok(e) => in_group.push(Some(e)),
                        Err(e) => {
                            let message = format!("the expression does not parse: {}", e.message);
                            findings.push(Finding {
                                file: source.path.clone(),
                                line: line_at(&lines, gi, ri),
                                group: Some(g.name.clone()),
                                rule: Some(rule_name(r)),
                                severity: Severity::Error,
                                code: Code::ParseError,
                                hint: parse_hint(&message),
                                message,
                            });
                            in_group.push(None);
                        }
                    }
                }
                exprs.push(in_group);
            }
        }
        parsed.push(Parsed {
            source,
            file,
            exprs,
            lines,
        });
    }

    let mut recorded: BTreeMap<String, Vec<Expr>> = BTreeMap::new();
    let mut recording: Vec<(&Rule, &Expr)> = Vec::new();
    let mut rule_count = 0;
    for p in &parsed {
        let Some(f) = &p.file else { continue };
        for (g, group) in f.groups.iter().enumerate() {
            for (r, rule) in group.rules.iter().enumerate() {
                rule_count += 1;
                let expr = p
                    .exprs
                    .get(g)
                    .and_then(|v| v.get(r))
                    .and_then(Option::as_ref);
                if let Some(name) = &rule.record {
                    recorded.entry(name.clone()).or_default();
                    if let Some(e) = expr {
                        recorded.entry(name.clone()).or_default().push(e.clone());
                        recording.push((rule, e));
                    }
                }
            }
        }
    }
    let all = with_recorded(exported, &recorded, &recording);
    let checker = Checker {
        exported: &all,
        recorded: &recorded,
        opts,
    };

    for p in &parsed {
        let Some(f) = &p.file else { continue };
        for (g, group) in f.groups.iter().enumerate() {
            for (r, rule) in group.rules.iter().enumerate() {
                let Some(expr) = p
                    .exprs
                    .get(g)
                    .and_then(|v| v.get(r))
                    .and_then(Option::as_ref)
                else {
                    continue;
                };
                let mut issues = checker.check(expr);
                if rule.alert.is_some() {
                    issues.extend(template_issues(rule, expr, &all));
                }
                let line = line_at(&p.lines, g, r);
                findings.extend(issues.into_iter().map(|i| Finding {
                    file: p.source.path.clone(),
                    line,
                    group: Some(group.name.clone()),
                    rule: Some(rule_name(rule)),
                    severity: i.severity,
                    code: i.code,
                    message: i.message,
                    hint: i.hint,
                }));
            }
        }
    }
    // File order as given; within a file, by line (structure errors have theirs).
    let order: BTreeMap<&str, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.path.as_str(), i))
        .collect();
    findings.sort_by_key(|f| (order.get(f.file.as_str()).copied(), f.line));
    let summary = Summary {
        files: sources.len(),
        rules: rule_count,
        errors: findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count(),
        warnings: findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count(),
    };
    LintReport { findings, summary }
}

/// Reads and lints rule files against `exported`: what the run does before and after a drill.
pub fn lint_paths(
    paths: &[PathBuf],
    exported: &Exported,
    opts: &LintOptions,
) -> Result<LintReport, String> {
    let sources = paths
        .iter()
        .map(|p| RuleSource::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lint(&sources, exported, opts))
}

fn line_at(lines: &[Vec<Option<usize>>], g: usize, r: usize) -> Option<usize> {
    lines.get(g).and_then(|v| v.get(r)).copied().flatten()
}

fn rule_name(r: &Rule) -> String {
    let n = r.name();
    if n.is_empty() {
        "(unnamed rule)".into()
    } else {
        n.to_owned()
    }
}

fn parse_hint(message: &str) -> String {
    if message.contains("histogram_quantile") && message.contains("matrix") {
        "histogram_quantile takes an instant vector: histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))".into()
    } else {
        "check the expression with `promtool check rules` or the Prometheus expression browser"
            .into()
    }
}

/// Parses a rule file as Prometheus would; when only the semantic checks fail (a bad duration,
/// a duplicate group), the rules are still returned so that the other checks can run.
fn parse_file(source: &RuleSource) -> (Option<RuleFile>, Vec<Finding>) {
    match RuleFile::parse(&source.text) {
        Ok(f) => (Some(f), Vec::new()),
        Err(e) => {
            let lenient: Option<RuleFile> = serde_yaml_ng::from_str(&source.text).ok();
            let finding = structure_finding(source, &e, lenient.as_ref());
            (lenient, vec![finding])
        }
    }
}

/// `groups[1].rules[2].for` -> (1, Some(2)).
fn path_indices(field: &str) -> (Option<usize>, Option<usize>) {
    let index_after = |key: &str| {
        field
            .find(key)
            .and_then(|i| field[i + key.len()..].split(']').next())
            .and_then(|n| n.parse().ok())
    };
    (index_after("groups["), index_after("rules["))
}

fn structure_finding(source: &RuleSource, e: &RuleFileError, f: Option<&RuleFile>) -> Finding {
    let (gi, ri) = path_indices(&e.field);
    let group = gi.and_then(|g| f.and_then(|f| f.groups.get(g)));
    let rule = ri.and_then(|r| group.and_then(|g| g.rules.get(r)));
    let line = e.line.or_else(|| {
        let (g, r) = (gi?, ri?);
        rule_lines(&source.text, f?)
            .get(g)?
            .get(r)
            .copied()
            .flatten()
    });
    let mut message = String::new();
    if !e.field.is_empty() && e.field != "." {
        message.push_str(&format!("field `{}`: ", e.field));
    }
    message.push_str(&e.message);
    Finding {
        file: source.path.clone(),
        line,
        group: group.map(|g| g.name.clone()),
        rule: rule.map(rule_name),
        severity: Severity::Error,
        code: Code::RuleFile,
        message,
        hint: "Prometheus refuses to load the whole file: see the rule file format (groups: [{name, rules: [{alert|record, expr, for, labels, annotations}]}])".into(),
    }
}

/// Where each rule is written, per group and rule: the n-th `alert: X` / `record: X` line for
/// the n-th rule of that name (rule files are block-style YAML).
fn rule_lines(text: &str, f: &RuleFile) -> Vec<Vec<Option<usize>>> {
    let mut lines: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let t = raw.trim_start().trim_start_matches("- ").trim_start();
        for key in ["alert", "record"] {
            if let Some(rest) = t.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                let name = rest
                    .split(" #")
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches(|c| c == '"' || c == '\'');
                lines.entry((key, name)).or_default().push(i + 1);
            }
        }
    }
    let mut used: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    f.groups
        .iter()
        .map(|g| {
            g.rules
                .iter()
                .map(|r| {
                    let key = match (&r.alert, &r.record) {
                        (Some(a), _) => ("alert", a.as_str()),
                        (None, Some(n)) => ("record", n.as_str()),
                        (None, None) => return None,
                    };
                    let n = used.entry(key).or_insert(0);
                    let line = lines.get(&key).and_then(|v| v.get(*n)).copied();
                    *n += 1;
                    line
                })
                .collect()
        })
        .collect()
}

/// `exported` plus the series the recording rules write, with their labels computed from
/// their expressions (to a fixpoint, since recorded series read recorded series).
fn with_recorded(
    exported: &Exported,
    recorded: &BTreeMap<String, Vec<Expr>>,
    recording: &[(&Rule, &Expr)],
) -> Exported {
    if recorded.is_empty() {
        return exported.clone();
    }
    let mut cur = exported.clone();
    // Until computed, a recorded series may have any label.
    for name in recorded.keys() {
        cur.add_recorded(name, BTreeMap::new(), true);
    }
    for _ in 0..=recorded.len().min(16) {
        let mut next = exported.clone();
        // A rule whose expression did not parse still records its name.
        for name in recorded.keys() {
            if recording
                .iter()
                .all(|(r, _)| r.record.as_ref() != Some(name))
            {
                next.add_recorded(name, BTreeMap::new(), true);
            }
        }
        for (rule, expr) in recording {
            let Some(name) = &rule.record else { continue };
            let ls = output_labels(expr, &|vs| check::selector_labels(&cur, vs));
            let mut labels: BTreeMap<String, LabelValues> = ls
                .names
                .iter()
                .filter(|n| n.as_str() != crate::scrape::METRIC_NAME_LABEL)
                .map(|n| (n.clone(), LabelValues::Unknown))
                .collect();
            for (k, v) in &rule.labels {
                labels.insert(
                    k.clone(),
                    LabelValues::Exhaustive(std::iter::once(v.clone()).collect()),
                );
            }
            next.add_recorded(name, labels, ls.open);
        }
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// (f): the labels an alert's templates read must be among its expression's output labels.
fn template_issues(rule: &Rule, expr: &Expr, exported: &Exported) -> Vec<Issue> {
    let out = output_labels(expr, &|vs| check::selector_labels(exported, vs));
    let mut issues = Vec::new();
    let texts = rule
        .annotations
        .iter()
        .map(|(k, v)| (format!("annotation `{k}`"), v))
        .chain(rule.labels.iter().map(|(k, v)| (format!("label `{k}`"), v)));
    for (what, text) in texts {
        if let Err(e) = template::expand(text, &template::TemplateData::default()) {
            issues.push(Issue {
                severity: Severity::Warning,
                code: Code::TemplateError,
                message: format!("{what}: firedrill cannot expand this template: {e}"),
                hint: "firedrill supports $labels, $value, humanize*, printf, toUpper, toLower and title; Prometheus may accept more".into(),
            });
        }
        for l in template::labels_used(text) {
            if !out.lacks(&l) {
                continue;
            }
            let has: Vec<&String> = out
                .names
                .iter()
                .filter(|n| n.as_str() != crate::scrape::METRIC_NAME_LABEL)
                .collect();
            let hint = if rule.labels.contains_key(&l) {
                format!("`{l}` is a label of the rule: templates see the expression's result labels, not the rule's own")
            } else {
                format!(
                    "keep `{l}` through the aggregations (`sum by (..., {l})`), or drop it from the template"
                )
            };
            issues.push(Issue {
                severity: Severity::Warning,
                code: Code::TemplateMissingLabel,
                message: format!(
                    "{what} reads `$labels.{l}`, which the expression's result never has (its labels: {}): it expands to nothing",
                    if has.is_empty() { "none".to_owned() } else { has.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ") }
                ),
                hint,
            });
        }
    }
    issues
}

/// A duration as Prometheus writes it (`1m30s`, `250ms`).
pub fn fmt_ms(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("y", 365 * 86_400_000u128),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

/// Where `firedrill lint` gets what is exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Against {
    /// The reference server's catalog, with these metric units.
    Catalog(MetricUnits),
    /// A run's record.
    Record(PathBuf),
}

/// Exit codes of `firedrill lint`.
pub mod exit {
    /// No errors (warnings allowed).
    pub const CLEAN: u8 = 0;
    /// At least one error.
    pub const ERRORS: u8 = 1;
    /// A rule file or the record cannot be read, or a setting is invalid.
    pub const BAD_INPUT: u8 = 2;
}

/// `firedrill lint`: lints `paths` together, prints findings and a summary to `out`, and
/// returns the exit code ([`exit`]). Unreadable input is reported to `err` and nothing is linted
/// (a missing file could hide the recording rules the others read).
pub fn run_cli(
    paths: &[PathBuf],
    against: &Against,
    opts: &LintOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    if !(opts.time_scale.is_finite() && opts.time_scale > 0.0) {
        let _ = writeln!(
            err,
            "firedrill lint: --time-scale must be a positive number"
        );
        return exit::BAD_INPUT;
    }
    if opts.scrape_interval.is_zero() {
        let _ = writeln!(err, "firedrill lint: --scrape-interval must be positive");
        return exit::BAD_INPUT;
    }
    let mut bad = false;
    let mut sources = Vec::new();
    for p in paths {
        match RuleSource::read(p) {
            Ok(s) => sources.push(s),
            Err(e) => {
                let _ = writeln!(err, "firedrill lint: {e}");
                bad = true;
            }
        }
    }
    let exported = match against {
        Against::Catalog(units) => Some(Exported::catalog(*units)),
        Against::Record(path) => match reports::record::RunRecord::read(path)
            .map_err(|e| e.to_string())
            .and_then(|r| Exported::from_record(&r))
        {
            Ok(e) => Some(e),
            Err(e) => {
                let _ = writeln!(err, "firedrill lint: {}: {e}", path.display());
                None
            }
        },
    };
    let Some(exported) = exported.filter(|_| !bad) else {
        return exit::BAD_INPUT;
    };
    let report = lint(&sources, &exported, opts);
    for f in &report.findings {
        let _ = writeln!(out, "{f}");
    }
    let against_words = match against {
        Against::Catalog(u) => format!(
            "the reference server's catalog, metric_units: {}",
            u.as_str()
        ),
        Against::Record(p) => format!("the record {}", p.display()),
    };
    let _ = writeln!(out, "lint: {} (against {against_words})", report.summary);
    if report.has_errors() {
        exit::ERRORS
    } else {
        exit::CLEAN
    }
}

#[cfg(test)]
mod tests;
