//! Aggregation operators with `by`/`without` and their parameters.

use super::annotate::{self, Anchor};
use super::{check_unique_labels, Evaluator, Val};
use crate::rules::functions::math::{format_float, kahan_sum_inc, quantile};
use crate::rules::value::{AnnotationKind, QueryError, Sample};
use crate::scrape::{Labels, METRIC_NAME_LABEL};
use promql_parser::parser::token::{
    TokenId, T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMITK, T_LIMIT_RATIO, T_MAX,
    T_MIN, T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};
use std::cmp::Ordering;
use std::collections::HashMap;

/// The output labels of a sample's group under the modifier.
fn group_labels(l: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::empty(),
        Some(LabelModifier::Include(names)) => Labels::new(
            l.iter()
                .filter(|(n, _)| names.labels.iter().any(|x| x == n)),
        ),
        Some(LabelModifier::Exclude(names)) => Labels::new(
            l.iter()
                .filter(|(n, _)| *n != METRIC_NAME_LABEL && !names.labels.iter().any(|x| x == n)),
        ),
    }
}

/// Samples split into groups, in order of each group's first sample.
fn groups(v: Vec<Sample>, modifier: &Option<LabelModifier>) -> Vec<(Labels, Vec<Sample>)> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<(Labels, Vec<Sample>)> = Vec::new();
    for s in v {
        let key = group_labels(&s.labels, modifier);
        match index.get(&key) {
            Some(&i) => out[i].1.push(s),
            None => {
                index.insert(key.clone(), out.len());
                out.push((key, vec![s]));
            }
        }
    }
    out
}

/// Evaluates an aggregation at `t`.
pub fn eval(ev: &Evaluator<'_>, a: &AggregateExpr, t: i64) -> Result<Val, QueryError> {
    let op = a.op.id();
    let param = |ev: &Evaluator<'_>| -> Result<f64, QueryError> {
        match &a.param {
            Some(p) => ev.eval_scalar(p, t),
            None => Err(QueryError::exec(format!("{} requires a parameter", a.op))),
        }
    };
    let mut out: Vec<Sample> = Vec::new();
    match op {
        T_TOPK | T_BOTTOMK | T_LIMITK => {
            let k = param(ev)?;
            let input = ev.eval_vector(&a.expr, t)?;
            if k.is_nan() {
                return Err(QueryError::exec("Parameter value is NaN"));
            }
            if !(k <= i64::MAX as f64 && k >= i64::MIN as f64) {
                return Err(QueryError::exec(format!(
                    "Scalar value {} overflows int64",
                    format_float(k)
                )));
            }
            let k = k as i64;
            if k < 1 {
                return Ok(Val::Vector(Vec::new()));
            }
            let k = usize::try_from(k).unwrap_or(usize::MAX);
            for (_, mut members) in groups(input, &a.modifier) {
                match op {
                    T_TOPK => members.sort_by(|x, y| desc_nan_last(x.v, y.v)),
                    T_BOTTOMK => members.sort_by(|x, y| asc_nan_last(x.v, y.v)),
                    _ => {}
                }
                members.truncate(k);
                out.extend(members);
            }
            return Ok(Val::Vector(out));
        }
        T_LIMIT_RATIO => {
            let r = param(ev)?;
            let input = ev.eval_vector(&a.expr, t)?;
            if r.is_nan() {
                return Err(QueryError::exec("Ratio value is NaN"));
            }
            let capped = r.clamp(-1.0, 1.0);
            if capped != r {
                ev.note(AnnotationKind::Warning, Anchor::param(a), || {
                    annotate::invalid_ratio(r, capped)
                });
            }
            let r = capped;
            for s in input {
                let offset = ratio_offset(&s.labels);
                if (r >= 0.0 && offset < r) || (r < 0.0 && offset >= 1.0 + r) {
                    out.push(s);
                }
            }
            return Ok(Val::Vector(out));
        }
        T_COUNT_VALUES => {
            let label = match &a.param {
                Some(p) => ev.eval_string(p, t)?,
                None => return Err(QueryError::exec("count_values requires a label parameter")),
            };
            if label.is_empty() {
                return Err(QueryError::exec(format!("invalid label name {label:?}")));
            }
            let input = ev.eval_vector(&a.expr, t)?;
            let modifier = match &a.modifier {
                Some(LabelModifier::Include(names)) => {
                    let mut names = names.clone();
                    names.labels.push(label.clone());
                    Some(LabelModifier::Include(names))
                }
                other => other.clone(),
            };
            let labelled: Vec<Sample> = input
                .into_iter()
                .map(|mut s| {
                    s.labels.set(label.clone(), format_float(s.v));
                    s
                })
                .collect();
            for (labels, members) in groups(labelled, &modifier) {
                out.push(Sample {
                    labels,
                    t,
                    v: members.len() as f64,
                });
            }
            check_unique_labels(&out)?;
            return Ok(Val::Vector(out));
        }
        _ => {}
    }
    let q = if op == T_QUANTILE { param(ev)? } else { 0.0 };
    // Prometheus warns whatever the input, even an empty one.
    if op == T_QUANTILE && annotate::is_invalid_quantile(q) {
        ev.note(AnnotationKind::Warning, Anchor::param(a), || {
            annotate::invalid_quantile(q)
        });
    }
    let input = ev.eval_vector(&a.expr, t)?;
    for (labels, members) in groups(input, &a.modifier) {
        let values: Vec<f64> = members.iter().map(|s| s.v).collect();
        let v = aggregate_floats(op, &values, q)?;
        out.push(Sample { labels, t, v });
    }
    Ok(Val::Vector(out))
}

