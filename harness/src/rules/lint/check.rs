//! The checks of one parsed expression: selectors against what is exported (unknown metrics,
//! labels and values that can never match), `histogram_quantile` inputs, `rate` over gauges,
//! and range windows against the scrape interval.

use super::exported::{Exported, ExportedSource, LabelValues, MetricInfo, SeriesKind};
use super::labels::{output_labels, LabelSet};
use super::{fmt_ms, Code, Issue, LintOptions, Severity};
use crate::rules::scale::scale_duration;
use crate::scrape::METRIC_NAME_LABEL;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};
use std::collections::BTreeMap;
use std::time::Duration;

/// How deep recorded series are followed back to the rules that write them.
const MAX_RECORD_DEPTH: usize = 8;

/// What the checks of one expression share.
pub(super) struct Checker<'a> {
    /// What exists, recorded series included.
    pub exported: &'a Exported,
    /// The expressions of the recording rules, by the name they record.
    pub recorded: &'a BTreeMap<String, Vec<Expr>>,
    /// Scrape interval and time scale.
    pub opts: &'a LintOptions,
}

/// One alternative of a selector (`{a="1" or b="2"}` has two): its matchers, name included.
fn alternatives(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let name = vs
        .name
        .as_ref()
        .map(|n| Matcher::new(MatchOp::Equal, METRIC_NAME_LABEL, n));
    let base: Vec<Matcher> = name
        .into_iter()
        .chain(vs.matchers.matchers.iter().cloned())
        .collect();
    if vs.matchers.or_matchers.is_empty() {
        return vec![base];
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|g| base.iter().cloned().chain(g.iter().cloned()).collect())
        .collect()
}

/// The metric name an alternative selects by equality, if any.
fn equal_name(ms: &[Matcher]) -> Option<&str> {
    ms.iter()
        .find(|m| m.name == METRIC_NAME_LABEL && m.op == MatchOp::Equal)
        .map(|m| m.value.as_str())
}

/// The exported metrics whose names the alternative's `__name__` matchers accept.
fn candidates<'e>(exported: &'e Exported, ms: &[Matcher]) -> Vec<(&'e str, &'e MetricInfo)> {
    if let Some(n) = equal_name(ms) {
        return exported
            .metrics
            .get_key_value(n)
            .filter(|(k, _)| {
                ms.iter()
                    .filter(|m| m.name == METRIC_NAME_LABEL)
                    .all(|m| m.is_match(k))
            })
            .map(|(k, v)| vec![(k.as_str(), v)])
            .unwrap_or_default();
    }
    exported
        .metrics
        .iter()
        .filter(|(k, _)| {
            ms.iter()
                .filter(|m| m.name == METRIC_NAME_LABEL)
                .all(|m| m.is_match(k))
        })
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

/// The labels a selector's series carry (`__name__` included); open when nothing known
/// matches it, so that an unknown metric does not also raise label findings.
pub(super) fn selector_labels(exported: &Exported, vs: &VectorSelector) -> LabelSet {
    let mut out = LabelSet::of([METRIC_NAME_LABEL]);
    let mut any = false;
    for alt in alternatives(vs) {
        for (_, info) in candidates(exported, &alt) {
            any = true;
            out.names.extend(info.labels.keys().cloned());
            out.open |= info.open;
        }
    }
    if !any {
        out.open = true;
    }
    out
}

/// Whether matcher `m` can match some series of `info`.
fn can_match(m: &Matcher, info: &MetricInfo) -> bool {
    if info.open || m.is_match("") {
        return true;
    }
    match info.labels.get(&m.name) {
        None => false,
        Some(LabelValues::Unknown) => true,
        Some(LabelValues::Seen(v) | LabelValues::Exhaustive(v)) => v.iter().any(|x| m.is_match(x)),
    }
}

/// Edit distance counting a swap of neighbours as one edit (typos swap letters), for "did you
/// mean" hints; names are short.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, x) in d.iter_mut().enumerate().take(w) {
        *x = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j - 1] + cost)
                .min(d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The nearest of `options` to `word`, when near enough to be a likely typo.
fn nearest<'o>(word: &str, options: impl IntoIterator<Item = &'o str>) -> Option<&'o str> {
    options
        .into_iter()
        .map(|o| (distance(word, o), o))
        .filter(|(d, o)| *d > 0 && *d <= (word.len().max(o.len()) / 3).max(1))
        .min()
        .map(|(_, o)| o)
}

