//! Evaluation of a parsed expression at one timestamp.

pub mod aggregate;
pub mod annotate;
pub mod binary;
pub mod selector;
pub mod subquery;

use super::value::{AnnotationKind, QueryError, RangeSeries, Sample};
use crate::scrape::{Labels, SeriesStore};
use annotate::{Anchor, MonotonicityFix, Notes};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, Offset};
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// A value during evaluation (the timestamp is the evaluation time, held by the caller).
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// A number.
    Scalar(f64),
    /// A string.
    Str(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector.
    Matrix(Vec<RangeSeries>),
}

/// A range vector argument with the window it was selected over, which `rate` and friends
/// extrapolate to.
#[derive(Debug, Clone)]
pub struct MatrixArg {
    /// The series with at least one point in the window.
    pub series: Vec<RangeSeries>,
    /// The window's start (exclusive), ms.
    pub start: i64,
    /// The window's end (inclusive), ms.
    pub end: i64,
}

impl MatrixArg {
    /// The window's length in seconds.
    pub fn range_seconds(&self) -> f64 {
        crate::rules::functions::rate::seconds_between(self.start, self.end)
    }
}

/// Evaluates expressions over a store; `start`/`end` are the query's bounds, which
/// `@ start()` and `@ end()` refer to. With `notes`, the annotations Prometheus would attach
/// to the result are collected there as a side channel.
#[derive(Debug, Clone, Copy)]
pub struct Evaluator<'a> {
    /// The data.
    pub store: &'a SeriesStore,
    /// Lookback delta, ms.
    pub lookback_ms: i64,
    /// The query's start, ms.
    pub start: i64,
    /// The query's end, ms.
    pub end: i64,
    /// The query's step, ms (0 for an instant query).
    pub step: i64,
    /// Where annotations go; `None` when the caller does not want them, and then raising one
    /// costs nothing.
    pub notes: Option<&'a Notes>,
}

/// The default step of a subquery without one (Prometheus uses the global evaluation interval).
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Milliseconds of a duration, saturating.
pub fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The signed offset in ms (`offset -5m` is negative).
pub fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

/// Milliseconds since the epoch of a `SystemTime`, rounded (the parser builds it from float
/// seconds), negative before the epoch.
pub fn system_time_ms(st: &SystemTime) -> i64 {
    let ms = |d: Duration| (d.as_nanos() as f64 / 1e6).round() as i64;
    match st.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    }
}

/// The PromQL name of an expression's type, as Prometheus' messages write it.
pub fn type_name_of(e: &Expr) -> &'static str {
    match e.value_type() {
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
    }
}

/// Prometheus' error for two samples with one label set in a vector.
pub fn duplicate_labelset_error() -> QueryError {
    QueryError::exec("vector cannot contain metrics with the same labelset")
}

/// Fails when two samples of `v` share a label set.
pub fn check_unique_labels(v: &[Sample]) -> Result<(), QueryError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen: HashSet<&Labels> = HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(duplicate_labelset_error());
        }
    }
    Ok(())
}

