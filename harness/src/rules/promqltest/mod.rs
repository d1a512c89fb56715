//! The PromQL conformance runner: Prometheus' own test scripts (`promqltest`, see
//! `../shared/promqltest/FORMAT.md`) run against [`Engine`].
//!
//! - [`script`] parses the format (load, clear, eval and its expectations);
//! - [`series`] the series notation (`0+1x3 _ stale`), durations, numbers, quoted strings;
//! - [`compare`] compares results as Go's `promqltest` does;
//! - [`annotations`] checks `expect warn/info/no_warn/no_info` against the engine's
//!   annotations, as Go does;
//! - [`baseline`] the gate's list of known failures.
//!
//! What runs as in Go: annotations are checked on the eval's own query (an instant eval's, or
//! a range eval's), not on the range-mode re-run nor when the eval expects a failure; each
//! instant eval is also run as a range query around its time (one minute either side,
//! one-minute step) and the middle step must match too, unless it is ordered, expects a range
//! vector or a string, or uses `start()`/`end()`/`range()`/`step()`.
//!
//! What does not: the `@`-modifier re-runs Go adds to instant evals need an AST rewrite and
//! are not done. Native histograms are out of scope (they are not loaded): an eval is
//! **skipped** when an expected value uses `{{...}}` notation, or when its query names a
//! metric that was loaded with histogram samples (or as a native histogram with custom buckets
//! by `load_with_nhcb`) since the last `clear`, or selects such a series by its labels. So the
//! annotations only native histograms raise (mixed floats and histograms, ignored histograms,
//! counter/gauge histogram hints, custom buckets) are never expected of the engine.

pub mod annotations;
pub mod baseline;
pub mod compare;
pub mod script;
pub mod series;

pub use compare::{almost_equal, compare, Frame, Got};
pub use script::{parse_script, Command, Eval, EvalKind, MsgMatch, Script, ScriptError};

use super::eval::{selector, Evaluator};
use super::{parse, Annotated, Engine, QueryError, Value};
use crate::scrape::{Labels, SeriesStore, METRIC_NAME_LABEL};
use promql_parser::parser::{Expr, VectorSelector};
use regex::Regex;
use series::SeqValue;
use std::collections::BTreeSet;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::OnceLock;

/// How many differences a failure shows.
pub const SHOWN_DIFFERENCES: usize = 5;

/// A case's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything compared matched.
    Pass,
    /// Something differed.
    Fail,
    /// Out of scope (native histograms).
    Skip,
}

/// One eval (or a load that could not be applied) and its outcome.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The file's name (without folders), e.g. `functions.test`.
    pub file: String,
    /// 1-based line of the eval.
    pub line: usize,
    /// The query.
    pub query: String,
    /// Pass, fail or skip.
    pub status: Status,
    /// For a failure, what differed; for a skip, why.
    pub details: Vec<String>,
    /// How many annotation expectations (`expect warn/info/no_warn/no_info`) were checked:
    /// none for a skipped case or one that expects the query to fail.
    pub annotation_expectations: usize,
}

impl CaseResult {
    /// `file:line`, the case's identity in the baseline.
    pub fn id(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// The first detail on one line, shortened: the baseline's reason.
    pub fn reason(&self) -> String {
        let first = self.details.first().map_or("", String::as_str);
        let one_line: String = first
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if one_line.chars().count() > 160 {
            let cut: String = one_line.chars().take(157).collect();
            format!("{cut}...")
        } else {
            one_line
        }
    }
}

impl fmt::Display for CaseResult {
    /// `file:line: FAIL query` and the first differences indented below.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        write!(f, "{}:{}: {word} {}", self.file, self.line, self.query)?;
        for d in self.details.iter().take(SHOWN_DIFFERENCES) {
            write!(f, "\n    {d}")?;
        }
        if self.details.len() > SHOWN_DIFFERENCES {
            write!(
                f,
                "\n    ... and {} more",
                self.details.len() - SHOWN_DIFFERENCES
            )?;
        }
        Ok(())
    }
}

/// A file that could not be read or parsed.
#[derive(Debug, Clone)]
pub struct FileError {
    /// The path as given.
    pub path: String,
    /// 1-based line, when the script is at fault.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// Pass/fail/skip counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped (out of scope).
    pub skipped: usize,
}

