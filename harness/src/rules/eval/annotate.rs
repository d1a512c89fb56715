//! Annotations: the warnings and infos Prometheus attaches to a query's result, collected as a
//! side channel of evaluation (`util/annotations/annotations.go`, raised in `promql/engine.go`
//! and `functions.go`).
//!
//! The evaluator stays pure: an [`Evaluator`](super::Evaluator) may carry a [`Notes`]
//! collector, and the places Prometheus annotates add to it. promql-parser's AST has no source
//! positions, so a note records which node it is about ([`Anchor`], by address: the AST is
//! borrowed, unchanged, for the whole evaluation) and [`Notes::finish`] finds that node's start
//! in the query text afterwards, for the notes actually raised only.
//!
//! Notes are deduplicated as Prometheus deduplicates them: by kind and message without the
//! position, the latest position winning, except that `histogram_quantile`'s monotonicity
//! info accumulates its statistics instead.

use crate::rules::functions::time::civil;
use crate::rules::value::{Annotation, AnnotationKind, Position};
use promql_parser::parser::{AggregateExpr, Call, Expr};
use std::cell::RefCell;
use std::collections::HashMap;

/// `PromQL warning: sort is ineffective ...`: `sort` and friends in a range query, whose result
/// is always ordered by labels.
pub const SORT_IN_RANGE_QUERY: &str =
    "sort is ineffective for range queries since results are always ordered by labels";

/// The base text of `histogram_quantile`'s monotonicity info.
pub const FORCED_MONOTONICITY: &str = "input to histogram_quantile needed to be fixed for \
     monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)";

/// `quantile value should be between 0 and 1, got <q>`.
pub fn invalid_quantile(q: f64) -> String {
    format!(
        "quantile value should be between 0 and 1, got {}",
        go_format_g(q, None)
    )
}

/// Whether Prometheus warns about quantile `q` (NaN or outside `[0, 1]`).
pub fn is_invalid_quantile(q: f64) -> bool {
    q.is_nan() || !(0.0..=1.0).contains(&q)
}

/// `ratio value should be between -1 and 1, got <r>, capping to <to>` (`limit_ratio`).
pub fn invalid_ratio(r: f64, to: f64) -> String {
    format!(
        "ratio value should be between -1 and 1, got {}, capping to {}",
        go_format_g(r, None),
        go_format_g(to, None)
    )
}

/// `bucket label "le" is missing or has a malformed value of "<le>"`, then `for metric name
/// "<name>"` when the sample has a name.
pub fn bad_bucket_label(metric: &str, le: &str) -> String {
    with_metric_name(
        format!(
            "bucket label \"le\" is missing or has a malformed value of {}",
            go_quote(le)
        ),
        metric,
    )
}

/// `metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "<name>"`.
pub fn possible_non_counter(metric: &str) -> String {
    format!(
        "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {}",
        go_quote(metric)
    )
}

/// Whether `rate`/`increase` over a series named `name` earns [`possible_non_counter`]: a
/// name that does not end as counters' (and classic histograms' counter parts) do.
pub fn may_not_be_counter(name: &str) -> bool {
    !name.is_empty()
        && !["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Prometheus' `maybeAddMetricName`.
fn with_metric_name(message: String, metric: &str) -> String {
    if metric.is_empty() {
        message
    } else {
        format!("{message} for metric name {}", go_quote(metric))
    }
}

/// The expression an annotation is about, by address in the evaluated AST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// A function call itself (`sort(x)` starts at `sort`).
    Call(usize),
    /// An argument of a function call, with the parentheses around it unwrapped as Prometheus'
    /// evaluator unwraps them.
    Arg {
        /// The call's address.
        call: usize,
        /// 0-based argument index.
        arg: usize,
    },
    /// The parameter of an aggregation (`quantile(2, x)`: the `2`), parentheses unwrapped.
    Param(usize),
}

impl Anchor {
    /// The call `c`.
    pub fn call(c: &Call) -> Anchor {
        Anchor::Call(c as *const Call as usize)
    }

    /// Argument `arg` of the call `c`.
    pub fn arg(c: &Call, arg: usize) -> Anchor {
        Anchor::Arg {
            call: c as *const Call as usize,
            arg,
        }
    }

    /// The parameter of the aggregation `a`.
    pub fn param(a: &AggregateExpr) -> Anchor {
        Anchor::Param(a as *const AggregateExpr as usize)
    }
}

/// Where `histogram_quantile` had to raise decreasing bucket counts, for one histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonotonicityFix {
    /// The lowest upper bound whose count was raised.
    pub min_bucket: f64,
    /// The highest upper bound whose count was raised.
    pub max_bucket: f64,
    /// The largest amount a count was raised by.
    pub max_diff: f64,
}

