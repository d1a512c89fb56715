//! An embedded PromQL engine, pure and without I/O, over the scraped [`SeriesStore`].
//!
//! Parsing is `promql-parser`'s; evaluation is ours and follows Prometheus 3's Go engine
//! (`promql/engine.go`, `functions.go`, `quantile.go`): 5-minute lookback with staleness
//! markers, `offset` and `@`, subqueries, every aggregation and binary operator, and the
//! function list, for float samples (native histograms are out of scope).
//!
//! Every expression is evaluated at one timestamp at a time ([`eval::Evaluator`]); a range query
//! evaluates at each step and joins the results by label set, which is what Prometheus'
//! step-wise range evaluation amounts to.

pub mod agree;
pub mod alerting;
pub mod eval;
pub mod expect;
pub mod explain;
pub mod functions;
pub mod group;
pub mod lint;
pub mod promqltest;
pub mod rulefile;
pub mod scale;
pub mod template;
pub mod unittest;
pub mod value;

pub use value::{
    Annotated, Annotation, AnnotationKind, Position, QueryError, QueryErrorKind, RangeSeries,
    Sample, Value,
};

use crate::scrape::{Labels, SeriesStore};
use eval::annotate::Notes;
use eval::{Evaluator, Val};
use promql_parser::parser::Expr;
use std::collections::BTreeMap;

/// Prometheus' default lookback delta: 5 minutes.
pub const DEFAULT_LOOKBACK_DELTA_MS: i64 = 300_000;

/// The most steps a range query may have (Prometheus' HTTP API allows 11,000).
pub const MAX_RANGE_STEPS: i128 = 1_000_000;

/// The PromQL engine: settings only; every query names its store and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// How far back an instant selector looks for a sample (ms).
    pub lookback_delta_ms: i64,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine {
            lookback_delta_ms: DEFAULT_LOOKBACK_DELTA_MS,
        }
    }
}

/// Parses a PromQL expression.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    // The parser panics on some inputs (`@ NaN` converts NaN to a Duration): a query must
    // only ever fail.
    match std::panic::catch_unwind(|| promql_parser::parser::parse(query)) {
        Ok(r) => r.map_err(QueryError::parse),
        Err(_) => Err(QueryError::parse(format!("cannot parse {query:?}"))),
    }
}

impl Engine {
    /// The value of `query` at `t_ms` as one number: a scalar, or the first sample of a vector;
    /// `None` for an error, an empty vector or another type.
    pub fn scalar_at(&self, store: &SeriesStore, query: &str, t_ms: i64) -> Option<f64> {
        match self.instant_query(store, query, t_ms).ok()? {
            Value::Vector(v) => v.first().map(|s| s.v),
            Value::Scalar { v, .. } => Some(v),
            _ => None,
        }
    }

    /// Evaluates `query` at `t_ms`.
    pub fn instant_query(
        &self,
        store: &SeriesStore,
        query: &str,
        t_ms: i64,
    ) -> Result<Value, QueryError> {
        self.instant_query_expr(store, &parse(query)?, t_ms)
    }

    /// Evaluates a parsed expression at `t_ms`.
    pub fn instant_query_expr(
        &self,
        store: &SeriesStore,
        expr: &Expr,
        t_ms: i64,
    ) -> Result<Value, QueryError> {
        self.instant_eval(store, expr, t_ms, None)
    }

    /// Evaluates `query` at `t_ms`, with the annotations (warnings and infos) Prometheus would
    /// attach to the result, each pointing into `query` as Prometheus' API renders it.
    pub fn instant_query_with_annotations(
        &self,
        store: &SeriesStore,
        query: &str,
        t_ms: i64,
    ) -> Result<Annotated, QueryError> {
        let expr = parse(query)?;
        let notes = Notes::new();
        let value = self.instant_eval(store, &expr, t_ms, Some(&notes))?;
        Ok(Annotated {
            value,
            annotations: notes.finish(&expr, Some(query)),
        })
    }