impl Counts {
    /// Counts of `cases`.
    pub fn of<'a>(cases: impl IntoIterator<Item = &'a CaseResult>) -> Counts {
        let mut c = Counts::default();
        for r in cases {
            match r.status {
                Status::Pass => c.passed += 1,
                Status::Fail => c.failed += 1,
                Status::Skip => c.skipped += 1,
            }
        }
        c
    }

    /// Cases in scope (not skipped).
    pub fn in_scope(&self) -> usize {
        self.passed + self.failed
    }
}

impl fmt::Display for Counts {
    /// `N passed, N failed, N skipped`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// The outcome of one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file's name (without folders).
    pub file: String,
    /// Every case, in file order.
    pub cases: Vec<CaseResult>,
}

impl FileReport {
    /// The counts.
    pub fn counts(&self) -> Counts {
        Counts::of(&self.cases)
    }
}

/// Reads, parses and runs one script file.
pub fn run_file(path: &Path, engine: &Engine) -> Result<FileReport, FileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        path: shown.clone(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    let script = parse_script(&text).map_err(|e| FileError {
        path: shown,
        line: Some(e.line),
        message: e.message,
    })?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    Ok(run_script(&name, &script, engine))
}

/// `firedrill promqltest FILE...`: runs the files, writes each failure and then a line
/// `N passed, N failed, N skipped` to `out`, errors of unreadable or malformed files
/// (`file:line: ...`) to `err`. Returns the exit code: 0 nothing failed, 1 some case failed,
/// 2 some file could not be read or parsed.
pub fn run_cli(
    paths: &[std::path::PathBuf],
    engine: &Engine,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> u8 {
    let mut cases = Vec::new();
    let mut bad_file = false;
    for p in paths {
        match run_file(p, engine) {
            Ok(r) => {
                for c in r.cases.iter().filter(|c| c.status == Status::Fail) {
                    let _ = writeln!(out, "{c}");
                }
                cases.extend(r.cases);
            }
            Err(e) => {
                bad_file = true;
                let _ = writeln!(err, "firedrill promqltest: {e}");
            }
        }
    }
    let counts = Counts::of(&cases);
    let _ = writeln!(out, "{counts}");
    if bad_file {
        2
    } else if counts.failed > 0 {
        1
    } else {
        0
    }
}

/// Runs a parsed script on a fresh store; `file` names the cases.
pub fn run_script(file: &str, script: &Script, engine: &Engine) -> FileReport {
    let mut runner = Runner {
        file,
        engine,
        store: SeriesStore::new(),
        histogram_names: BTreeSet::new(),
        histogram_series: SeriesStore::new(),
        cases: Vec::new(),
    };
    for cmd in &script.commands {
        match cmd {
            Command::Clear { .. } => {
                runner.store = SeriesStore::new();
                runner.histogram_names.clear();
                runner.histogram_series = SeriesStore::new();
            }
            Command::Load(l) => runner.load(l),
            Command::Eval(e) => {
                let r = runner.eval(e);
                runner.cases.push(r);
            }
        }
    }
    FileReport {
        file: file.to_string(),
        cases: runner.cases,
    }
}

struct Runner<'a> {
    file: &'a str,
    engine: &'a Engine,
    store: SeriesStore,
    /// Metric names with native-histogram samples since the last clear.
    histogram_names: BTreeSet<String>,
    /// The series with native-histogram samples since the last clear (one placeholder sample
    /// each), to find queries that select one by its labels rather than its name.
    histogram_series: SeriesStore,
    cases: Vec<CaseResult>,
}

/// The base name of a classic histogram series (`x_bucket`, `x_count`, `x_sum` -> `x`).
fn histogram_base(name: &str) -> Option<&str> {
    ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
}