/// Monotonicity fixes merged across samples and steps, as Prometheus merges them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FixStats {
    min_ts: i64,
    max_ts: i64,
    fix: MonotonicityFix,
    /// How many fixes were merged.
    samples: u64,
}

impl FixStats {
    fn merge(&mut self, other: FixStats) {
        self.min_ts = self.min_ts.min(other.min_ts);
        self.max_ts = self.max_ts.max(other.max_ts);
        self.fix.min_bucket = self.fix.min_bucket.min(other.fix.min_bucket);
        self.fix.max_bucket = self.fix.max_bucket.max(other.fix.max_bucket);
        self.fix.max_diff = self.fix.max_diff.max(other.fix.max_diff);
        self.samples += other.samples;
    }

    /// Prometheus' detail: `, from buckets 1 to 5, with a max diff of 2, over 3 samples from
    /// <rfc3339> to <rfc3339>` (the times in whole seconds).
    fn render(&self) -> String {
        format!(
            ", from buckets {} to {}, with a max diff of {}, over {} samples from {} to {}",
            go_format_g(self.fix.min_bucket, None),
            go_format_g(self.fix.max_bucket, None),
            go_format_g(self.fix.max_diff, Some(2)),
            self.samples,
            rfc3339(self.min_ts / 1000),
            rfc3339(self.max_ts / 1000),
        )
    }
}

#[derive(Debug)]
struct Note {
    kind: AnnotationKind,
    message: String,
    anchor: Anchor,
    fixes: Option<FixStats>,
}

#[derive(Debug, Default)]
struct Collected {
    notes: Vec<Note>,
    index: HashMap<(AnnotationKind, String), usize>,
}

/// The annotations of one evaluation, as it raises them.
#[derive(Debug, Default)]
pub struct Notes {
    collected: RefCell<Collected>,
}

impl Notes {
    /// A collector with nothing in it.
    pub fn new() -> Notes {
        Notes::default()
    }

    /// Adds an annotation; one with the same kind and message replaces its position (the
    /// latest wins, as in Prometheus' annotation map).
    pub fn add(&self, kind: AnnotationKind, anchor: Anchor, message: String) {
        // Nothing holds the borrow across calls; if it were held, losing a note beats a panic.
        let Ok(mut c) = self.collected.try_borrow_mut() else {
            return;
        };
        let key = (kind, message);
        if let Some(&i) = c.index.get(&key) {
            c.notes[i].anchor = anchor;
            return;
        }
        let n = c.notes.len();
        c.notes.push(Note {
            kind,
            message: key.1.clone(),
            anchor,
            fixes: None,
        });
        c.index.insert(key, n);
    }

