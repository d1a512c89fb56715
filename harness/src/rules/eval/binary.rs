//! Binary operators: arithmetic, comparison (with `bool`), set operators, and vector matching
//! (`on`/`ignoring`, `group_left`/`group_right`).

use super::{check_unique_labels, Evaluator, Val};
use crate::rules::value::{QueryError, Sample};
use crate::scrape::{Labels, METRIC_NAME_LABEL};
use promql_parser::label::Labels as NameList;
use promql_parser::parser::token::{
    TokenId, T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS,
    T_MOD, T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use std::collections::{HashMap, HashSet};

/// Whether `op` is a comparison.
pub fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Whether the operator's result loses the metric name (arithmetic does, comparison does not).
fn drops_name(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD | T_ATAN2)
}

/// Applies `op` to two floats: the value and, for comparisons, whether it holds (the value of
/// a comparison is the left side).
pub fn apply(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return Err(QueryError::exec("operator not allowed for these operands")),
    })
}

/// Evaluates a binary expression at `t`.
pub fn eval(ev: &Evaluator<'_>, b: &BinaryExpr, t: i64) -> Result<Val, QueryError> {
    let op = b.op.id();
    let return_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    let out = match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let (v, keep) = apply(op, l, r)?;
            if is_comparison(op) {
                return Ok(Val::Scalar(if keep { 1.0 } else { 0.0 }));
            }
            return Ok(Val::Scalar(v));
        }
        (Val::Vector(v), Val::Scalar(s)) => vector_scalar(op, v, s, false, return_bool)?,
        (Val::Scalar(s), Val::Vector(v)) => vector_scalar(op, v, s, true, return_bool)?,
        (Val::Vector(l), Val::Vector(r)) => match op {
            T_LAND => and(l, r, b),
            T_LOR => or(l, r, b),
            T_LUNLESS => unless(l, r, b),
            _ => vector_vector(op, l, r, b, return_bool)?,
        },
        _ => {
            return Err(QueryError::exec(
                "binary expression must contain only scalar and instant vector types",
            ))
        }
    };
    check_unique_labels(&out)?;
    Ok(Val::Vector(out))
}

fn vector_scalar(
    op: TokenId,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, QueryError> {
    let mut out = Vec::with_capacity(v.len());
    for mut sample in v {
        let (l, r) = if scalar_left {
            (s, sample.v)
        } else {
            (sample.v, s)
        };
        let (mut value, mut keep) = apply(op, l, r)?;
        // A comparison keeps the vector's value even when the scalar is on the left.
        if is_comparison(op) && scalar_left {
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            sample.v = value;
            if drops_name(op) || return_bool {
                sample.labels.remove(METRIC_NAME_LABEL);
            }
            out.push(sample);
        }
    }
    Ok(out)
}

/// A label set as Prometheus' `Labels.String()` writes it: `{__name__="a", b="c"}`.
pub fn go_labels(l: &Labels) -> String {
    let pairs: Vec<String> = l.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// How two vectors' samples are paired.
struct Matching<'a> {
    on: bool,
    labels: Vec<&'a str>,
}

fn matching(b: &BinaryExpr) -> Matching<'_> {
    match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
        Some(LabelModifier::Include(l)) => Matching {
            on: true,
            labels: l.labels.iter().map(String::as_str).collect(),
        },
        Some(LabelModifier::Exclude(l)) => Matching {
            on: false,
            labels: l.labels.iter().map(String::as_str).collect(),
        },
        None => Matching {
            on: false,
            labels: Vec::new(),
        },
    }
}

impl Matching<'_> {
    /// The matching signature: the `on` labels, or all but `__name__` and the ignored ones.
    fn signature(&self, l: &Labels) -> Labels {
        let pairs = l.iter().filter(|(n, _)| {
            if self.on {
                self.labels.contains(n)
            } else {
                *n != METRIC_NAME_LABEL && !self.labels.contains(n)
            }
        });
        Labels::new(pairs)
    }
}

fn and(l: Vec<Sample>, r: Vec<Sample>, b: &BinaryExpr) -> Vec<Sample> {
    let m = matching(b);
    let right: HashSet<Labels> = r.iter().map(|s| m.signature(&s.labels)).collect();
    l.into_iter()
        .filter(|s| right.contains(&m.signature(&s.labels)))
        .collect()
}

fn or(l: Vec<Sample>, r: Vec<Sample>, b: &BinaryExpr) -> Vec<Sample> {
    let m = matching(b);
    let left: HashSet<Labels> = l.iter().map(|s| m.signature(&s.labels)).collect();
    let mut out = l;
    out.extend(
        r.into_iter()
            .filter(|s| !left.contains(&m.signature(&s.labels))),
    );
    out
}

fn unless(l: Vec<Sample>, r: Vec<Sample>, b: &BinaryExpr) -> Vec<Sample> {
    let m = matching(b);
    let right: HashSet<Labels> = r.iter().map(|s| m.signature(&s.labels)).collect();
    l.into_iter()
        .filter(|s| !right.contains(&m.signature(&s.labels)))
        .collect()
}

fn vector_vector(
    op: TokenId,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    b: &BinaryExpr,
    return_bool: bool,
) -> Result<Vec<Sample>, QueryError> {
    let m = matching(b);
    let card = b
        .modifier
        .as_ref()
        .map(|m| m.card.clone())
        .unwrap_or(VectorMatchCardinality::OneToOne);
    let include: Option<&NameList> = card.labels();
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };

    // The "one" side hashed by signature; it must be unique per signature.
    let mut one_by_sig: HashMap<Labels, &Sample> = HashMap::with_capacity(one.len());
    for s in &one {
        let sig = m.signature(&s.labels);
        if let Some(prev) = one_by_sig.insert(sig.clone(), s) {
            let side = if swapped { "left" } else { "right" };
            let (a, b) = if prev.labels <= s.labels {
                (&prev.labels, &s.labels)
            } else {
                (&s.labels, &prev.labels)
            };
            return Err(QueryError::exec(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                go_labels(&sig),
                go_labels(a),
                go_labels(b)
            )));
        }
    }

    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for ls in many {
        let sig = m.signature(&ls.labels);
        let Some(rs) = one_by_sig.get(&sig) else {
            continue;
        };
        let (lv, rv) = if swapped { (rs.v, ls.v) } else { (ls.v, rs.v) };
        let one_to_one_seen = one_to_one && matched.contains_key(&sig);
        if one_to_one_seen {
            return Err(QueryError::exec(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
            ));
        }
        if one_to_one {
            matched.insert(sig.clone(), HashSet::new());
        }
        let (mut value, keep) = apply(op, lv, rv)?;
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut labels = ls.labels.clone();
        if drops_name(op) || return_bool {
            labels.remove(METRIC_NAME_LABEL);
        }
        if one_to_one {
            labels = if m.on {
                Labels::new(labels.iter().filter(|(n, _)| m.labels.contains(n)))
            } else {
                Labels::new(labels.iter().filter(|(n, _)| !m.labels.contains(n)))
            };
        }
        if let Some(inc) = include {
            for name in &inc.labels {
                match rs.labels.get(name) {
                    Some(v) if !v.is_empty() => labels.set(name.clone(), v.to_string()),
                    _ => {
                        labels.remove(name);
                    }
                }
            }
        }
        if !one_to_one && !matched.entry(sig).or_default().insert(labels.clone()) {
            return Err(QueryError::exec(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        out.push(Sample {
            labels,
            t: ls.t,
            v: value,
        });
    }
    Ok(out)
}