impl Runner<'_> {
    fn load(&mut self, l: &script::Load) {
        for s in &l.series {
            let name = s.labels.metric_name().unwrap_or_default();
            if s.histogram {
                self.histogram_names.insert(name.to_string());
                // A series already there keeps its placeholder: the error is expected.
                let _ = self.histogram_series.append(s.labels.clone(), 0, 0.0);
                continue;
            }
            if l.with_nhcb {
                if let Some(base) = histogram_base(name) {
                    self.histogram_names.insert(base.to_string());
                    let mut native = s.labels.clone();
                    native.remove("le");
                    native.set(METRIC_NAME_LABEL, base);
                    let _ = self.histogram_series.append(native, 0, 0.0);
                }
            }
            for (i, v) in s.values.iter().enumerate() {
                let SeqValue::Float(v) = v else { continue };
                let t = (i as i64).saturating_mul(l.interval_ms);
                if let Err(e) = self.store.append(s.labels.clone(), t, *v) {
                    self.cases.push(CaseResult {
                        file: self.file.to_string(),
                        line: s.line,
                        query: "(load)".into(),
                        status: Status::Fail,
                        details: vec![format!(
                            "cannot load {} at t={t}: sample not after the series' last one \
                             (t={})",
                            s.labels, e.last_ms
                        )],
                        annotation_expectations: 0,
                    });
                    break;
                }
            }
        }
    }

    fn case(&self, ev: &Eval, status: Status, details: Vec<String>) -> CaseResult {
        CaseResult {
            file: self.file.to_string(),
            line: ev.line,
            query: ev.query.clone(),
            status,
            details,
            annotation_expectations: if status == Status::Skip || ev.fail.is_some() {
                0
            } else {
                ev.annotation_expectations()
            },
        }
    }

    fn skip_reason(&self, ev: &Eval) -> Option<String> {
        if ev.expects_histogram {
            return Some("native histograms: the expected result is a native histogram".into());
        }
        if self.histogram_names.is_empty() {
            return None;
        }
        let hit = query_words(&ev.query)
            .into_iter()
            .find(|w| self.histogram_names.contains(w))
            .or_else(|| {
                self.histogram_names
                    .iter()
                    .find(|n| name_matchers(&ev.query).iter().any(|m| m(n)))
                    .cloned()
            });
        if let Some(hit) = hit {
            return Some(format!(
                "native histograms: the query reads {hit:?}, loaded as a native histogram"
            ));
        }
        let hit = selected_series(&self.histogram_series, &ev.query)?;
        Some(format!(
            "native histograms: the query selects {hit}, loaded as a native histogram"
        ))
    }

    fn eval(&self, ev: &Eval) -> CaseResult {
        if let Some(reason) = self.skip_reason(ev) {
            return self.case(ev, Status::Skip, vec![reason]);
        }
        let details = match ev.kind {
            EvalKind::Range {
                start_ms,
                end_ms,
                step_ms,
            } => {
                let res = guarded(|| {
                    self.engine.range_query_with_annotations(
                        &self.store,
                        &ev.query,
                        start_ms,
                        end_ms,
                        step_ms,
                    )
                });
                let frame = Frame {
                    start: start_ms,
                    end: end_ms,
                    step: step_ms,
                };
                self.check(ev, res, Some(frame))
            }
            EvalKind::Instant { .. } => self.instant(ev),
        };
        let status = if details.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        };
        self.case(ev, status, details)
    }

    /// Checks a result against the failure expectation, then its annotations, then compares
    /// it (Go's order).
    fn check(
        &self,
        ev: &Eval,
        res: Result<Annotated, QueryError>,
        frame: Option<Frame>,
    ) -> Vec<String> {
        match (res, &ev.fail) {
            (Err(e), Some(m)) => {
                if m.matches(&e.message) {
                    Vec::new()
                } else {
                    vec![format!(
                        "expected an error matching {m}, got {:?} error: {}",
                        e.kind, e.message
                    )]
                }
            }
            (Err(e), None) => vec![format!("query failed ({:?}): {}", e.kind, e.message)],
            (Ok(a), Some(_)) => vec![format!(
                "expected the query to fail, it returned {}",
                view(&a.value).describe()
            )],
            (Ok(a), None) => {
                let mut diffs = annotations::check(ev, &a.annotations);
                diffs.extend(compare(ev, &view(&a.value), frame));
                diffs
            }
        }
    }

    fn instant(&self, ev: &Eval) -> Vec<String> {
        let Some(t) = ev.instant_time() else {
            return vec!["internal: not an instant eval".into()];
        };
        let res = guarded(|| {
            self.engine
                .instant_query_with_annotations(&self.store, &ev.query, t)
        });
        let frame = ev
            .range_vector
            .map(|(start, end, step)| Frame { start, end, step });
        let instant_was_scalar = matches!(
            res,
            Ok(Annotated {
                value: Value::Scalar { .. },
                ..
            })
        );
        let failing = res.is_err() || ev.fail.is_some();
        let diffs = self.check(ev, res, frame);
        if !diffs.is_empty() || failing {
            return diffs;
        }
        // The same query in range mode must agree at the middle step.
        if ev.ordered
            || ev.range_vector.is_some()
            || ev.expected_string.is_some()
            || query_context_funcs().is_match(&ev.query)
        {
            return diffs;
        }
        // Go does not check this run's annotations.
        let res = guarded(|| {
            self.engine
                .range_query(&self.store, &ev.query, t - 60_000, t + 60_000, 60_000)
        });
        let m = match res {
            Err(e) => {
                return vec![format!(
                    "range mode: query failed ({:?}): {}",
                    e.kind, e.message
                )]
            }
            Ok(Value::Matrix(m)) => m,
            Ok(other) => {
                return vec![format!(
                    "range mode: expected a matrix, got {}",
                    view(&other).describe()
                )]
            }
        };
        let mut sorted = Vec::new();
        for w in m.windows(2) {
            if w[0].labels > w[1].labels {
                sorted.push(format!(
                    "range mode: matrix not sorted by labels: {} before {}",
                    w[0].labels, w[1].labels
                ));
                break;
            }
        }
        let at_t: Vec<_> = m
            .iter()
            .filter_map(|s| {
                s.points
                    .iter()
                    .find(|(pt, _)| *pt == t)
                    .map(|(_, v)| (&s.labels, *v))
            })
            .collect();
        let got = if instant_was_scalar {
            match at_t.first() {
                Some((_, v)) => Got::Scalar(*v),
                None => return vec!["range mode: no point at the evaluation time".into()],
            }
        } else {
            Got::Vector(at_t)
        };
        sorted.extend(
            compare(ev, &got, None)
                .into_iter()
                .map(|d| format!("range mode: {d}")),
        );
        sorted
    }
}