    /// Adds `histogram_quantile`'s monotonicity info for one histogram at `t_ms`; repeated
    /// ones accumulate their statistics (Prometheus' `histogramQuantileForcedMonotonicityErr`).
    /// `metric` is empty unless the metric name is still known.
    pub fn add_forced_monotonicity(
        &self,
        anchor: Anchor,
        metric: &str,
        t_ms: i64,
        fix: MonotonicityFix,
    ) {
        let Ok(mut c) = self.collected.try_borrow_mut() else {
            return;
        };
        let stats = FixStats {
            min_ts: t_ms,
            max_ts: t_ms,
            fix,
            samples: 1,
        };
        let key = (
            AnnotationKind::Info,
            with_metric_name(FORCED_MONOTONICITY.to_string(), metric),
        );
        if let Some(&i) = c.index.get(&key) {
            match &mut c.notes[i].fixes {
                Some(s) => s.merge(stats),
                none => *none = Some(stats),
            }
            return;
        }
        let n = c.notes.len();
        c.notes.push(Note {
            kind: key.0,
            message: key.1.clone(),
            anchor,
            fixes: Some(stats),
        });
        c.index.insert(key, n);
    }

    /// Whether nothing was raised.
    pub fn is_empty(&self) -> bool {
        self.collected
            .try_borrow()
            .map_or(true, |c| c.notes.is_empty())
    }

    /// The annotations, in the order first raised. With the `query` text that `expr` was
    /// parsed from, each gets the position of the expression it is about (left out where that
    /// expression cannot be found); without it, none.
    pub fn finish(self, expr: &Expr, query: Option<&str>) -> Vec<Annotation> {
        let collected = self.collected.into_inner();
        let tokens = query.map(tokenize);
        collected
            .notes
            .into_iter()
            .map(|n| {
                let position = match (query, &tokens) {
                    (Some(q), Some(t)) => locate(expr, t, n.anchor).map(|at| position_of(q, at)),
                    _ => None,
                };
                Annotation {
                    kind: n.kind,
                    message: n.message,
                    detail: n.fixes.map(|f| f.render()).unwrap_or_default(),
                    position,
                }
            })
            .collect()
    }
}

/// The 1-based line and byte column of byte offset `at` in `query` (`StartPosInput`).
pub fn position_of(query: &str, at: usize) -> Position {
    let head = &query.as_bytes()[..at.min(query.len())];
    let line = 1 + head.iter().filter(|&&b| b == b'\n').count();
    let column = match head.iter().rposition(|&b| b == b'\n') {
        Some(nl) => head.len() - nl,
        None => head.len() + 1,
    };
    Position { line, column }
}

/// A token of the query text, as far as finding calls and their arguments needs: strings,
/// numbers and operators are all `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'q> {
    Ident(&'q str),
    Open(u8),
    Close(u8),
    Comma,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token<'q> {
    tok: Tok<'q>,
    /// Byte offset of the token's start.
    at: usize,
}

fn tokenize(q: &str) -> Vec<Token<'_>> {
    let b = q.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    // Backquoted strings are raw; the others escape with a backslash.
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                Tok::Other
            }
            b'(' | b'[' | b'{' => {
                i += 1;
                Tok::Open(c)
            }
            b')' | b']' | b'}' => {
                i += 1;
                Tok::Close(c)
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                Tok::Ident(q.get(start..i).unwrap_or(""))
            }
            c if c.is_ascii_digit() || c == b'.' => {
                while i < b.len() && (ident(b[i]) || b[i] == b'.') {
                    i += 1;
                }
                Tok::Other
            }
            _ => {
                i += 1;
                Tok::Other
            }
        };
        out.push(Token { tok, at: start });
    }
    out
}

/// Which call or aggregation (by name) an anchor is about, and how many of that name come
/// before it in the query: the AST's pre-order is the text's order.
#[derive(Default)]
struct Finder<'e> {
    call: Option<usize>,
    aggregation: Option<usize>,
    calls: HashMap<&'e str, usize>,
    aggregations: HashMap<String, usize>,
}

