//! Subqueries: an expression evaluated at aligned steps over a range, as a range vector.

use super::{duration_ms, offset_ms, Evaluator, MatrixArg, Val, DEFAULT_SUBQUERY_STEP_MS};
use crate::rules::value::{QueryError, RangeSeries};
use crate::scrape::Labels;
use promql_parser::parser::SubqueryExpr;
use std::collections::HashMap;

/// The most steps one subquery evaluation may take, so a query cannot run away.
pub const MAX_STEPS: i128 = 1_000_000;

/// Evaluates `expr[range:step]` at `t`: at every multiple of `step` in `(ts - range, ts]`,
/// where `ts` is `t` (or the `@` time) minus the offset.
pub fn eval(ev: &Evaluator<'_>, sq: &SubqueryExpr, t: i64) -> Result<MatrixArg, QueryError> {
    let end = ev.at_time(&sq.at, t).saturating_sub(offset_ms(&sq.offset));
    let range = duration_ms(&sq.range);
    let step = sq
        .step
        .as_ref()
        .map(duration_ms)
        .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
    if step <= 0 {
        return Err(QueryError::exec("subquery step must be positive"));
    }
    let start = end.saturating_sub(range);
    // Go's integer division truncates toward zero, as Rust's does.
    let mut first = step.saturating_mul(start / step);
    if first <= start {
        first = first.saturating_add(step);
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut series: Vec<RangeSeries> = Vec::new();
    let mut push = |labels: Labels, p: (i64, f64)| match index.get(&labels) {
        Some(&i) => series[i].points.push(p),
        None => {
            index.insert(labels.clone(), series.len());
            series.push(RangeSeries {
                labels,
                points: vec![p],
            });
        }
    };
    let steps = (i128::from(end) - i128::from(first)) / i128::from(step) + 1;
    if steps > MAX_STEPS {
        return Err(QueryError::exec(format!(
            "subquery would evaluate {steps} steps, more than the limit of {MAX_STEPS}"
        )));
    }
    let mut ts = first;
    while ts <= end {
        match ev.eval(&sq.expr, ts)? {
            Val::Scalar(v) => push(Labels::empty(), (ts, v)),
            Val::Vector(vec) => {
                for s in vec {
                    push(s.labels, (ts, s.v));
                }
            }
            other => {
                return Err(QueryError::exec(format!(
                    "subquery is only allowed on instant vector or scalar, got {}",
                    super::val_type_name(&other)
                )))
            }
        }
        ts = match ts.checked_add(step) {
            Some(n) => n,
            None => break,
        };
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(MatrixArg { series, start, end })
}