/// Runs the engine, turning a panic into an execution error so one case cannot stop the run.
fn guarded<T>(f: impl FnOnce() -> Result<T, QueryError>) -> Result<T, QueryError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            Err(QueryError {
                kind: super::QueryErrorKind::Exec,
                message: format!("the engine panicked: {msg}"),
            })
        }
    }
}

fn query_context_funcs() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"(start|end|range|step)\(\)").expect("static pattern"))
}

/// The first series of `store` that a selector of `query` selects, by its matchers (times
/// aside); `None` also when the query does not parse.
fn selected_series(store: &SeriesStore, query: &str) -> Option<Labels> {
    fn walk(e: &Expr, f: &mut impl FnMut(&VectorSelector) -> bool) -> bool {
        match e {
            Expr::VectorSelector(vs) => f(vs),
            Expr::MatrixSelector(ms) => f(&ms.vs),
            Expr::Aggregate(a) => {
                a.param.as_deref().is_some_and(|p| walk(p, f)) || walk(&a.expr, f)
            }
            Expr::Unary(u) => walk(&u.expr, f),
            Expr::Binary(b) => walk(&b.lhs, f) || walk(&b.rhs, f),
            Expr::Paren(p) => walk(&p.expr, f),
            Expr::Subquery(s) => walk(&s.expr, f),
            Expr::Call(c) => c.args.args.iter().any(|a| walk(a, f)),
            _ => false,
        }
    }
    if store.series_count() == 0 {
        return None;
    }
    let expr = parse(query).ok()?;
    let ev = Evaluator::new(store, 0, 0, 0, 0);
    let mut hit = None;
    walk(&expr, &mut |vs| {
        hit = selector::select(&ev, vs)
            .first()
            .and_then(|&r| store.labels(r))
            .cloned();
        hit.is_some()
    });
    hit
}

