//! Comparing a query result with an eval's expectations, as Prometheus' `promqltest` does
//! (`compareResult`): floats equal within a relative 1e-6 (`almost.Equal`, NaN equal to NaN),
//! series matched by their full label set (metric name included), order checked only with
//! `expect ordered`, a matrix required sorted by labels and compared point by point.
//!
//! Unlike Go, which stops at the first difference, every difference is listed (the report shows
//! the first few).

use super::script::Eval;
use super::series::SeqValue;
use crate::scrape::{is_stale, Labels};
use std::collections::HashMap;
use std::fmt::Write;

/// Relative error allowed for sample values (Go's `defaultEpsilon`).
pub const EPSILON: f64 = 0.000001;

/// Go's `almost.Equal(a, b, EPSILON)`.
pub fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::MIN_POSITIVE; // 0x0010000000000000, the smallest positive normal.
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

/// A float as Go's `%v` prints it (`+Inf`, `NaN`; a staleness marker as `stale`).
pub fn fmt_f64(v: f64) -> String {
    if is_stale(v) {
        "stale".into()
    } else if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A result as the comparison sees it (borrowed from the engine's `Value`).
#[derive(Debug, Clone)]
pub enum Got<'a> {
    /// A scalar.
    Scalar(f64),
    /// A string.
    String(&'a str),
    /// An instant vector: labels and value, in result order.
    Vector(Vec<(&'a Labels, f64)>),
    /// A range vector: labels and points.
    Matrix(Vec<(&'a Labels, &'a [(i64, f64)])>),
}

impl Got<'_> {
    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Got::Scalar(v) => format!("scalar {}", fmt_f64(*v)),
            Got::String(s) => format!("string {s:?}"),
            Got::Vector(v) => {
                let mut s = format!("vector of {} series", v.len());
                for (l, x) in v.iter().take(3) {
                    let _ = write!(s, "; {l} {}", fmt_f64(*x));
                }
                if v.len() > 3 {
                    s.push_str("; ...");
                }
                s
            }
            Got::Matrix(m) => format!("matrix of {} series", m.len()),
        }
    }
}

/// Where a matrix result's expected points lie: point `i` at `start + i * step`, none after
/// `end`. `None` for an instant query without `expect range vector` (no points may be
/// expected then, as in Go).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// Time of the first point.
    pub start: i64,
    /// Last time a point may have.
    pub end: i64,
    /// Step between points.
    pub step: i64,
}

fn fmt_points(p: &[(i64, f64)]) -> String {
    let mut s = String::from("[");
    for (i, (t, v)) in p.iter().enumerate() {
        if i == 8 {
            let _ = write!(s, " ... ({} points)", p.len());
            break;
        }
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{}@{t}", fmt_f64(*v));
    }
    s.push(']');
    s
}