impl<'a> Evaluator<'a> {
    /// An evaluator for a query spanning `start..=end`.
    pub fn new(
        store: &'a SeriesStore,
        lookback_ms: i64,
        start: i64,
        end: i64,
        step: i64,
    ) -> Evaluator<'a> {
        Evaluator {
            store,
            lookback_ms,
            start,
            end,
            step,
            notes: None,
        }
    }

    /// The same evaluator, collecting annotations into `notes`.
    pub fn with_notes(self, notes: &'a Notes) -> Evaluator<'a> {
        Evaluator {
            notes: Some(notes),
            ..self
        }
    }

    /// Raises an annotation about the `anchor`ed expression; `message` is only built when
    /// annotations are collected.
    pub fn note(&self, kind: AnnotationKind, anchor: Anchor, message: impl FnOnce() -> String) {
        if let Some(n) = self.notes {
            n.add(kind, anchor, message());
        }
    }

    /// Raises `histogram_quantile`'s monotonicity info for one histogram fixed at `t` (ms).
    pub fn note_forced_monotonicity(&self, anchor: Anchor, t: i64, fix: MonotonicityFix) {
        if let Some(n) = self.notes {
            // The metric name is gone by then: Prometheus names it only with delayed name
            // removal, which this engine does not do.
            n.add_forced_monotonicity(anchor, "", t, fix);
        }
    }

    /// The time a selector with `at` reads at when evaluated at `t`.
    pub fn at_time(&self, at: &Option<AtModifier>, t: i64) -> i64 {
        match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(st)) => system_time_ms(st),
        }
    }

    /// Evaluates `e` at `t` (ms).
    pub fn eval(&self, e: &Expr, t: i64) -> Result<Val, QueryError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::VectorSelector(vs) => Ok(Val::Vector(selector::instant(self, vs, t, false)?)),
            Expr::MatrixSelector(ms) => Ok(Val::Matrix(selector::range(self, ms, t)?.series)),
            Expr::Subquery(sq) => Ok(Val::Matrix(subquery::eval(self, sq, t)?.series)),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(mut v) => {
                    for s in &mut v {
                        s.v = -s.v;
                        s.labels.remove(crate::scrape::METRIC_NAME_LABEL);
                    }
                    check_unique_labels(&v)?;
                    Ok(Val::Vector(v))
                }
                _ => Err(QueryError::exec(
                    "unary expression only allowed on expressions of type scalar or instant vector",
                )),
            },
            Expr::Binary(b) => binary::eval(self, b, t),
            Expr::Aggregate(a) => aggregate::eval(self, a, t),
            Expr::Call(c) => {
                let v = crate::rules::functions::call(self, c, t)?;
                if let Val::Vector(vec) = &v {
                    check_unique_labels(vec)?;
                }
                Ok(v)
            }
            Expr::Extension(_) => Err(QueryError::exec("extension expressions are not supported")),
        }
    }

    /// Evaluates `e` to an instant vector.
    pub fn eval_vector(&self, e: &Expr, t: i64) -> Result<Vec<Sample>, QueryError> {
        match self.eval(e, t)? {
            Val::Vector(v) => Ok(v),
            other => Err(QueryError::exec(format!(
                "expected instant vector, got {}",
                val_type_name(&other)
            ))),
        }
    }

    /// Evaluates `e` to a scalar.
    pub fn eval_scalar(&self, e: &Expr, t: i64) -> Result<f64, QueryError> {
        match self.eval(e, t)? {
            Val::Scalar(v) => Ok(v),
            other => Err(QueryError::exec(format!(
                "expected scalar, got {}",
                val_type_name(&other)
            ))),
        }
    }

    /// Evaluates `e` to a string.
    pub fn eval_string(&self, e: &Expr, t: i64) -> Result<String, QueryError> {
        match self.eval(e, t)? {
            Val::Str(s) => Ok(s),
            other => Err(QueryError::exec(format!(
                "expected string, got {}",
                val_type_name(&other)
            ))),
        }
    }

    /// Evaluates a range-vector argument (a matrix selector or subquery) with its window.
    pub fn eval_matrix_arg(&self, e: &Expr, t: i64) -> Result<MatrixArg, QueryError> {
        match e {
            Expr::Paren(p) => self.eval_matrix_arg(&p.expr, t),
            Expr::MatrixSelector(ms) => selector::range(self, ms, t),
            Expr::Subquery(sq) => subquery::eval(self, sq, t),
            other => Err(QueryError::exec(format!(
                "expected range vector, got {}",
                type_name_of(other)
            ))),
        }
    }
}

/// The PromQL name of a value's type.
pub fn val_type_name(v: &Val) -> &'static str {
    match v {
        Val::Scalar(_) => "scalar",
        Val::Str(_) => "string",
        Val::Vector(_) => "instant vector",
        Val::Matrix(_) => "range vector",
    }
}