impl<'e> Finder<'e> {
    fn walk(&mut self, e: &'e Expr) -> Option<(String, usize)> {
        match e {
            Expr::Call(c) => {
                let n = self.calls.entry(c.func.name).or_default();
                let ordinal = *n;
                *n += 1;
                if self.call == Some(c as *const Call as usize) {
                    return Some((c.func.name.to_string(), ordinal));
                }
                c.args.args.iter().find_map(|a| self.walk(a))
            }
            Expr::Aggregate(a) => {
                let name = a.op.to_string().to_ascii_lowercase();
                let n = self.aggregations.entry(name.clone()).or_default();
                let ordinal = *n;
                *n += 1;
                if self.aggregation == Some(a as *const AggregateExpr as usize) {
                    return Some((name, ordinal));
                }
                a.param
                    .as_deref()
                    .and_then(|p| self.walk(p))
                    .or_else(|| self.walk(&a.expr))
            }
            Expr::Unary(u) => self.walk(&u.expr),
            Expr::Binary(b) => self.walk(&b.lhs).or_else(|| self.walk(&b.rhs)),
            Expr::Paren(p) => self.walk(&p.expr),
            Expr::Subquery(s) => self.walk(&s.expr),
            _ => None,
        }
    }
}

/// The byte offset where the anchored expression starts in the text `tokens` came from.
fn locate(expr: &Expr, tokens: &[Token<'_>], anchor: Anchor) -> Option<usize> {
    let mut finder = Finder::default();
    match anchor {
        Anchor::Call(c) | Anchor::Arg { call: c, .. } => finder.call = Some(c),
        Anchor::Param(a) => finder.aggregation = Some(a),
    }
    let (name, ordinal) = finder.walk(expr)?;
    match anchor {
        Anchor::Call(_) => Some(tokens[call_token(tokens, &name, ordinal)?].at),
        Anchor::Arg { arg, .. } => {
            let j = call_token(tokens, &name, ordinal)?;
            let &(s, e) = arguments(tokens, j + 1)?.get(arg)?;
            unwrapped_start(tokens, s, e)
        }
        Anchor::Param(_) => {
            let j = aggregation_token(tokens, &name, ordinal)?;
            let open = arguments_open(tokens, j + 1)?;
            let &(s, e) = arguments(tokens, open)?.first()?;
            unwrapped_start(tokens, s, e)
        }
    }
}

fn is_open_paren(t: Option<&Token<'_>>) -> bool {
    matches!(
        t,
        Some(Token {
            tok: Tok::Open(b'('),
            ..
        })
    )
}

fn is_grouping(t: Option<&Token<'_>>) -> bool {
    matches!(t, Some(Token { tok: Tok::Ident(w), .. })
        if w.eq_ignore_ascii_case("by") || w.eq_ignore_ascii_case("without"))
}

/// The index of the `ordinal`-th call of `name`: the name followed by `(` (a label or metric
/// name never is).
fn call_token(tokens: &[Token<'_>], name: &str, ordinal: usize) -> Option<usize> {
    (0..tokens.len())
        .filter(|&j| tokens[j].tok == Tok::Ident(name) && is_open_paren(tokens.get(j + 1)))
        .nth(ordinal)
}

/// The index of the `ordinal`-th aggregation `name` (keywords are case-insensitive): the
/// keyword followed by `(`, `by` or `without`.
fn aggregation_token(tokens: &[Token<'_>], name: &str, ordinal: usize) -> Option<usize> {
    (0..tokens.len())
        .filter(|&j| {
            matches!(tokens[j].tok, Tok::Ident(w) if w.eq_ignore_ascii_case(name))
                && (is_open_paren(tokens.get(j + 1)) || is_grouping(tokens.get(j + 1)))
        })
        .nth(ordinal)
}

/// The `(` opening an aggregation's arguments at or after `k`, past a leading `by (...)` or
/// `without (...)`.
fn arguments_open(tokens: &[Token<'_>], mut k: usize) -> Option<usize> {
    if is_grouping(tokens.get(k)) {
        k = matching(tokens, k + 1)? + 1;
    }
    is_open_paren(tokens.get(k)).then_some(k)
}

/// The index of the bracket closing the one opened at `open`.
fn matching(tokens: &[Token<'_>], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Open(_) => depth += 1,
            Tok::Close(_) => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

/// The token ranges `[start, end)` of the comma-separated arguments inside the `(` at `open`.
fn arguments(tokens: &[Token<'_>], open: usize) -> Option<Vec<(usize, usize)>> {
    if !is_open_paren(tokens.get(open)) {
        return None;
    }
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = open + 1;
    for (k, t) in tokens.iter().enumerate().skip(open + 1) {
        match t.tok {
            Tok::Open(_) => depth += 1,
            Tok::Close(_) if depth == 0 => {
                out.push((start, k));
                return Some(out);
            }
            Tok::Close(_) => depth -= 1,
            Tok::Comma if depth == 0 => {
                out.push((start, k));
                start = k + 1;
            }
            _ => {}
        }
    }
    None
}

/// Where the tokens `[s, e)` start once wrapping parentheses are taken off.
fn unwrapped_start(tokens: &[Token<'_>], mut s: usize, mut e: usize) -> Option<usize> {
    while s < e && is_open_paren(tokens.get(s)) && matching(tokens, s) == Some(e - 1) {
        s += 1;
        e -= 1;
    }
    (s < e).then(|| tokens[s].at)
}

/// A float as Go's `%g` writes it: shortest (`prec` `None`) or with `prec` significant
/// digits; exponent form below 1e-4 or from 1e6 (1e`prec`) up, e.g. `2`, `0.5`, `1e+06`,
/// `NaN`, `+Inf`.
pub fn go_format_g(f: f64, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let sci = match prec {
        None => format!("{:e}", f.abs()),
        Some(p) => format!("{:.*e}", p.max(1) - 1, f.abs()),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    if digits.is_empty() {
        digits.push('0');
    }
    let nd = digits.len() as i64;
    let eprec = match prec {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i64;
            // Go: a precision beyond the digits of an integer does not force an exponent.
            if p > nd && nd > exp {
                nd
            } else {
                p
            }
        }
    };
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    } else if exp < 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(&digits);
    } else {
        let int_len = (exp + 1) as usize;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.push_str(&"0".repeat(int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// A string as Go's `%q` quotes it (`strconv.Quote`), for the printable text metric names
/// and label values are: backslash escapes for quotes, backslashes and control characters.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Unix seconds as Go's `time.RFC3339` in UTC: `2024-12-25T00:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let c = civil(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        secs.rem_euclid(60)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Expr {
        match promql_parser::parser::parse(q) {
            Ok(e) => e,
            Err(e) => panic!("{q}: {e}"),
        }
    }

    /// The anchors of every call and aggregation of `e`, pre-order.
    fn anchors(e: &Expr, out: &mut Vec<(String, Anchor)>) {
        match e {
            Expr::Call(c) => {
                out.push((c.func.name.to_string(), Anchor::call(c)));
                for (i, a) in c.args.args.iter().enumerate() {
                    out.push((format!("{}#{i}", c.func.name), Anchor::arg(c, i)));
                    anchors(a, out);
                }
            }
            Expr::Aggregate(a) => {
                out.push((format!("{}.param", a.op), Anchor::param(a)));
                if let Some(p) = &a.param {
                    anchors(p, out);
                }
                anchors(&a.expr, out);
            }
            Expr::Binary(b) => {
                anchors(&b.lhs, out);
                anchors(&b.rhs, out);
            }
            Expr::Paren(p) => anchors(&p.expr, out),
            Expr::Unary(u) => anchors(&u.expr, out),
            Expr::Subquery(s) => anchors(&s.expr, out),
            _ => {}
        }
    }

    fn positions(q: &str) -> Vec<(String, Option<String>)> {
        let e = parse(q);
        let mut a = Vec::new();
        anchors(&e, &mut a);
        let t = tokenize(q);
        a.into_iter()
            .map(|(n, a)| {
                (
                    n,
                    locate(&e, &t, a).map(|at| position_of(q, at).to_string()),
                )
            })
            .collect()
    }

    fn pos(list: &[(String, Option<String>)], name: &str) -> Option<String> {
        list.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, p)| p.clone())
    }

    #[test]
    fn positions_match_prometheus() {
        // The corpus' own: the call, its arguments, an aggregation's parameter.
        let p = positions("sort(series)");
        assert_eq!(pos(&p, "sort").as_deref(), Some("1:1"));
        let p = positions("sum(sort(series))");
        assert_eq!(pos(&p, "sort").as_deref(), Some("1:5"));
        let p = positions("histogram_quantile(0.8, series)");
        assert_eq!(pos(&p, "histogram_quantile#1").as_deref(), Some("1:25"));
        let p = positions("histogram_fraction(-Inf, 1, series)");
        assert_eq!(pos(&p, "histogram_fraction#0").as_deref(), Some("1:20"));
        assert_eq!(pos(&p, "histogram_fraction#2").as_deref(), Some("1:29"));
        let p = positions("histogram_quantiles(nonmonotonic_bucket, \"q\", 0.01, 0.5)");
        assert_eq!(pos(&p, "histogram_quantiles#0").as_deref(), Some("1:21"));
        let p = positions("quantile without(point)(NaN, data)");
        assert_eq!(pos(&p, "quantile.param").as_deref(), Some("1:25"));
        // Parentheses around an argument are unwrapped; nested calls of one name counted.
        let p = positions("rate((foo[5m])) + rate(bar{a=\"rate(\"}[1m])");
        let rates: Vec<_> = p.iter().filter(|(n, _)| n == "rate#0").collect();
        assert_eq!(rates[0].1.as_deref(), Some("1:7"));
        assert_eq!(rates[1].1.as_deref(), Some("1:24"));
        // Grouping before the arguments, keywords in any case, lines.
        let p = positions("SUM by (quantile) (\n  quantile(2, x)\n)");
        assert_eq!(pos(&p, "quantile.param").as_deref(), Some("2:12"));
        let p = positions("topk(3, x) by (job)");
        assert_eq!(pos(&p, "topk.param").as_deref(), Some("1:6"));
        // A subquery argument starts at its expression.
        let p = positions("rate(sum(x)[5m:1m])");
        assert_eq!(pos(&p, "rate#0").as_deref(), Some("1:6"));
    }

    #[test]
    fn go_formatting() {
        let g = |f| go_format_g(f, None);
        assert_eq!(g(2.0), "2");
        assert_eq!(g(-1.0), "-1");
        assert_eq!(g(0.5), "0.5");
        assert_eq!(g(f64::NAN), "NaN");
        assert_eq!(g(f64::INFINITY), "+Inf");
        assert_eq!(g(123456.0), "123456");
        assert_eq!(g(1e6), "1e+06");
        assert_eq!(g(1.5e-5), "1.5e-05");
        assert_eq!(g(0.0001), "0.0001");
        assert_eq!(g(0.0), "0");
        assert_eq!(go_format_g(10.0, Some(2)), "10");
        assert_eq!(go_format_g(100.0, Some(2)), "1e+02");
        assert_eq!(go_format_g(7.5, Some(2)), "7.5");
        assert_eq!(go_format_g(0.0123, Some(2)), "0.012");
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(rfc3339(1_703_462_400), "2023-12-25T00:00:00Z");
        assert_eq!(rfc3339(61), "1970-01-01T00:01:01Z");
    }

    use crate::rules::{Annotated, Engine};
    use crate::scrape::{Labels, Series, SeriesStore};

    /// `gauge` and `req_total` (two jobs) rising every minute for 10 minutes, and a classic
    /// histogram `h_bucket` whose counts decrease at `le="2"`, plus a bucket with a bad `le`.
    fn store() -> SeriesStore {
        let l = |pairs: &[(&str, &str)]| Labels::new(pairs.iter().copied());
        let rising = |k: f64| (0..=10).map(|i| (i * 60_000, k * i as f64)).collect();
        let flat = |v: f64| (0..=10).map(|i| (i * 60_000, v)).collect();
        SeriesStore::from_series([
            Series::new(l(&[("__name__", "gauge")]), rising(1.0)),
            Series::new(l(&[("__name__", "req_total"), ("job", "a")]), rising(10.0)),
            Series::new(l(&[("__name__", "req_total"), ("job", "b")]), rising(5.0)),
            Series::new(l(&[("__name__", "h_bucket"), ("le", "1")]), flat(5.0)),
            Series::new(l(&[("__name__", "h_bucket"), ("le", "2")]), flat(3.0)),
            Series::new(l(&[("__name__", "h_bucket"), ("le", "+Inf")]), flat(10.0)),
            Series::new(l(&[("__name__", "odd_bucket"), ("le", "big")]), flat(1.0)),
        ])
        .unwrap_or_default()
    }

    fn instant(q: &str) -> Vec<String> {
        match Engine::default().instant_query_with_annotations(&store(), q, 600_000) {
            Ok(Annotated { annotations, .. }) => {
                annotations.iter().map(ToString::to_string).collect()
            }
            Err(e) => panic!("{q}: {e}"),
        }
    }

    fn range(q: &str) -> Vec<String> {
        match Engine::default().range_query_with_annotations(&store(), q, 0, 600_000, 60_000) {
            Ok(Annotated { annotations, .. }) => {
                annotations.iter().map(ToString::to_string).collect()
            }
            Err(e) => panic!("{q}: {e}"),
        }
    }

    #[test]
    fn rate_over_a_gauge_name_is_flagged() {
        let info = "PromQL info: metric might not be a counter, name does not end in \
                    _total/_sum/_count/_bucket: \"gauge\"";
        assert_eq!(instant("rate(gauge[5m])"), vec![format!("{info} (1:6)")]);
        assert_eq!(
            instant("sum(increase(gauge[5m]))"),
            vec![format!("{info} (1:14)")]
        );
        // Once per query, however many steps raise it.
        assert_eq!(range("rate(gauge[5m])"), vec![format!("{info} (1:6)")]);
        assert!(instant("rate(req_total[5m])").is_empty());
        assert!(instant("delta(gauge[5m])").is_empty());
        // Prometheus flags rate and increase only; a range too short gives no rate and no info.
        assert!(instant("irate(gauge[5m])").is_empty());
        assert!(instant("rate(gauge[30s])").is_empty());
        // The plain query API answers the same, without annotations.
        let with =
            Engine::default().instant_query_with_annotations(&store(), "rate(gauge[5m])", 600_000);
        let without = Engine::default().instant_query(&store(), "rate(gauge[5m])", 600_000);
        assert_eq!(with.map(|a| a.value), without);
    }

    #[test]
    fn invalid_quantiles_warn() {
        let w = |q: &str, pos: &str| {
            format!("PromQL warning: quantile value should be between 0 and 1, got {q} ({pos})")
        };
        assert_eq!(instant("quantile(2, req_total)"), vec![w("2", "1:10")]);
        // Even over nothing.
        assert_eq!(instant("quantile(-0.5, nothing)"), vec![w("-0.5", "1:10")]);
        assert!(instant("quantile(0.5, req_total)").is_empty());
        assert_eq!(
            instant("quantile_over_time((-1), req_total[5m])"),
            vec![w("-1", "1:21")]
        );
        // quantile_over_time warns only when some series has samples.
        assert!(instant("quantile_over_time(2, nothing[5m])").is_empty());
        assert_eq!(
            instant("histogram_quantile(NaN, nothing)"),
            vec![w("NaN", "1:20")]
        );
        assert_eq!(
            instant("histogram_quantiles(nothing, \"q\", 0.5, 1.5)"),
            vec![w("1.5", "1:40")]
        );
        assert_eq!(
            instant("limit_ratio(2, req_total)"),
            vec![
                "PromQL warning: ratio value should be between -1 and 1, got 2, capping to 1 \
                 (1:13)"
                    .to_string()
            ]
        );
    }

    #[test]
    fn classic_histogram_input_is_checked() {
        assert_eq!(
            instant("histogram_quantile(0.5, odd_bucket)"),
            vec![
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of \
                 \"big\" for metric name \"odd_bucket\" (1:25)"
                    .to_string()
            ]
        );
        assert_eq!(
            instant("histogram_fraction(0, 1, gauge)"),
            vec![
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of \
                 \"\" for metric name \"gauge\" (1:26)"
                    .to_string()
            ]
        );
        // 5 at le=1 then 3 at le=2: raised by 2, at one step.
        assert_eq!(
            instant("histogram_quantile(0.5, h_bucket)"),
            vec![format!(
                "PromQL info: {FORCED_MONOTONICITY}, from buckets 2 to 2, with a max diff of 2, \
                 over 1 samples from 1970-01-01T00:10:00Z to 1970-01-01T00:10:00Z (1:25)"
            )]
        );
        // Merged over the 11 steps of a range query.
        let r = range("histogram_quantile(0.5, h_bucket)");
        assert_eq!(r.len(), 1);
        assert!(
            r[0].contains("over 11 samples from 1970-01-01T00:00:00Z to 1970-01-01T00:10:00Z"),
            "{r:?}"
        );
    }

    #[test]
    fn sorting_a_range_query_warns() {
        let w = |pos: &str| format!("PromQL warning: {SORT_IN_RANGE_QUERY} ({pos})");
        assert_eq!(range("sort(req_total)"), vec![w("1:1")]);
        assert_eq!(range("sum(sort_desc(req_total))"), vec![w("1:5")]);
        assert_eq!(range("sort_by_label(req_total, \"job\")"), vec![w("1:1")]);
        assert!(instant("sort(req_total)").is_empty());
    }

    #[test]
    fn notes_deduplicate_and_merge_fixes() {
        let e = parse("histogram_quantile(0.5, x)");
        let Expr::Call(c) = &e else { panic!("a call") };
        let n = Notes::new();
        assert!(n.is_empty());
        n.add(
            AnnotationKind::Warning,
            Anchor::arg(c, 0),
            invalid_quantile(2.0),
        );
        n.add(
            AnnotationKind::Warning,
            Anchor::arg(c, 0),
            invalid_quantile(2.0),
        );
        let fix = |lo, hi, d| MonotonicityFix {
            min_bucket: lo,
            max_bucket: hi,
            max_diff: d,
        };
        n.add_forced_monotonicity(Anchor::arg(c, 1), "", 60_000, fix(1.0, 5.0, 2.0));
        n.add_forced_monotonicity(Anchor::arg(c, 1), "", 0, fix(0.5, 2.0, 3.0));
        let a = n.finish(&e, Some("histogram_quantile(0.5, x)"));
        assert_eq!(a.len(), 2);
        assert_eq!(
            a[0].to_string(),
            "PromQL warning: quantile value should be between 0 and 1, got 2 (1:20)"
        );
        assert_eq!(
            a[1].to_string(),
            format!(
                "PromQL info: {FORCED_MONOTONICITY}, from buckets 0.5 to 5, with a max diff of \
                 3, over 2 samples from 1970-01-01T00:00:00Z to 1970-01-01T00:01:00Z (1:25)"
            )
        );
        // Without the query text: no position and no detail.
        let n = Notes::new();
        n.add_forced_monotonicity(Anchor::arg(c, 1), "m", 0, fix(1.0, 1.0, 1.0));
        let a = n.finish(&e, None);
        assert_eq!(
            a[0].to_string(),
            format!("PromQL info: {FORCED_MONOTONICITY} for metric name \"m\"")
        );
    }
}