/// The value of a simple aggregation over one group's values (non-empty).
pub fn aggregate_floats(op: TokenId, values: &[f64], q: f64) -> Result<f64, QueryError> {
    let Some(&first) = values.first() else {
        return Ok(f64::NAN);
    };
    let n = values.len() as f64;
    Ok(match op {
        T_SUM => {
            let (mut sum, mut c) = (first, 0.0);
            for &v in &values[1..] {
                (sum, c) = kahan_sum_inc(v, sum, c);
            }
            sum + c
        }
        T_AVG => avg(values),
        T_COUNT => n,
        T_GROUP => 1.0,
        T_MAX => values
            .iter()
            .skip(1)
            .fold(first, |m, &v| if m < v || m.is_nan() { v } else { m }),
        T_MIN => values
            .iter()
            .skip(1)
            .fold(first, |m, &v| if m > v || m.is_nan() { v } else { m }),
        T_STDDEV => stdvar(values).sqrt(),
        T_STDVAR => stdvar(values),
        T_QUANTILE => quantile(q, values),
        _ => {
            return Err(QueryError::exec(format!(
                "unsupported aggregation {}",
                promql_parser::parser::token::TokenType::new(op)
            )))
        }
    })
}

/// The mean as Prometheus computes it: a Kahan sum, switching to an incremental mean when
/// the sum would overflow.
pub fn avg(values: &[f64]) -> f64 {
    let Some(&first) = values.first() else {
        return f64::NAN;
    };
    let (mut sum, mut c, mut mean) = (first, 0.0, first);
    let mut incremental = false;
    let mut count = 1.0;
    for &v in &values[1..] {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_sum_inc(v, sum, c);
            if !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_sum_inc(v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// The population variance (Welford's algorithm, as Prometheus' aggregation does it).
pub fn stdvar(values: &[f64]) -> f64 {
    let Some(&first) = values.first() else {
        return f64::NAN;
    };
    // Seeded with the first value, as Prometheus does; a NaN or Inf makes the result NaN.
    let m2 = if first.is_finite() { 0.0 } else { f64::NAN };
    let (mut count, mut mean, mut m2) = (1.0, first, m2);
    for &v in &values[1..] {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    m2 / count
}

/// Descending, NaN last (topk's order).
fn desc_nan_last(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

/// Ascending, NaN last (bottomk's order).
fn asc_nan_last(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Where a series falls in `[0, 1)` for `limit_ratio`: its label hash over the u64 range, so
/// the same series are kept at every step.
fn ratio_offset(l: &Labels) -> f64 {
    crate::rules::functions::hash::labels_hash(l) as f64 / u64::MAX as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_aggregations_by_hand() {
        let v = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let agg = |op| aggregate_floats(op, &v, 0.0).unwrap_or(f64::NAN);
        assert_eq!(agg(T_SUM), 40.0);
        assert_eq!(agg(T_AVG), 5.0);
        assert_eq!(agg(T_COUNT), 8.0);
        assert_eq!(agg(T_MIN), 2.0);
        assert_eq!(agg(T_MAX), 9.0);
        // Population variance 4, standard deviation 2.
        assert!((agg(T_STDVAR) - 4.0).abs() < 1e-12);
        assert!((agg(T_STDDEV) - 2.0).abs() < 1e-12);
        // rank 0.75 * 7 = 5.25 between 5 and 7: 5.5.
        assert_eq!(aggregate_floats(T_QUANTILE, &v, 0.75).ok(), Some(5.5));
    }

    #[test]
    fn nan_and_inf() {
        // max/min skip a leading NaN; stddev of a NaN or Inf is NaN; avg survives overflow.
        assert_eq!(
            aggregate_floats(T_MAX, &[f64::NAN, 1.0], 0.0).ok(),
            Some(1.0)
        );
        assert_eq!(
            aggregate_floats(T_MIN, &[f64::NAN, 1.0], 0.0).ok(),
            Some(1.0)
        );
        assert!(stdvar(&[f64::INFINITY]).is_nan());
        assert!(stdvar(&[1.0, f64::NAN]).is_nan());
        assert_eq!(stdvar(&[3.0]), 0.0);
        assert_eq!(avg(&[f64::MAX, f64::MAX]), f64::MAX);
        assert_eq!(avg(&[f64::INFINITY, 1.0]), f64::INFINITY);
    }

    #[test]
    fn topk_order_puts_nan_last() {
        let mut v = [1.0, f64::NAN, 3.0, 2.0];
        v.sort_by(|a, b| desc_nan_last(*a, *b));
        assert_eq!(&v[..3], &[3.0, 2.0, 1.0]);
        assert!(v[3].is_nan());
    }
}