fn list<'s>(items: impl IntoIterator<Item = &'s String>) -> String {
    let v: Vec<&str> = items.into_iter().map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The metric a selector reads, for messages.
fn selector_text(vs: &VectorSelector) -> String {
    let s = vs.to_string();
    match s.find(" offset ").or_else(|| s.find(" @ ")) {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// A series feeding `histogram_quantile`: its name, its kind if exported, and whether a rate
/// came between it and the quantile.
struct Leaf {
    name: String,
    kind: Option<SeriesKind>,
    rated: bool,
    /// The recorded series it was reached through.
    via: Option<String>,
}

impl Checker<'_> {
    fn source_words(&self) -> &'static str {
        match self.exported.source {
            ExportedSource::Catalog => "is not in the reference server's metric catalog",
            ExportedSource::Record => "was not exported by the target in this run",
        }
    }

    /// Runs every check on `expr`; findings in the order met, without repeats.
    pub fn check(&self, expr: &Expr) -> Vec<Issue> {
        let mut out = Vec::new();
        self.walk(expr, false, &mut out);
        let mut seen = std::collections::HashSet::new();
        out.retain(|i: &Issue| seen.insert((i.code, i.message.clone())));
        out
    }

    fn walk(&self, expr: &Expr, in_absent: bool, out: &mut Vec<Issue>) {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs, in_absent, out),
            Expr::MatrixSelector(ms) => {
                self.selector(&ms.vs, in_absent, out);
                self.range(ms.range, &format!("range `[{}]`", fmt_ms(ms.range)), out);
            }
            Expr::Subquery(s) => {
                self.walk(&s.expr, in_absent, out);
                self.range(
                    s.range,
                    &format!("subquery range `[{}:]`", fmt_ms(s.range)),
                    out,
                );
            }
            Expr::Paren(p) => self.walk(&p.expr, in_absent, out),
            Expr::Unary(u) => self.walk(&u.expr, in_absent, out),
            Expr::Binary(b) => {
                self.walk(&b.lhs, in_absent, out);
                self.walk(&b.rhs, in_absent, out);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, in_absent, out);
                }
                self.walk(&a.expr, in_absent, out);
            }
            Expr::Call(c) => {
                let name = c.func.name;
                let absent = in_absent || matches!(name, "absent" | "absent_over_time");
                for a in &c.args.args {
                    self.walk(a, absent, out);
                }
                match name {
                    "rate" | "irate" | "increase" => {
                        if let Some(a) = c.args.args.first() {
                            self.rate_over_gauge(name, a, out);
                        }
                    }
                    "histogram_quantile" => {
                        if let Some(a) = c.args.args.get(1) {
                            self.quantile_input(a, out);
                        }
                    }
                    _ => {}
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    /// (a) and (b): does the selector select anything, and can its matchers match?
    fn selector(&self, vs: &VectorSelector, in_absent: bool, out: &mut Vec<Issue>) {
        let alts = alternatives(vs);
        let mut issues: Vec<Vec<Issue>> = Vec::new();
        for alt in &alts {
            issues.push(self.alternative(vs, alt, in_absent));
        }
        // A selector with `or` alternatives fails only when all of them do.
        if issues.iter().all(|i| !i.is_empty()) {
            if let Some(first) = issues.into_iter().next() {
                out.extend(first);
            }
        }
    }

    fn alternative(&self, vs: &VectorSelector, alt: &[Matcher], in_absent: bool) -> Vec<Issue> {
        let text = selector_text(vs);
        let cands = candidates(self.exported, alt);
        if cands.is_empty() {
            let (message, hint) = match equal_name(alt) {
                Some(name) if name == text => (
                    format!("`{name}` {}", self.source_words()),
                    self.unknown_name_hint(name),
                ),
                Some(name) => (
                    format!(
                        "`{name}` {}, so `{text}` selects nothing",
                        self.source_words()
                    ),
                    self.unknown_name_hint(name),
                ),
                None => (
                    format!("no exported metric name matches `{text}`"),
                    "check the `__name__` regular expression against the exported names".into(),
                ),
            };
            return vec![if in_absent {
                // `absent()` of a missing series is 1: the rule always fires.
                Issue {
                    severity: Severity::Warning,
                    code: Code::UnknownMetric,
                    message: format!("{message}; absent() of it is always 1"),
                    hint,
                }
            } else {
                Issue {
                    severity: Severity::Error,
                    code: Code::UnknownMetric,
                    message: format!("{message}: a rule over it can never fire"),
                    hint,
                }
            }];
        }
        let single = (cands.len() == 1).then(|| cands[0].0);
        let metric_words = match single {
            Some(n) => format!("`{n}`"),
            None => format!("none of the {} metrics `{text}` selects", cands.len()),
        };
        for m in alt.iter().filter(|m| m.name != METRIC_NAME_LABEL) {
            if cands.iter().any(|(_, info)| can_match(m, info)) {
                continue;
            }
            let having: Vec<&MetricInfo> = cands
                .iter()
                .map(|(_, i)| *i)
                .filter(|i| i.labels.contains_key(&m.name))
                .collect();
            if having.is_empty() {
                let names: std::collections::BTreeSet<&String> =
                    cands.iter().flat_map(|(_, i)| i.labels.keys()).collect();
                let hint = match nearest(&m.name, names.iter().map(|s| s.as_str())) {
                    Some(n) => format!(
                        "did you mean `{n}`? labels: {}",
                        list(names.iter().copied())
                    ),
                    None => format!("its labels: {}", list(names.iter().copied())),
                };
                return vec![Issue {
                    severity: Severity::Error,
                    code: Code::UnknownLabel,
                    message: format!(
                        "{metric_words} has no label `{}`, so `{m}` in `{text}` can never match",
                        m.name
                    ),
                    hint,
                }];
            }
            let mut values = std::collections::BTreeSet::new();
            let mut exhaustive = true;
            for i in &having {
                match i.labels.get(&m.name) {
                    Some(LabelValues::Exhaustive(v)) => values.extend(v.iter().cloned()),
                    Some(LabelValues::Seen(v)) => {
                        exhaustive = false;
                        values.extend(v.iter().cloned());
                    }
                    _ => exhaustive = false,
                }
            }
            let near = (m.op == MatchOp::Equal)
                .then(|| nearest(&m.value, values.iter().map(String::as_str)))
                .flatten();
            let hint = match near {
                Some(n) => format!(
                    "did you mean `{}=\"{n}\"`? values: {}",
                    m.name,
                    list(&values)
                ),
                None => format!("values of `{}`: {}", m.name, list(&values)),
            };
            return vec![if exhaustive {
                Issue {
                    severity: Severity::Error,
                    code: Code::ImpossibleLabelValue,
                    message: if having.iter().all(|i| i.kind == SeriesKind::Recorded) {
                        format!(
                            "`{m}` in `{text}` can never match: the rules that record {metric_words} set `{}` only to the listed values",
                            m.name
                        )
                    } else {
                        format!(
                            "`{m}` in `{text}` can never match: {metric_words} has `{}` only with the listed values",
                            m.name
                        )
                    },
                    hint,
                }
            } else {
                Issue {
                    severity: Severity::Warning,
                    code: Code::UnseenLabelValue,
                    message: format!(
                        "`{m}` in `{text}` matched no series of this run: {metric_words} never had such a `{}`",
                        m.name
                    ),
                    hint: format!("{hint}; a value the run never exercised may still be right"),
                }
            }];
        }
        Vec::new()
    }

    fn unknown_name_hint(&self, name: &str) -> String {
        if let Some(h) = self.exported.alternatives.get(name) {
            return h.clone();
        }
        let buckets = format!("{name}_bucket");
        if self.exported.metrics.contains_key(&buckets) {
            return format!(
                "`{name}` is a histogram: select `{name}_bucket` (with rate and `sum by (le)`), `{name}_sum` or `{name}_count`"
            );
        }
        for suffix in ["_total", "_count"] {
            if let Some(stem) = name.strip_suffix(suffix) {
                if self.exported.metrics.contains_key(stem) {
                    return format!("did you mean `{stem}`?");
                }
            }
            let with = format!("{name}{suffix}");
            if self.exported.metrics.contains_key(&with) {
                return format!("did you mean `{with}`?");
            }
        }
        match nearest(name, self.exported.metrics.keys().map(String::as_str)) {
            Some(n) => format!("did you mean `{n}`?"),
            None => "names written by recording rules count as exported: lint every rule file that is loaded together".into(),
        }
    }

    /// (e): a window shorter than two scrape intervals (after time_scale) often holds fewer
    /// than two samples, and rate() of one sample is nothing.
    fn range(&self, range: Duration, what: &str, out: &mut Vec<Issue>) {
        let k = self.opts.time_scale;
        let effective = scale_duration(range, k);
        let floor = self.opts.scrape_interval.saturating_mul(2);
        if effective >= floor {
            return;
        }
        let scaled = if (k - 1.0).abs() > f64::EPSILON {
            format!(" is {} at time_scale {k} and", fmt_ms(effective))
        } else {
            String::new()
        };
        // Saturating: `k` comes from the caller and may be anything.
        let min_written =
            Duration::try_from_secs_f64(floor.as_secs_f64() * k).unwrap_or(Duration::MAX);
        out.push(Issue {
            severity: Severity::Warning,
            code: Code::ShortRange,
            message: format!(
                "{what}{scaled} is under twice the scrape interval ({}): the window often holds fewer than two samples, so rate() and the like return nothing",
                fmt_ms(self.opts.scrape_interval)
            ),
            hint: format!(
                "write at least `[{}]`{}; four scrape intervals are safer",
                fmt_ms(min_written),
                if scaled.is_empty() { String::new() } else { format!(" (time_scale {k})") }
            ),
        });
    }

    /// (d): `rate`/`irate`/`increase` of a gauge.
    fn rate_over_gauge(&self, func: &str, arg: &Expr, out: &mut Vec<Issue>) {
        let vs = match arg {
            Expr::MatrixSelector(ms) => &ms.vs,
            Expr::Subquery(s) => match unparen(&s.expr) {
                Expr::VectorSelector(vs) => vs,
                _ => return,
            },
            _ => return,
        };
        let cands: Vec<(&str, &MetricInfo)> = alternatives(vs)
            .iter()
            .flat_map(|a| candidates(self.exported, a))
            .collect();
        if cands.is_empty() || !cands.iter().all(|(_, i)| i.kind.is_gauge_like()) {
            return;
        }
        let names: Vec<&str> = cands.iter().map(|(n, _)| *n).collect();
        let kind = cands[0].1.kind.describe();
        out.push(Issue {
            severity: Severity::Error,
            code: Code::RateOverGauge,
            message: format!(
                "{func}() over `{}`, {kind}: {func}() reads every decrease as a counter reset, so the result is meaningless",
                names.join("`, `")
            ),
            hint: "use the gauge directly, or delta()/deriv() for its change, or avg_over_time() to smooth it".into(),
        });
    }

    /// (c) and (d): `histogram_quantile` needs the rate of `_bucket` series, with `le` kept.
    fn quantile_input(&self, arg: &Expr, out: &mut Vec<Issue>) {
        let mut leaves = Vec::new();
        self.leaves(arg, false, None, 0, &mut leaves);
        for leaf in &leaves {
            let via = leaf
                .via
                .as_ref()
                .map(|r| format!(" (through the recorded `{r}`)"))
                .unwrap_or_default();
            let is_bucket = match leaf.kind {
                Some(SeriesKind::Bucket) => true,
                Some(SeriesKind::Untyped) | None => leaf.name.ends_with("_bucket"),
                Some(_) => false,
            };
            if !is_bucket {
                let stem = leaf
                    .name
                    .strip_suffix("_count")
                    .or(leaf.name.strip_suffix("_sum"));
                let family = stem.unwrap_or(&leaf.name);
                let bucket = format!("{family}_bucket");
                let hint = if self.exported.metrics.contains_key(&bucket) {
                    format!("histogram_quantile(0.95, sum by (le) (rate({bucket}[5m])))")
                } else {
                    "histogram_quantile reads a classic histogram's cumulative `_bucket` series, by `le`".into()
                };
                let kind = leaf
                    .kind
                    .map(|k| format!(", {}", k.describe()))
                    .unwrap_or_default();
                out.push(Issue {
                    severity: Severity::Error,
                    code: Code::QuantileNotBucket,
                    message: format!(
                        "histogram_quantile over `{}`{kind}{via}, which is not a histogram's `_bucket` series: it returns nothing, so the rule never fires",
                        leaf.name
                    ),
                    hint,
                });
            } else if !leaf.rated {
                out.push(Issue {
                    severity: Severity::Error,
                    code: Code::QuantileWithoutRate,
                    message: format!(
                        "histogram_quantile over `{}`{via} without rate(): the buckets count since the target started, so the quantile covers its whole life and hardly moves",
                        leaf.name
                    ),
                    hint: format!(
                        "histogram_quantile(0.95, sum by (le) (rate({}[5m])))",
                        leaf.name
                    ),
                });
            }
        }
        let labels = output_labels(arg, &|vs| selector_labels(self.exported, vs));
        if labels.lacks("le") {
            let text = arg.to_string();
            out.push(Issue {
                severity: Severity::Error,
                code: Code::QuantileWithoutLe,
                message: format!(
                    "histogram_quantile's input `{}` has no `le` label (an aggregation dropped it): it returns nothing",
                    shorten(&text, 100)
                ),
                hint: "keep `le` in every aggregation on the way: `sum by (le, tier) (...)`; `without (...)` must not list `le`".into(),
            });
        }
    }

    /// The series an expression's values come from, through value-preserving operations.
    fn leaves(
        &self,
        expr: &Expr,
        rated: bool,
        via: Option<&str>,
        depth: usize,
        out: &mut Vec<Leaf>,
    ) {
        match expr {
            Expr::VectorSelector(vs) => {
                for alt in alternatives(vs) {
                    let Some(name) = equal_name(&alt) else {
                        continue;
                    };
                    let kind = self.exported.metrics.get(name).map(|i| i.kind);
                    if kind == Some(SeriesKind::Recorded) {
                        if depth < MAX_RECORD_DEPTH {
                            for e in self.recorded.get(name).into_iter().flatten() {
                                self.leaves(e, rated, Some(via.unwrap_or(name)), depth + 1, out);
                            }
                        }
                        continue;
                    }
                    out.push(Leaf {
                        name: name.to_owned(),
                        kind,
                        rated,
                        via: via.map(str::to_owned),
                    });
                }
            }
            Expr::MatrixSelector(ms) => {
                self.leaves(&Expr::VectorSelector(ms.vs.clone()), rated, via, depth, out)
            }
            Expr::Paren(p) => self.leaves(&p.expr, rated, via, depth, out),
            Expr::Unary(u) => self.leaves(&u.expr, rated, via, depth, out),
            Expr::Subquery(s) => self.leaves(&s.expr, rated, via, depth, out),
            Expr::Aggregate(a) => self.leaves(&a.expr, rated, via, depth, out),
            Expr::Binary(b) => {
                self.leaves(&b.lhs, rated, via, depth, out);
                self.leaves(&b.rhs, rated, via, depth, out);
            }
            Expr::Call(c) => match c.func.name {
                "rate" | "irate" | "increase" => {
                    if let Some(a) = c.args.args.first() {
                        self.leaves(a, true, via, depth, out);
                    }
                }
                // Their results are not bucket counts.
                "histogram_quantile" | "histogram_fraction" | "absent" | "absent_over_time"
                | "vector" | "scalar" | "time" | "timestamp" | "count_over_time" | "changes"
                | "resets" => {}
                _ => {
                    if let Some(a) = c.args.args.iter().find(|a| {
                        matches!(
                            a.value_type(),
                            promql_parser::parser::value::ValueType::Vector
                                | promql_parser::parser::value::ValueType::Matrix
                        )
                    }) {
                        self.leaves(a, rated, via, depth, out);
                    }
                }
            },
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// `s` cut to about `max` characters.
pub(super) fn shorten(s: &str, max: usize) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max).collect();
    format!("{cut}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_hints() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("fsat", "fast"), 1);
        assert_eq!(distance("", "ab"), 2);
        assert_eq!(nearest("tier", ["tire", "model"]), Some("tire"));
        assert_eq!(nearest("tier", ["model", "status"]), None);
    }
}