fn fmt_seq(v: &[SeqValue]) -> String {
    v.iter()
        .map(|x| match x {
            SeqValue::Omitted => "_".to_string(),
            SeqValue::Float(f) => fmt_f64(*f),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The differences between `got` and what `ev` expects (empty when it matches).
pub fn compare(ev: &Eval, got: &Got<'_>, frame: Option<Frame>) -> Vec<String> {
    let mut diffs = Vec::new();
    let expect_scalar = ev.expected_scalar.is_some();
    let index: HashMap<&Labels, usize> = ev
        .expected
        .iter()
        .enumerate()
        .map(|(i, e)| (&e.labels, i))
        .collect();
    match got {
        Got::Scalar(v) => match ev.expected_scalar {
            None => diffs.push(format!(
                "expected a vector or matrix result, got scalar {}",
                fmt_f64(*v)
            )),
            Some(e) if !almost_equal(e, *v) => diffs.push(format!(
                "expected scalar {}, got {}",
                fmt_f64(e),
                fmt_f64(*v)
            )),
            Some(_) => {}
        },
        Got::String(s) => {
            let e = ev.expected_string.as_deref().unwrap_or("");
            if e != *s {
                diffs.push(format!("expected string {e:?}, got {s:?}"));
            }
        }
        Got::Vector(v) => {
            if expect_scalar {
                diffs.push(format!("expected a scalar result, got {}", got.describe()));
                return diffs;
            }
            let mut seen = vec![false; ev.expected.len()];
            for (pos, (labels, value)) in v.iter().enumerate() {
                let Some(&i) = index.get(labels) else {
                    diffs.push(format!("unexpected series {labels} {}", fmt_f64(*value)));
                    continue;
                };
                seen[i] = true;
                let exp = &ev.expected[i];
                if ev.ordered && exp.pos != pos + 1 {
                    diffs.push(format!(
                        "series {labels} expected at position {}, got at {}",
                        exp.pos,
                        pos + 1
                    ));
                }
                let Some(e0) = exp.values.first() else {
                    diffs.push(format!("series {labels}: the expectation has no value"));
                    continue;
                };
                if !almost_equal(e0.value(), *value) {
                    diffs.push(format!(
                        "series {labels}: expected {}, got {}",
                        fmt_f64(e0.value()),
                        fmt_f64(*value)
                    ));
                }
            }
            for (i, e) in ev.expected.iter().enumerate() {
                if !seen[i] {
                    diffs.push(format!(
                        "missing series {} (expected {})",
                        e.labels,
                        fmt_seq(&e.values)
                    ));
                }
            }
        }
        Got::Matrix(m) => {
            if ev.ordered {
                diffs.push("expected an ordered result, got a matrix".into());
            }
            if expect_scalar {
                diffs.push(format!("expected a scalar result, got {}", got.describe()));
                return diffs;
            }
            for w in m.windows(2) {
                if w[0].0 > w[1].0 {
                    diffs.push(format!(
                        "matrix not sorted by labels: {} before {}",
                        w[0].0, w[1].0
                    ));
                    break;
                }
            }
            let mut seen = vec![false; ev.expected.len()];
            for (labels, points) in m {
                let Some(&i) = index.get(labels) else {
                    diffs.push(format!("unexpected series {labels} {}", fmt_points(points)));
                    continue;
                };
                seen[i] = true;
                let exp = &ev.expected[i];
                let mut want: Vec<(i64, f64)> = Vec::new();
                let mut too_many = false;
                for (k, e) in exp.values.iter().enumerate() {
                    let t = frame.and_then(|f| {
                        let t = f.start.checked_add(f.step.checked_mul(k as i64)?)?;
                        (t <= f.end).then_some(t)
                    });
                    let Some(t) = t else {
                        too_many = true;
                        break;
                    };
                    if let SeqValue::Float(v) = e {
                        want.push((t, *v));
                    }
                }
                if too_many {
                    diffs.push(format!(
                        "series {labels}: expected {} points, but the query's time range cannot \
                         return this many",
                        exp.values.len()
                    ));
                    continue;
                }
                if want.len() != points.len() {
                    diffs.push(format!(
                        "series {labels}: expected {} points {}, got {} {}",
                        want.len(),
                        fmt_points(&want),
                        points.len(),
                        fmt_points(points)
                    ));
                    continue;
                }
                for (k, (w, g)) in want.iter().zip(points.iter()).enumerate() {
                    if w.0 != g.0 {
                        diffs.push(format!(
                            "series {labels}: point {k} expected at t={}, got t={} (got {})",
                            w.0,
                            g.0,
                            fmt_points(points)
                        ));
                        break;
                    }
                    if !almost_equal(w.1, g.1) {
                        diffs.push(format!(
                            "series {labels}: at t={} expected {}, got {} (got {})",
                            w.0,
                            fmt_f64(w.1),
                            fmt_f64(g.1),
                            fmt_points(points)
                        ));
                        break;
                    }
                }
            }
            for (i, e) in ev.expected.iter().enumerate() {
                if !seen[i] {
                    diffs.push(format!(
                        "missing series {} (expected {})",
                        e.labels,
                        fmt_seq(&e.values)
                    ));
                }
            }
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::super::script::{parse_script, Command};
    use super::*;
    use crate::scrape::stale_nan;

    fn eval(text: &str) -> Eval {
        let s = parse_script(text).unwrap();
        match s.commands.into_iter().next() {
            Some(Command::Eval(e)) => *e,
            _ => panic!("no eval"),
        }
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied())
    }

    #[test]
    fn almost_equal_like_go() {
        assert!(almost_equal(f64::NAN, stale_nan()));
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.0001));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY));
        assert!(!almost_equal(0.0, 1e-300));
        assert!(almost_equal(0.0, -0.0));
        assert!(!almost_equal(1.0, f64::NAN));
    }

    #[test]
    fn vectors_match_by_labels_and_value() {
        let ev = eval("eval instant at 0 x\n  x{a=\"1\"} 1\n  {b=\"2\"} NaN\n");
        let a = l(&[("__name__", "x"), ("a", "1")]);
        let b = l(&[("b", "2")]);
        let c = l(&[("c", "3")]);
        assert!(compare(&ev, &Got::Vector(vec![(&b, f64::NAN), (&a, 1.0)]), None).is_empty());
        let d = compare(&ev, &Got::Vector(vec![(&a, 1.5), (&c, 1.0)]), None);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("expected 1, got 1.5"));
        assert!(d[1].starts_with("unexpected series {c=\"3\"}"));
        assert!(d[2].starts_with("missing series {b=\"2\"}"));
        // The metric name matters.
        let no_name = l(&[("a", "1")]);
        let d = compare(&ev, &Got::Vector(vec![(&no_name, 1.0), (&b, 0.0)]), None);
        assert!(d
            .iter()
            .any(|x| x.starts_with("unexpected series {a=\"1\"}")));
    }

    #[test]
    fn order_only_when_ordered() {
        let a = l(&[("a", "1")]);
        let b = l(&[("a", "2")]);
        let un = eval("eval instant at 0 x\n  {a=\"1\"} 1\n  {a=\"2\"} 2\n");
        let got = Got::Vector(vec![(&b, 2.0), (&a, 1.0)]);
        assert!(compare(&un, &got, None).is_empty());
        let ord = eval("eval instant at 0 x\n  expect ordered\n  {a=\"1\"} 1\n  {a=\"2\"} 2\n");
        assert_eq!(compare(&ord, &got, None).len(), 2);
    }

    #[test]
    fn empty_expectation_and_scalars() {
        let ev = eval("eval instant at 0 x\n");
        assert!(compare(&ev, &Got::Vector(vec![]), None).is_empty());
        assert_eq!(compare(&ev, &Got::Scalar(1.0), None).len(), 1);
        let ev = eval("eval instant at 0 1\n  1.0000000001\n");
        assert!(compare(&ev, &Got::Scalar(1.0), None).is_empty());
        assert_eq!(compare(&ev, &Got::Scalar(2.0), None).len(), 1);
        assert_eq!(compare(&ev, &Got::Vector(vec![]), None).len(), 1);
        let ev = eval("eval instant at 0 \"a\"\n  expect string \"a\"\n");
        assert!(compare(&ev, &Got::String("a"), None).is_empty());
        assert_eq!(compare(&ev, &Got::String("b"), None).len(), 1);
    }

    #[test]
    fn matrices_point_by_point() {
        let ev = eval("eval range from 0 to 2m step 1m x\n  {a=\"1\"} 1 _ 3\n");
        let a = l(&[("a", "1")]);
        let f = Some(Frame {
            start: 0,
            end: 120_000,
            step: 60_000,
        });
        let good = [(0, 1.0), (120_000, 3.0)];
        assert!(compare(&ev, &Got::Matrix(vec![(&a, &good)]), f).is_empty());
        let wrong_t = [(0, 1.0), (60_000, 3.0)];
        assert_eq!(compare(&ev, &Got::Matrix(vec![(&a, &wrong_t)]), f).len(), 1);
        let wrong_v = [(0, 1.0), (120_000, 4.0)];
        assert_eq!(compare(&ev, &Got::Matrix(vec![(&a, &wrong_v)]), f).len(), 1);
        let extra = [(0, 1.0), (60_000, 2.0), (120_000, 3.0)];
        assert_eq!(compare(&ev, &Got::Matrix(vec![(&a, &extra)]), f).len(), 1);
        // More points expected than the range has.
        let short = Some(Frame {
            start: 0,
            end: 60_000,
            step: 60_000,
        });
        assert_eq!(
            compare(&ev, &Got::Matrix(vec![(&a, &good)]), short).len(),
            1
        );
        // Unsorted.
        let ev = eval("eval range from 0 to 0 step 1m x\n  {a=\"1\"} 1\n  {a=\"2\"} 1\n");
        let b = l(&[("a", "2")]);
        let p = [(0, 1.0)];
        let f = Some(Frame {
            start: 0,
            end: 0,
            step: 60_000,
        });
        assert!(compare(&ev, &Got::Matrix(vec![(&a, &p), (&b, &p)]), f).is_empty());
        assert_eq!(
            compare(&ev, &Got::Matrix(vec![(&b, &p), (&a, &p)]), f).len(),
            1
        );
    }
}