/// A result as the comparison sees it.
pub fn view(v: &Value) -> Got<'_> {
    match v {
        Value::Scalar { v, .. } => Got::Scalar(*v),
        Value::String { s, .. } => Got::String(s),
        Value::Vector(samples) => Got::Vector(samples.iter().map(|s| (&s.labels, s.v)).collect()),
        Value::Matrix(series) => Got::Matrix(
            series
                .iter()
                .map(|s| (&s.labels, s.points.as_slice()))
                .collect(),
        ),
    }
}

/// A test on a metric name.
pub type NamePredicate = Box<dyn Fn(&str) -> bool>;

/// The `__name__` matchers of a query other than `=` (`=~`, `!~`, `!=`), as predicates on a
/// metric name (anchored regexes, as PromQL's). A matcher that does not compile is left out.
pub fn name_matchers(q: &str) -> Vec<NamePredicate> {
    let mut out: Vec<NamePredicate> = Vec::new();
    for (i, _) in q.match_indices(METRIC_NAME_LABEL) {
        let rest = q[i + METRIC_NAME_LABEL.len()..].trim_start();
        let (op, rest) = match rest.get(..2) {
            Some(op @ ("=~" | "!~" | "!=")) => (op, rest[2..].trim_start()),
            _ => continue,
        };
        let Ok((lit, _)) = series::take_quoted(rest) else {
            continue;
        };
        match op {
            "!=" => out.push(Box::new(move |n: &str| n != lit)),
            _ => {
                let Ok(re) = Regex::new(&format!("^(?:{lit})$")) else {
                    continue;
                };
                let negate = op == "!~";
                out.push(Box::new(move |n: &str| re.is_match(n) != negate));
            }
        }
    }
    out
}

/// The names a query may read: its identifiers, and the words inside its string literals (so
/// `{__name__="x"}` and `{__name__=~"x.*"}` count as naming `x`).
pub fn query_words(q: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = q.chars().peekable();
    let word_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            let mut body = String::new();
            while let Some(d) = chars.next() {
                if d == c {
                    break;
                }
                if d == '\\' && c != '`' {
                    chars.next();
                    body.push(' ');
                    continue;
                }
                body.push(d);
            }
            words.extend(
                body.split(|d: char| !word_char(d))
                    .filter(|w| !w.is_empty())
                    .map(str::to_string),
            );
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let mut w = String::from(c);
            while let Some(&d) = chars.peek() {
                if !word_char(d) {
                    break;
                }
                w.push(d);
                chars.next();
            }
            if w != METRIC_NAME_LABEL {
                words.push(w);
            }
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_words_include_identifiers_and_strings() {
        let w = query_words(r#"histogram_quantile(0.5, rate({__name__=~"foo\\d*"}[5m])) + bar"#);
        for x in ["histogram_quantile", "rate", "foo", "bar"] {
            assert!(w.iter().any(|y| y == x), "{x} in {w:?}");
        }
        assert!(!w.iter().any(|y| y == "__name__"));
    }

    #[test]
    fn name_matchers_are_anchored_regexes() {
        let m = name_matchers(r#"count_over_time({__name__=~"data(_histogram|_sparse)?"}[2m])"#);
        assert_eq!(m.len(), 1);
        assert!(m[0]("data_histogram") && m[0]("data") && !m[0]("data_x"));
        let m = name_matchers(r#"{__name__!~"a.*", __name__ != 'b'} + {__name__="c"}"#);
        assert_eq!(m.len(), 2);
        assert!(!m[0]("ab") && m[0]("b") && !m[1]("b") && m[1]("c"));
    }

    #[test]
    fn reasons_are_one_short_line() {
        let r = CaseResult {
            file: "f.test".into(),
            line: 3,
            query: "x".into(),
            status: Status::Fail,
            details: vec![format!("a\nb{}", "c".repeat(300))],
            annotation_expectations: 0,
        };
        assert_eq!(r.id(), "f.test:3");
        let reason = r.reason();
        assert!(!reason.contains('\n') && reason.chars().count() == 160);
    }

    #[test]
    fn counts_print_the_summary_line() {
        let c = Counts {
            passed: 3,
            failed: 1,
            skipped: 2,
        };
        assert_eq!(c.to_string(), "3 passed, 1 failed, 2 skipped");
        assert_eq!(c.in_scope(), 4);
    }
}