    fn instant_eval(
        &self,
        store: &SeriesStore,
        expr: &Expr,
        t_ms: i64,
        notes: Option<&Notes>,
    ) -> Result<Value, QueryError> {
        let mut ev = Evaluator::new(store, self.lookback_delta_ms, t_ms, t_ms, 0);
        ev.notes = notes;
        Ok(match ev.eval(expr, t_ms)? {
            Val::Scalar(v) => Value::Scalar { t: t_ms, v },
            Val::Str(s) => Value::String { t: t_ms, s },
            Val::Vector(v) => Value::Vector(v),
            Val::Matrix(m) => Value::Matrix(m),
        })
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms` (inclusive): a Matrix, its
    /// series sorted by labels.
    pub fn range_query(
        &self,
        store: &SeriesStore,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, QueryError> {
        self.range_query_expr(store, &parse(query)?, start_ms, end_ms, step_ms)
    }

    /// Evaluates a parsed expression over a range (see [`Engine::range_query`]).
    pub fn range_query_expr(
        &self,
        store: &SeriesStore,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, QueryError> {
        self.range_eval(store, expr, start_ms, end_ms, step_ms, None)
    }

    /// [`Engine::range_query`] with the annotations, as
    /// [`Engine::instant_query_with_annotations`] gives them.
    pub fn range_query_with_annotations(
        &self,
        store: &SeriesStore,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Annotated, QueryError> {
        let expr = parse(query)?;
        let notes = Notes::new();
        let value = self.range_eval(store, &expr, start_ms, end_ms, step_ms, Some(&notes))?;
        Ok(Annotated {
            value,
            annotations: notes.finish(&expr, Some(query)),
        })
    }

    fn range_eval(
        &self,
        store: &SeriesStore,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        notes: Option<&Notes>,
    ) -> Result<Value, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::exec(
                "zero or negative query resolution step widths are not accepted",
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::exec(
                "end timestamp must not be before start time",
            ));
        }
        let steps = (i128::from(end_ms) - i128::from(start_ms)) / i128::from(step_ms) + 1;
        if steps > MAX_RANGE_STEPS {
            return Err(QueryError::exec(format!(
                "exceeded maximum resolution of {MAX_RANGE_STEPS} points per timeseries. Try decreasing the query resolution (?step=XX)"
            )));
        }
        let mut ev = Evaluator::new(store, self.lookback_delta_ms, start_ms, end_ms, step_ms);
        ev.notes = notes;
        let mut series: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut t = start_ms;
        while t <= end_ms {
            match ev.eval(expr, t)? {
                Val::Scalar(v) => series.entry(Labels::empty()).or_default().push((t, v)),
                Val::Vector(vec) => {
                    for s in vec {
                        let points = series.entry(s.labels).or_default();
                        if points.last().is_some_and(|&(pt, _)| pt == t) {
                            return Err(QueryError::exec(
                                "vector cannot contain metrics with the same labelset",
                            ));
                        }
                        points.push((t, s.v));
                    }
                }
                Val::Str(_) | Val::Matrix(_) => {
                    return Err(QueryError::exec(format!(
                        "invalid expression type {:?} for range query, must be Scalar or instant Vector",
                        eval::type_name_of(expr)
                    )))
                }
            }
            t = match t.checked_add(step_ms) {
                Some(next) => next,
                None => break,
            };
        }
        Ok(Value::Matrix(
            series
                .into_iter()
                .map(|(labels, points)| RangeSeries { labels, points })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::Series;

    fn store() -> SeriesStore {
        let l = |pairs: &[(&str, &str)]| Labels::new(pairs.iter().copied());
        SeriesStore::from_series([
            Series::new(
                l(&[("__name__", "req"), ("job", "a")]),
                (0..=10).map(|i| (i * 60_000, 10.0 * i as f64)).collect(),
            ),
            Series::new(
                l(&[("__name__", "req"), ("job", "b")]),
                (0..=10).map(|i| (i * 60_000, 5.0 * i as f64)).collect(),
            ),
        ])
        .unwrap_or_default()
    }

    #[test]
    fn instant_and_range_queries() {
        let s = store();
        let e = Engine::default();
        let Ok(Value::Vector(v)) = e.instant_query(&s, "sum(req)", 600_000) else {
            panic!("sum(req) is a vector");
        };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].v, 150.0);
        let Ok(Value::Vector(v)) = e.instant_query(&s, "rate(req{job=\"a\"}[5m])", 600_000) else {
            panic!("rate is a vector");
        };
        assert!((v[0].v - 10.0 / 60.0).abs() < 1e-12);
        let Ok(Value::Matrix(m)) = e.range_query(&s, "req * 2", 0, 120_000, 60_000) else {
            panic!("range query is a matrix");
        };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].points, vec![(0, 0.0), (60_000, 20.0), (120_000, 40.0)]);
        assert_eq!(
            e.instant_query(&s, "1 + ", 0).map_err(|e| e.kind),
            Err(QueryErrorKind::Parse)
        );
        // Past the lookback window the series is gone.
        let Ok(Value::Vector(v)) = e.instant_query(&s, "req", 600_000 + 300_000) else {
            panic!("a vector");
        };
        assert!(v.is_empty());
    }

    #[test]
    fn odd_queries_fail_or_answer_but_never_panic() {
        let s = store();
        let e = Engine::default();
        let queries = [
            "req @ 9223372036854775",
            "rate(req[5m] @ -9223372036854775)",
            "predict_linear(req[5m] @ 9223372036854775, 1e308)",
            "req offset -1000y",
            "max_over_time(req[1000y:1ms])",
            "topk(1e300, req)",
            "topk(-Inf, req)",
            "quantile(NaN, req)",
            "limit_ratio(5, req)",
            "count_values(\"\", req)",
            "count_values(\"v\", req)",
            "label_replace(req, \"x\", \"$1\", \"job\", \"(\")",
            "histogram_quantile(0.5, req)",
            "histogram_fraction(NaN, Inf, req)",
            "year(vector(1e300))",
            "day_of_week(vector(NaN))",
            "req / on(job) group_left req",
            "req == bool req",
            "scalar(req) ^ -Inf % 0",
            "absent(nonexistent{job=\"a\", job=\"b\"})",
            "sort_by_label(req, \"job\", \"nope\")",
            "double_exponential_smoothing(req[5m], 0.5, 2)",
            "round(req, 0)",
            "clamp(req, 5, 1)",
            "{__name__=~\"re.*\"} or vector(1)",
            "-req unless req",
            "stddev_over_time(req[1s:1ms])",
            ")",
            "",
        ];
        for q in queries {
            let _ = e.instant_query(&s, q, 600_000);
            let _ = e.range_query(&s, q, 0, 600_000, 60_000);
        }
        let _ = e.range_query(&s, "req", 0, i64::MAX, 1);
        let _ = e.range_query(&s, "req", i64::MIN, i64::MAX, i64::MAX);
        let _ = e.instant_query(&s, "time()", i64::MIN);
        let _ = e.instant_query(&s, "rate(req[5m])", i64::MIN);
    }

    /// Random token soup, seeded: the engine (parser included) must never panic.
    #[test]
    fn token_soup_never_panics() {
        const TOKENS: [&str; 44] = [
            "req",
            "{",
            "}",
            "job",
            "=",
            "=~",
            "!=",
            "\"a\"",
            "\".*\"",
            "(",
            ")",
            "[",
            "]",
            "5m",
            ":",
            "1m",
            "@",
            "start()",
            "offset",
            "-",
            "+",
            "*",
            "/",
            "^",
            "%",
            "==",
            "bool",
            "and",
            "or",
            "unless",
            "on",
            "ignoring",
            "group_left",
            "by",
            "without",
            "sum",
            "topk",
            "rate",
            "histogram_quantile",
            "label_replace",
            ",",
            "1",
            "NaN",
            "count_values",
        ];
        let s = store();
        let e = Engine::default();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            let mut q = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = 1 + (x % 12) as usize;
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                q.push_str(TOKENS[(x % TOKENS.len() as u64) as usize]);
                q.push(' ');
            }
            let _ = e.instant_query(&s, &q, 600_000);
            let _ = e.range_query(&s, &q, 0, 600_000, 120_000);
        }
    }
}
